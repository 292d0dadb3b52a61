package identity

import (
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/fakeclock"
)

func tokenCaller(name, token string, r Rate) Caller {
	return Caller{Name: name, Tokens: [][32]byte{HashToken(token)}, Rate: r}
}

// mustAuth authenticates a call with token from a remote peer.
func mustAuth(t *testing.T, a *Authenticator, token string) *Identity {
	t.Helper()
	var auth []string
	if token != "" {
		auth = []string{"Bearer " + token}
	}
	id, err := authenticate(t, a, callCtx(t, remote, nil, auth...))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// drain calls Allow until it refuses and returns how many it allowed
// (giving up at 1000).
func drain(id *Identity) int {
	n := 0
	for n < 1000 && id.Allow() {
		n++
	}
	return n
}

func TestRateLimitKeptAcrossUpdate(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	r := Rate{PerSecond: 2, Burst: 3}
	cfg := Config{Callers: []Caller{tokenCaller("svc", "svc-token-1", r)}}
	a := New(cfg, WithNow(clock.Now))

	first := mustAuth(t, a, "svc-token-1")
	if got := first.RateLimit(); got != r {
		t.Fatalf("RateLimit = %+v; want %+v", got, r)
	}
	if n := drain(first); n != 3 {
		t.Fatalf("burst allowed %d calls; want 3", n)
	}
	// Another call of the same caller draws from the same bucket.
	if mustAuth(t, a, "svc-token-1").Allow() {
		t.Fatal("a second call's Identity has its own bucket; want the caller's shared one")
	}

	// Same name and Rate, other changes (an extra token, an allowance):
	// the bucket is kept, still empty.
	cfg2 := Config{Callers: []Caller{{Name: "svc", Tokens: [][32]byte{HashToken("svc-token-1"), HashToken("svc-token-2")},
		AllowTargets: patterns(t, "api.example.com"), Rate: r}}}
	a.Update(cfg2)
	kept := mustAuth(t, a, "svc-token-2")
	if kept.Allow() {
		t.Fatal("after Update with the same Rate the bucket was refilled; want its state kept")
	}

	// The limiter reads the injected clock: half a second refills one token.
	clock.Advance(500 * time.Millisecond)
	if n := drain(kept); n != 1 {
		t.Fatalf("after 500ms at 2/s, %d calls allowed; want 1", n)
	}

	// A new Rate starts a fresh, full bucket.
	r3 := Rate{PerSecond: 2, Burst: 5}
	cfg3 := cfg2
	cfg3.Callers = []Caller{cfg2.Callers[0]}
	cfg3.Callers[0].Rate = r3
	a.Update(cfg3)
	fresh := mustAuth(t, a, "svc-token-1")
	if got := fresh.RateLimit(); got != r3 {
		t.Fatalf("RateLimit after Update = %+v; want %+v", got, r3)
	}
	if n := drain(fresh); n != 5 {
		t.Fatalf("after a Rate change, %d calls allowed; want a full burst of 5", n)
	}

	// Identities handed out before the Updates keep what they were given.
	if first.RateLimit() != r || !first.Permits("other.example.com") {
		t.Fatalf("an earlier Identity changed with Update: rate %+v, permits other.example.com %v", first.RateLimit(), first.Permits("other.example.com"))
	}
	if kept.Permits("other.example.com") || !kept.Permits("api.example.com") {
		t.Fatal("Identity from the second table does not carry its allowance")
	}
}

func TestRenamedCallerGetsNewBucket(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	r := Rate{PerSecond: 1, Burst: 1}
	a := New(Config{Callers: []Caller{tokenCaller("old", "tok-000000000", r)}}, WithNow(clock.Now))
	if n := drain(mustAuth(t, a, "tok-000000000")); n != 1 {
		t.Fatalf("allowed %d; want 1", n)
	}
	a.Update(Config{Callers: []Caller{tokenCaller("new", "tok-000000000", r)}})
	if n := drain(mustAuth(t, a, "tok-000000000")); n != 1 {
		t.Fatalf("renamed caller allowed %d; want a fresh burst of 1", n)
	}
}

func TestAnonymousShareOneBucket(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	r := Rate{PerSecond: 1, Burst: 2}
	cfg := Config{Anonymous: AnonymousAlways, AnonymousRate: r}
	a := New(cfg, WithNow(clock.Now))
	one, two := mustAuth(t, a, ""), mustAuth(t, a, "")
	if !one.Allow() || !two.Allow() || one.Allow() || two.Allow() {
		t.Fatal("two anonymous calls do not share one bucket of 2")
	}
	if one.RateLimit() != r {
		t.Fatalf("RateLimit = %+v; want %+v", one.RateLimit(), r)
	}
	a.Update(cfg)
	if mustAuth(t, a, "").Allow() {
		t.Fatal("anonymous bucket refilled by an Update with the same rate")
	}
	clock.Advance(time.Second)
	if !mustAuth(t, a, "").Allow() {
		t.Fatal("anonymous bucket did not refill after one second at 1/s")
	}
	cfg.AnonymousRate = Rate{PerSecond: 1, Burst: 4}
	a.Update(cfg)
	if n := drain(mustAuth(t, a, "")); n != 4 {
		t.Fatalf("after an anonymous Rate change, %d allowed; want 4", n)
	}
}

func TestUnlimitedAndNormalisedRates(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	for _, tc := range []struct {
		rate      Rate
		want      Rate
		allowed   int
		unlimited bool
	}{
		{Rate{}, Rate{}, 1000, true},
		{Rate{PerSecond: -1, Burst: 5}, Rate{}, 1000, true},
		{Rate{PerSecond: 0, Burst: 5}, Rate{}, 1000, true},
		{Rate{PerSecond: 3, Burst: 0}, Rate{PerSecond: 3, Burst: 1}, 1, false}, // burst 0 would refuse everything
		{Rate{PerSecond: 3, Burst: -2}, Rate{PerSecond: 3, Burst: 1}, 1, false},
	} {
		a := New(Config{Callers: []Caller{tokenCaller("c", "tok-000000000", tc.rate)}}, WithNow(clock.Now))
		id := mustAuth(t, a, "tok-000000000")
		if got := id.RateLimit(); got != tc.want {
			t.Errorf("Rate %+v: RateLimit = %+v; want %+v", tc.rate, got, tc.want)
		}
		if n := drain(id); n != tc.allowed {
			t.Errorf("Rate %+v: allowed %d; want %d", tc.rate, n, tc.allowed)
		}
	}
}
