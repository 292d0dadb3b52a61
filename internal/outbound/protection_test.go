package outbound

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
)

// protectionOf returns the protection state of raw's target.
func protectionOf(t *testing.T, c *Client, raw string) *protection {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	c.prots.mu.Lock()
	defer c.prots.mu.Unlock()
	p, ok := c.prots.byKey[targetKey(u)]
	if !ok {
		t.Fatalf("no protection state for %s", raw)
	}
	return p
}

// poolTarget returns the pool's current target for raw, for requests
// without a guard of their own.
func poolTarget(t *testing.T, c *Client, raw string) *target {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	e, ok := c.pool.byKey[poolKey{target: targetKey(u)}]
	if !ok {
		t.Fatalf("no target for %s", raw)
	}
	return e.Value.(*target)
}

func TestMaxConnsChangeRebuildsTransport(t *testing.T) {
	t.Parallel()
	holding := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newUpstream(t, status(200), func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			holding <- struct{}{}
			<-release
		}
		w.Write([]byte("ok"))
	})
	c, _ := newClient(t)
	do := func(path string, maxConns int) {
		t.Helper()
		req := request(t, "GET", up.URL+path, nil)
		req.Policy.MaxConns = maxConns
		if _, err := c.Do(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}

	do("/", 0)
	first := poolTarget(t, c, up.URL)
	if maxConnsOf(first.transport) != defaultMaxConnsPerHost {
		t.Fatalf("MaxConns 0 gave %d connections, want the Client's default %d", maxConnsOf(first.transport), defaultMaxConnsPerHost)
	}
	do("/", defaultMaxConnsPerHost) // the same value: the same transport
	if poolTarget(t, c, up.URL) != first {
		t.Fatal("an unchanged MaxConns built a new transport")
	}

	prot := protectionOf(t, c, up.URL)
	do("/", 2)
	second := poolTarget(t, c, up.URL)
	if second == first || maxConnsOf(second.transport) != 2 || protectionOf(t, c, up.URL) != prot {
		t.Fatalf("MaxConns 2: new target %v, %d connections, same protection %v", second != first, maxConnsOf(second.transport), protectionOf(t, c, up.URL) == prot)
	}
	if !first.evicted.Load() {
		t.Fatal("the replaced target is not marked evicted")
	}
	within(t, up.closed, "the replaced transport's idle connection to be closed")

	// A request in flight on a replaced transport finishes; its connection
	// is closed when it ends.
	held := make(chan error, 1)
	go func() {
		req := request(t, "GET", up.URL+"/hold", nil)
		req.Policy.MaxConns = 2
		_, err := c.Do(context.Background(), req)
		held <- err
	}()
	within(t, holding, "the held request to arrive")
	do("/", 3)
	third := poolTarget(t, c, up.URL)
	if maxConnsOf(third.transport) != 3 || !second.evicted.Load() {
		t.Fatalf("MaxConns 3: %d connections, old evicted %v", maxConnsOf(third.transport), second.evicted.Load())
	}
	select {
	case <-up.closed:
		t.Fatal("a connection closed while its request was in flight")
	default:
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("the request in flight on the replaced transport: %v", err)
	}
	within(t, up.closed, "the held request's connection to be closed once it ended")
}

// The per-target bound is used, not the Client's default.
func TestMaxConnsBoundsConnections(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(200))
	c, _ := newClient(t) // default 64
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.MaxConns = 1
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), req); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := up.conns.Load(); n != 1 {
		t.Fatalf("%d connections with MaxConns 1", n)
	}
}

// A reload that changes the breaker's settings starts it afresh (closed);
// the same settings keep its state.
func TestBreakerConfigChangeRebuildsState(t *testing.T) {
	t.Parallel()
	up := newCounting(t, always(503))
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = breakerPolicy(1)
	if _, err := c.Do(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	_, err := c.Do(context.Background(), req)
	refusedByBreaker(t, err, "after 1 consecutive failures")

	req.Policy.Breaker.ConsecutiveFailures = 2
	for range 2 {
		if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 503 {
			t.Fatalf("after the reload: %v, %v; want the upstream's 503", resp, err)
		}
	}
	_, err = c.Do(context.Background(), req)
	refusedByBreaker(t, err, "after 2 consecutive failures")
	if n := up.n.Load(); n != 3 {
		t.Fatalf("upstream saw %d requests, want 3", n)
	}
	// Turning the breaker off lets everything through.
	req.Policy.Breaker = Breaker{}
	if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 503 {
		t.Fatalf("breaker off: %v, %v", resp, err)
	}
}

func TestBudgetConfigChangeRebuildsState(t *testing.T) {
	t.Parallel()
	up := newCounting(t, always(503))
	clock := newFakeClock()
	c, _ := newClient(t, WithNow(clock.now))
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = budgetPolicy(2)
	req.Policy.Budget = Budget{Ratio: 0.1, Window: 10 * time.Second}
	// Call 1 is retried (0 < 0.1), then the next retry needs 11 requests.
	for i := 1; i <= 3; i++ {
		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: StopMaxAttempts, false: StopBudget}[i == 1]; resp.Stopped != want {
			t.Fatalf("call %d stopped %q, want %q", i, resp.Stopped, want)
		}
	}
	req.Policy.Budget.Ratio = 0.2 // reloaded: counts start afresh
	resp, err := c.Do(context.Background(), req)
	if err != nil || len(resp.Attempts) != 2 {
		t.Fatalf("after the reload: %v, %v; want a retry", resp, err)
	}
}

