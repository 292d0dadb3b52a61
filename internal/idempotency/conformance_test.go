package idempotency

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

// TestConformance runs every case of the Store contract against every store: memory, file (in
// t.TempDir()) and Redis (at REDIS_URL).
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, f := range allFactories() {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range conformanceCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					scope := newScope()
					clk := newFakeClock()
					s := f.open(t, scope, WithNow(clk.Now), WithTTL(testTTL))
					c.run(t, &env{ctx: t.Context(), s: s, clk: clk, scope: scope})
				})
			}
		})
	}
}

var conformanceCases = []struct {
	name string
	run  func(t *testing.T, e *env)
}{
	{"ClaimNew", func(t *testing.T, e *env) {
		k := e.key("k")
		t0 := e.clk.Now()
		tok := claimToken(t, e, k, "fp-a", testLease)
		wantEntry(t, mustGet(t, e, k), &Entry{
			Fingerprint: "fp-a", Token: tok, LeaseExpires: t0.Add(testLease), ExpiresAt: t0.Add(testTTL),
		})
	}},
	{"SecondClaimSeesInFlight", func(t *testing.T, e *env) {
		k := e.key("k")
		t0 := e.clk.Now()
		tok := claimToken(t, e, k, "fp-a", testLease)
		want := &Entry{Fingerprint: "fp-a", Token: tok, LeaseExpires: t0.Add(testLease), ExpiresAt: t0.Add(testTTL)}
		e.clk.Advance(testLease - time.Millisecond) // the lease is still running
		// The store does not compare fingerprints: a different one sees the same entry.
		wantEntry(t, claimEntry(t, e, k, "fp-b"), want)
		wantEntry(t, claimEntry(t, e, k, "fp-a"), want)
		wantEntry(t, mustGet(t, e, k), want)
	}},
	{"CompleteThenClaimReplays", func(t *testing.T, e *env) {
		k := e.key("k")
		tok := claimToken(t, e, k, "fp-a", testLease)
		e.clk.Advance(10 * time.Second)
		tc := e.clk.Now()
		resp := sampleResponse()
		if err := e.s.Complete(e.ctx, k, tok, resp); err != nil {
			t.Fatalf("Complete: %v", err)
		}
		want := &Entry{Fingerprint: "fp-a", Token: tok, Completed: true, Response: &resp, ExpiresAt: tc.Add(testTTL)}
		e.clk.Advance(time.Minute)
		got := claimEntry(t, e, k, "fp-b")
		wantEntry(t, got, want)
		if !got.LeaseExpires.IsZero() {
			t.Errorf("completed entry has LeaseExpires %v, want zero", got.LeaseExpires)
		}
		if len(got.Response.Header) != 4 || got.Response.Header[1] != resp.Header[1] || got.Response.Header[2] != resp.Header[2] {
			t.Errorf("headers = %q, want %q in order", got.Response.Header, resp.Header)
		}
		wantEntry(t, mustGet(t, e, k), want)

		// An empty response round-trips too.
		k2 := e.key("empty")
		tok2 := claimToken(t, e, k2, "fp", testLease)
		if err := e.s.Complete(e.ctx, k2, tok2, Response{Status: 204}); err != nil {
			t.Fatalf("Complete: %v", err)
		}
		got = mustGet(t, e, k2)
		if r := got.Response; r == nil || r.Status != 204 || len(r.Header) != 0 || len(r.Body) != 0 || r.BodyTooLarge {
			t.Fatalf("empty response came back as %s", fmtEntry(got))
		}

		k3 := e.key("too-large")
		tok3 := claimToken(t, e, k3, "fp", testLease)
		if err := e.s.Complete(e.ctx, k3, tok3, Response{Status: 200, BodyTooLarge: true}); err != nil {
			t.Fatalf("Complete: %v", err)
		}
		if r := mustGet(t, e, k3).Response; r == nil || r.Status != 200 || !r.BodyTooLarge {
			t.Fatalf("a body-too-large outcome came back as %+v", r)
		}
	}},
	{"ReleaseThenReclaim", func(t *testing.T, e *env) {
		k := e.key("k")
		prev := claimToken(t, e, k, "fp", testLease)
		for range 3 {
			if err := e.s.Release(e.ctx, k, prev); err != nil {
				t.Fatalf("Release: %v", err)
			}
			_, err := e.s.Get(e.ctx, k)
			wantErr(t, "Get after Release", err, ErrNotFound)
			tok := claimToken(t, e, k, "fp", testLease)
			if tok <= prev {
				t.Fatalf("token after release = %d, want > %d", tok, prev)
			}
			wantErr(t, "Release with the released token", e.s.Release(e.ctx, k, prev), ErrFenced)
			prev = tok
		}
	}},
	{"LeaseExpiryTakeover", func(t *testing.T, e *env) {
		k := e.key("k")
		stale := claimToken(t, e, k, "fp-a", testLease)
		e.clk.Advance(testLease - time.Millisecond)
		claimEntry(t, e, k, "fp-b") // not yet
		e.clk.Advance(time.Millisecond)
		t1 := e.clk.Now()
		tok := claimToken(t, e, k, "fp-b", testLease) // LeaseExpires <= now: taken over
		if tok <= stale {
			t.Fatalf("takeover token = %d, want > %d", tok, stale)
		}
		want := &Entry{Fingerprint: "fp-b", Token: tok, LeaseExpires: t1.Add(testLease), ExpiresAt: t1.Add(testTTL)}
		wantErr(t, "stale Complete", e.s.Complete(e.ctx, k, stale, sampleResponse()), ErrFenced)
		wantErr(t, "stale Release", e.s.Release(e.ctx, k, stale), ErrFenced)
		wantEntry(t, mustGet(t, e, k), want)

		resp := Response{Status: 201, Body: []byte("new")}
		if err := e.s.Complete(e.ctx, k, tok, resp); err != nil {
			t.Fatalf("Complete by the new holder: %v", err)
		}
		wantErr(t, "stale Complete after completion", e.s.Complete(e.ctx, k, stale, sampleResponse()), ErrFenced)
		wantEntry(t, mustGet(t, e, k), &Entry{Fingerprint: "fp-b", Token: tok, Completed: true, Response: &resp, ExpiresAt: t1.Add(testTTL)})
	}},
	{"CompleteWrongToken", func(t *testing.T, e *env) {
		k := e.key("k")
		t0 := e.clk.Now()
		tok := claimToken(t, e, k, "fp", testLease)
		want := &Entry{Fingerprint: "fp", Token: tok, LeaseExpires: t0.Add(testLease), ExpiresAt: t0.Add(testTTL)}
		for _, bad := range []uint64{0, tok - 1, tok + 1, ^uint64(0)} {
			wantErr(t, "Complete with a wrong token", e.s.Complete(e.ctx, k, bad, sampleResponse()), ErrFenced)
			wantErr(t, "Release with a wrong token", e.s.Release(e.ctx, k, bad), ErrFenced)
		}
		wantEntry(t, mustGet(t, e, k), want)
		if err := e.s.Complete(e.ctx, k, tok, sampleResponse()); err != nil {
			t.Fatalf("Complete with the right token: %v", err)
		}
	}},
	{"ReleaseAfterCompleteIsFenced", func(t *testing.T, e *env) {
		k := e.key("k")
		tok := claimToken(t, e, k, "fp", testLease)
		resp := sampleResponse()
		if err := e.s.Complete(e.ctx, k, tok, resp); err != nil {
			t.Fatalf("Complete: %v", err)
		}
		want := mustGet(t, e, k)
		wantErr(t, "Release after Complete", e.s.Release(e.ctx, k, tok), ErrFenced)
		wantErr(t, "second Complete", e.s.Complete(e.ctx, k, tok, Response{Status: 200}), ErrFenced)
		got := mustGet(t, e, k)
		wantEntry(t, got, want)
		wantEntry(t, got, &Entry{Fingerprint: "fp", Token: tok, Completed: true, Response: &resp, ExpiresAt: want.ExpiresAt})
	}},
	// A claim whose lease has ended but that nobody took over is still its holder's: the holder's token
	// is still the key's current one, so Complete and Release succeed. The lease only lets another
	// caller take the key; until one does, the record is as the holder left it.
	{"FinishAfterLeaseEndedWithoutTakeover", func(t *testing.T, e *env) {
		done, released := e.key("done"), e.key("released")
		t0 := e.clk.Now()
		tokDone := claimToken(t, e, done, "fp", testLease)
		tokReleased := claimToken(t, e, released, "fp", testLease)
		e.clk.Advance(testLease + time.Second)
		// The lease has ended, the record is untouched.
		wantEntry(t, mustGet(t, e, released), &Entry{
			Fingerprint: "fp", Token: tokReleased, LeaseExpires: t0.Add(testLease), ExpiresAt: t0.Add(testTTL),
		})

		tc := e.clk.Now()
		resp := Response{Status: 200, Body: []byte("late")}
		if err := e.s.Complete(e.ctx, done, tokDone, resp); err != nil {
			t.Fatalf("Complete after the lease ended: %v", err)
		}
		wantEntry(t, mustGet(t, e, done), &Entry{
			Fingerprint: "fp", Token: tokDone, Completed: true, Response: &resp, ExpiresAt: tc.Add(testTTL),
		})
		wantEntry(t, claimEntry(t, e, done, "fp"), mustGet(t, e, done)) // replayed, not taken

		if err := e.s.Release(e.ctx, released, tokReleased); err != nil {
			t.Fatalf("Release after the lease ended: %v", err)
		}
		_, err := e.s.Get(e.ctx, released)
		wantErr(t, "Get after Release", err, ErrNotFound)
		wantErr(t, "second Release", e.s.Release(e.ctx, released, tokReleased), ErrFenced)
		if tok := claimToken(t, e, released, "fp", testLease); tok <= tokReleased {
			t.Fatalf("token after release = %d, want > %d", tok, tokReleased)
		}
	}},
	{"TTLExpiry", func(t *testing.T, e *env) {
		k := e.key("done")
		tok := claimToken(t, e, k, "fp", testLease)
		e.clk.Advance(time.Minute)
		if err := e.s.Complete(e.ctx, k, tok, Response{Status: 200}); err != nil {
			t.Fatalf("Complete: %v", err)
		}
		e.clk.Advance(testTTL - time.Millisecond) // the TTL counts from Complete
		mustGet(t, e, k)
		claimEntry(t, e, k, "fp")
		e.clk.Advance(time.Millisecond)
		_, err := e.s.Get(e.ctx, k)
		wantErr(t, "Get of an expired record", err, ErrNotFound)
		if got := claimToken(t, e, k, "fp2", testLease); got <= tok {
			t.Fatalf("token after expiry = %d, want > %d", got, tok)
		}

		// An in-flight claim expires too, and its holder is fenced.
		k2 := e.key("in-flight")
		tok2 := claimToken(t, e, k2, "fp", testLease)
		e.clk.Advance(testTTL)
		_, err = e.s.Get(e.ctx, k2)
		wantErr(t, "Get of an expired claim", err, ErrNotFound)
		wantErr(t, "Complete of an expired claim", e.s.Complete(e.ctx, k2, tok2, Response{}), ErrFenced)
		wantErr(t, "Release of an expired claim", e.s.Release(e.ctx, k2, tok2), ErrFenced)
		claimToken(t, e, k2, "fp", testLease)
	}},
	{"LeaseLongerThanTTL", func(t *testing.T, e *env) {
		k := e.key("k")
		t0 := e.clk.Now()
		lease := 2 * testTTL
		tok := claimToken(t, e, k, "fp", lease)
		wantEntry(t, mustGet(t, e, k), &Entry{Fingerprint: "fp", Token: tok, LeaseExpires: t0.Add(lease), ExpiresAt: t0.Add(lease)})
		e.clk.Advance(testTTL + time.Second)
		if got := claimEntry(t, e, k, "other"); got.Token != tok {
			t.Fatalf("claim during the lease got %s", fmtEntry(got))
		}
	}},
	{"ConcurrentClaimsOneWinner", func(t *testing.T, e *env) {
		k := e.key("k")
		const n = 50
		claims := make([]Claim, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				claims[i], errs[i] = e.s.Claim(e.ctx, k, fmt.Sprint("fp-", i), testLease)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, c := range claims {
			if errs[i] != nil {
				t.Fatalf("claim %d: %v", i, errs[i])
			}
			if c.Token != 0 {
				if winner >= 0 {
					t.Fatalf("claims %d and %d both got tokens (%d, %d)", winner, i, claims[winner].Token, c.Token)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatal("no claim got a token")
		}
		for i, c := range claims {
			if i != winner && (c.Entry == nil || c.Entry.Token != claims[winner].Token || c.Entry.Fingerprint != fmt.Sprint("fp-", winner)) {
				t.Fatalf("claim %d = %+v, want the winner's entry (token %d)", i, c, claims[winner].Token)
			}
		}
	}},
	{"MissingKey", func(t *testing.T, e *env) {
		k := e.key("missing")
		_, err := e.s.Get(e.ctx, k)
		wantErr(t, "Get", err, ErrNotFound)
		wantErr(t, "Complete", e.s.Complete(e.ctx, k, 1, Response{}), ErrFenced)
		wantErr(t, "Release", e.s.Release(e.ctx, k, 1), ErrFenced)
		_, err = e.s.Get(e.ctx, k)
		wantErr(t, "Get after Complete and Release", err, ErrNotFound)
	}},
	{"ScopesIsolate", func(t *testing.T, e *env) {
		a := Key{Scope: e.scope, ID: "x"}
		b := Key{Scope: e.scope + "-other", ID: "x"}
		// These would collide if scope and ID were simply joined with ":".
		c := Key{Scope: e.scope + "a:b", ID: "c"}
		d := Key{Scope: e.scope + "a", ID: "b:c"}
		tokens := map[Key]uint64{}
		for _, k := range []Key{a, b, c, d} {
			tokens[k] = claimToken(t, e, k, "fp-"+k.Scope+"/"+k.ID, testLease)
		}
		if err := e.s.Complete(e.ctx, a, tokens[a], Response{Status: 200}); err != nil {
			t.Fatal(err)
		}
		if err := e.s.Release(e.ctx, c, tokens[c]); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, e, b); got.Completed || got.Token != tokens[b] || got.Fingerprint != "fp-"+b.Scope+"/x" {
			t.Fatalf("other scope's entry changed: %s", fmtEntry(got))
		}
		if got := mustGet(t, e, d); got.Token != tokens[d] {
			t.Fatalf("colliding key's entry changed: %s", fmtEntry(got))
		}
		if !mustGet(t, e, a).Completed {
			t.Fatal("completed entry lost")
		}
		wantErr(t, "Complete with another scope's token", e.s.Complete(e.ctx, b, tokens[a], Response{}), ErrFenced)
	}},
	{"EntriesAreCopies", func(t *testing.T, e *env) {
		k := e.key("k")
		tok := claimToken(t, e, k, "fp", testLease)
		resp := sampleResponse()
		if err := e.s.Complete(e.ctx, k, tok, resp); err != nil {
			t.Fatal(err)
		}
		want := sampleResponse()
		resp.Body[0] ^= 0xff
		resp.Header[0].Value = "changed"
		got := mustGet(t, e, k)
		if !sameResponse(got.Response, &want) {
			t.Fatal("changing the completed response changed the stored one")
		}
		got.Response.Body[0] ^= 0xff
		got.Response.Header[0].Value = "changed"
		if !sameResponse(mustGet(t, e, k).Response, &want) {
			t.Fatal("changing a returned entry changed the stored one")
		}
	}},
	{"TokensIncreaseAcrossKeys", func(t *testing.T, e *env) {
		var prev uint64
		for _, id := range []string{"a", "b", "c", "d"} {
			tok := claimToken(t, e, e.key(id), "fp", testLease)
			if tok <= prev {
				t.Fatalf("token for %q = %d, want > %d", id, tok, prev)
			}
			prev = tok
		}
	}},
	{"LeaseMustBePositive", func(t *testing.T, e *env) {
		k := e.key("k")
		for _, lease := range []time.Duration{0, -time.Second} {
			if c, err := e.s.Claim(e.ctx, k, "fp", lease); err == nil {
				t.Fatalf("Claim with lease %v = %+v, want an error", lease, c)
			}
		}
		_, err := e.s.Get(e.ctx, k)
		wantErr(t, "Get after refused claims", err, ErrNotFound)
	}},
	// A record's times must fit in int64 unix nanoseconds (time.Unix(0, math.MaxInt64), in 2262): a
	// claim whose lease or TTL would end later is refused and claims nothing, rather than wrapping
	// around to a lease that has already ended.
	{"LeaseOrTTLPastMaxTimeRefused", func(t *testing.T, e *env) {
		k := e.key("k")
		room := maxTime.Sub(e.clk.Now())
		for _, lease := range []time.Duration{room + time.Nanosecond, room + time.Hour, 250 * 365 * 24 * time.Hour, math.MaxInt64} {
			if c, err := e.s.Claim(e.ctx, k, "fp", lease); err == nil {
				t.Fatalf("Claim with lease %v = %+v, want an error", lease, c)
			}
			_, err := e.s.Get(e.ctx, k)
			wantErr(t, fmt.Sprintf("Get after the refused claim with lease %v", lease), err, ErrNotFound)
		}
		// A lease that ends exactly at the limit is fine, and holds the key.
		tok := claimToken(t, e, k, "fp", room)
		if got := claimEntry(t, e, k, "other"); got.Token != tok || got.Completed {
			t.Fatalf("claim during a lease to %v got %s", maxTime, fmtEntry(got))
		}
		e.clk.Advance(100 * 365 * 24 * time.Hour)
		if got := claimEntry(t, e, k, "other"); got.Token != tok {
			t.Fatalf("claim a century into the lease got %s", fmtEntry(got))
		}
	}},
	{"CancelledContext", func(t *testing.T, e *env) {
		k := e.key("k")
		ctx, cancel := context.WithCancel(e.ctx)
		cancel()
		_, err := e.s.Claim(ctx, k, "fp", testLease)
		wantErr(t, "Claim", err, context.Canceled)
		_, err = e.s.Get(ctx, k)
		wantErr(t, "Get", err, context.Canceled)
		wantErr(t, "Complete", e.s.Complete(ctx, k, 1, Response{}), context.Canceled)
		wantErr(t, "Release", e.s.Release(ctx, k, 1), context.Canceled)
		_, err = e.s.Get(e.ctx, k)
		wantErr(t, "Get after cancelled Claim", err, ErrNotFound)
	}},
	{"Closed", func(t *testing.T, e *env) {
		k := e.key("k")
		tok := claimToken(t, e, k, "fp", testLease)
		if err := e.s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := e.s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, err := e.s.Claim(e.ctx, k, "fp", testLease)
		wantErr(t, "Claim", err, ErrClosed)
		_, err = e.s.Get(e.ctx, k)
		wantErr(t, "Get", err, ErrClosed)
		wantErr(t, "Complete", e.s.Complete(e.ctx, k, tok, Response{}), ErrClosed)
		wantErr(t, "Release", e.s.Release(e.ctx, k, tok), ErrClosed)
	}},
}

// TestClaimTTLPastMaxTimeRefused: a store whose TTL would carry a record past maxTime refuses every
// claim, like a lease that long (see LeaseOrTTLPastMaxTimeRefused).
func TestClaimTTLPastMaxTimeRefused(t *testing.T) {
	t.Parallel()
	for _, f := range allFactories() {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			scope := newScope()
			clk := newFakeClock()
			s := f.open(t, scope, WithNow(clk.Now), WithTTL(maxTime.Sub(clk.Now())+time.Millisecond))
			e := &env{ctx: t.Context(), s: s, clk: clk, scope: scope}
			k := e.key("k")
			if c, err := s.Claim(e.ctx, k, "fp", testLease); err == nil {
				t.Fatalf("Claim with a TTL past %v = %+v, want an error", maxTime, c)
			}
			_, err := s.Get(e.ctx, k)
			wantErr(t, "Get after the refused claim", err, ErrNotFound)
		})
	}
}