// Stopped says why a retryable outcome was not retried, and is empty when
// the outcome was final by itself.
func TestStopped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		method   string
		step     http.HandlerFunc
		refused  bool // no listener
		attempts int
		total    time.Duration
		want     string
	}{
		{"200", "GET", status(200), false, 3, 30 * time.Second, ""},
		{"404", "GET", status(404), false, 3, 30 * time.Second, ""},
		{"503 after max attempts", "GET", status(503), false, 3, 30 * time.Second, StopMaxAttempts},
		{"503 with one attempt", "GET", status(503), false, 1, 30 * time.Second, StopMaxAttempts},
		{"unkeyed POST 503", "POST", status(503), false, 3, 30 * time.Second, StopUnsafe},
		{"unkeyed POST reset", "POST", reset, false, 3, 30 * time.Second, StopUnsafe},
		{"Retry-After past the deadline", "GET", status(503, "Retry-After", "30"), false, 3, 10 * time.Second, StopDeadline},
		{"refused after max attempts", "POST", nil, true, 2, 30 * time.Second, StopMaxAttempts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := refusedURL(t)
			if !tt.refused {
				raw = newUpstream(t, tt.step).URL + "/"
			}
			c, _ := newClient(t)
			req := request(t, tt.method, raw, []byte("x"))
			req.Policy.MaxAttempts = tt.attempts
			req.Policy.TotalTimeout = tt.total
			resp, err := c.Do(context.Background(), req)
			var ex *ExhaustedError
			switch {
			case err == nil:
				if resp.Stopped != tt.want {
					t.Fatalf("Stopped = %q after %v, want %q", resp.Stopped, classes(resp.Attempts), tt.want)
				}
			case errors.As(err, &ex):
				if ex.Stopped != tt.want {
					t.Fatalf("Stopped = %q after %v, want %q", ex.Stopped, classes(ex.Attempts), tt.want)
				}
			default:
				t.Fatal(err)
			}
		})
	}
	t.Run("guard refusal", func(t *testing.T) {
		t.Parallel()
		c := New(nil) // no loopback allowed
		defer c.Close()
		_, err := c.Do(context.Background(), request(t, "GET", refusedURL(t), nil))
		var ex *ExhaustedError
		if !errors.As(err, &ex) || ex.Stopped != "" {
			t.Fatalf("err = %v, want an *ExhaustedError with no Stopped", err)
		}
	})
}

// churn is a Client on a guard that resolves x.test and n other names to
// 127.0.0.1, with small bounds: 2 transports, 4 protected targets.
func churn(t *testing.T) *Client {
	t.Helper()
	res := mapResolver{"x.test": {netip.MustParseAddr("127.0.0.1")}}
	for i := range 16 {
		res[fmt.Sprintf("o%d.test", i)] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	g := egress.New(egress.WithAllow(netip.MustParsePrefix("127.0.0.0/8")), egress.WithResolver(res))
	c := New(g, WithSleep((&sleeps{}).sleep), WithJitter(halfJitter), WithMaxTargets(2), WithMaxProtectedTargets(4))
	t.Cleanup(c.Close)
	return c
}

// named returns up's URL with the host name given.
func named(up *httptest.Server, name string) string {
	return "http://" + name + up.URL[strings.LastIndex(up.URL, ":"):] + "/"
}

// Calls to many other targets (other ports or names of one host) cannot
// make a target forget its open breaker: protection state is kept apart
// from the pool of transports, and evicted idle first, then active, then
// guarding (open breaker, hold). Only when every target kept is guarding
// does the bound make one go.
func TestOtherTargetsCannotEvictAnOpenBreaker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		others func() Policy
		status int // the others' answer
		open   bool
	}{
		{"idle others", func() Policy { return policy() }, 200, true},
		{"active others", func() Policy {
			p := policy()
			p.Breaker = Breaker{ConsecutiveFailures: 5, OpenFor: time.Hour}
			p.Budget = Budget{Ratio: 0.2, MinPerSecond: 10, Window: time.Hour}
			return p
		}, 503, true},
		{"guarding others: the bound holds", func() Policy { return breakerPolicy(1) }, 503, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			x := newCounting(t, func(i int64) int { return map[bool]int{true: 500, false: 200}[i == 1] })
			others := newCounting(t, always(tt.status))
			c := churn(t)
			reqX := request(t, "GET", named(x.Server, "x.test"), nil)
			reqX.Policy = breakerPolicy(1)
			reqX.Policy.Breaker.OpenFor = time.Hour
			if resp, err := c.Do(context.Background(), reqX); err != nil || resp.Status != 500 {
				t.Fatalf("opening X's breaker: %v %v", resp, err)
			}
			for i := range 2 * 4 {
				req := request(t, "GET", named(others.Server, fmt.Sprintf("o%d.test", i)), nil)
				req.Policy = tt.others()
				if _, err := c.Do(context.Background(), req); err != nil {
					t.Fatalf("other %d: %v", i, err)
				}
				if keys := c.prots.keys(); len(keys) > 4 {
					t.Fatalf("%d targets protected, over the bound of 4: %v", len(keys), keys)
				}
			}
			if keys := c.pool.keys(); len(keys) > 2 || slices.Contains(keys, targetKey(reqX.URL)) {
				t.Fatalf("transports %v: X's should have been evicted", keys)
			}
			resp, err := c.Do(context.Background(), reqX)
			if tt.open {
				refusedByBreaker(t, err, "is open after 1 consecutive failures")
				if n := x.n.Load(); n != 1 {
					t.Fatalf("X saw %d requests, want 1", n)
				}
				return
			}
			if err != nil || resp.Status != 200 {
				t.Fatalf("X after every other target opened its breaker: %v %v; want X forgotten and reached", resp, err)
			}
		})
	}
}

func TestProtectionsSweep(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tab := newProtections(4, clock.now)
	get := func(key string) *protection {
		p := tab.get(key)
		p.release()
		return p
	}
	keys := func(want ...string) {
		t.Helper()
		if got := tab.keys(); !slices.Equal(got, want) {
			t.Fatalf("keys %v, want %v", got, want)
		}
	}
	brk := Breaker{ConsecutiveFailures: 2, OpenFor: time.Minute}.normalized()
	settle := func(p *protection, o outcome) {
		pm, why := p.breakerFor(brk, clock.now, true).acquire(clock.now())
		if why != "" {
			t.Fatal(why)
		}
		pm.settle(o, clock.now())
	}
	open := func(p *protection) { settle(p, outcomeFailure); settle(p, outcomeFailure) }

	get("guarding").hold.extend(clock.now(), time.Minute)
	settle(get("active"), outcomeFailure) // one failure in a row
	settle(get("succeeded"), outcomeSuccess)
	get("idle")
	keys("idle", "succeeded", "active", "guarding")
	get("new") // full: every idle target goes, a breaker with successes only too
	keys("new", "active", "guarding")

	inUse := tab.get("in-use") // not released: a Do is using it
	get("budgeted")            // new, idle, is forgotten
	keys("budgeted", "in-use", "active", "guarding")
	get("budgeted").budgetFor(Budget{Ratio: 0.2, Window: 10 * time.Second}, clock.now, true).request(clock.now())

	// None idle: the least recently used active target goes, not the
	// guarding one behind it.
	get("another")
	keys("another", "budgeted", "in-use", "guarding")

	// Released, and the budget's window passed: idle again. The hold is
	// still in force.
	inUse.release()
	clock.advance(11 * time.Second)
	get("later")
	keys("later", "guarding")

	// Every target guarding: the least recently used goes.
	open(get("later"))
	open(get("g1"))
	open(get("g2"))
	keys("g2", "g1", "later", "guarding")
	get("last")
	keys("last", "g2", "g1", "later")

	// The target just added is never the one swept.
	one := newProtections(1, clock.now)
	one.get("a").hold.extend(clock.now(), time.Minute)
	one.get("b")
	if got := one.keys(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("keys %v, want [b]", got)
	}
}

// A sweep frees at least max/64 places, so that a table whose targets are
// all active is not swept on every new target.
func TestProtectionsSweepFreesAFraction(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tab := newProtections(128, clock.now)
	for i := range 128 {
		tab.get(fmt.Sprint(i)) // never released: all active
	}
	tab.get("new")
	if n := len(tab.keys()); n != 128-2+1 {
		t.Fatalf("%d targets after a sweep of a full table, want 127 (two active ones forgotten for one new)", n)
	}
	keys := tab.keys()
	if keys[0] != "new" || slices.Contains(keys, "0") || slices.Contains(keys, "1") || !slices.Contains(keys, "2") {
		t.Fatalf("keys %v: want the two least recently used forgotten", keys[:4])
	}
}
