package outbound

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		class  string
		want   outcome
	}{
		{200, "", outcomeSuccess},
		{204, "", outcomeSuccess},
		{302, "", outcomeSuccess},
		{404, "", outcomeSuccess},
		{429, "", outcomeSuccess},
		{501, "", outcomeSuccess},
		{500, "", outcomeFailure},
		{502, "", outcomeFailure},
		{503, "", outcomeFailure},
		{504, "", outcomeFailure},
		{0, ClassConnectRefused, outcomeFailure},
		{0, ClassConnectTimeout, outcomeFailure},
		{0, ClassDNS, outcomeFailure},
		{0, ClassTLS, outcomeFailure},
		{0, ClassReset, outcomeFailure},
		{200, ClassReset, outcomeFailure}, // the body broke off
		{0, ClassReadTimeout, outcomeFailure},
		{0, ClassAttemptTimeout, outcomeFailure},
		{0, ClassProtocol, outcomeFailure},
		{0, ClassCanceled, outcomeNeutral},
		{0, ClassDeadline, outcomeNeutral},
		{0, ClassDenied, outcomeNeutral},
		{200, ClassBodyTooLarge, outcomeNeutral},
		{0, ClassOther, outcomeNeutral},
	}
	for _, tt := range tests {
		if got := verdict(tt.status, tt.class, false); got != tt.want {
			t.Errorf("verdict(%d, %q, false) = %v, want %v", tt.status, tt.class, got, tt.want)
		}
		// A caller's shortened timeouts say nothing about the upstream;
		// every other outcome keeps its verdict.
		want := tt.want
		switch tt.class {
		case ClassConnectTimeout, ClassReadTimeout, ClassAttemptTimeout:
			want = outcomeNeutral
		}
		if got := verdict(tt.status, tt.class, true); got != want {
			t.Errorf("verdict(%d, %q, true) = %v, want %v", tt.status, tt.class, got, want)
		}
	}
}

// try acquires a permit at now and settles it with o; it reports whether the
// breaker let the attempt through.
func try(b *breaker, now time.Time, o outcome) bool {
	p, why := b.acquire(now)
	if why != "" {
		return false
	}
	p.settle(o, now)
	return true
}

func TestBreakerStateMachine(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	cfg := Breaker{ConsecutiveFailures: 3, OpenFor: 10 * time.Second, HalfOpenProbes: 1}.normalized()
	b := newBreaker(cfg, "https://api.example.com:443", t0)

	// Neutral outcomes and a success break no streak but reset none either.
	for _, o := range []outcome{outcomeFailure, outcomeFailure, outcomeNeutral, outcomeSuccess, outcomeFailure, outcomeFailure} {
		if !try(b, t0, o) {
			t.Fatal("closed breaker refused")
		}
	}
	if !try(b, t0, outcomeFailure) { // the third in a row opens it
		t.Fatal("closed breaker refused")
	}
	_, why := b.acquire(t0.Add(time.Second))
	if want := "circuit breaker for https://api.example.com:443 is open after 3 consecutive failures; next probe in 9s"; why != want {
		t.Fatalf("refusal %q, want %q", why, want)
	}
	// Half-open: one probe at a time.
	t10 := t0.Add(10 * time.Second)
	probe, why := b.acquire(t10)
	if why != "" {
		t.Fatalf("half-open breaker refused the probe: %s", why)
	}
	if _, why := b.acquire(t10); !strings.Contains(why, "half-open: probe in progress") {
		t.Fatalf("second probe: %q, want a half-open refusal", why)
	}
	// A probe that ends neutral frees its place.
	probe.settle(outcomeNeutral, t10)
	probe, why = b.acquire(t10)
	if why != "" {
		t.Fatalf("probe place not freed: %s", why)
	}
	// A cancelled probe frees its place too.
	probe.cancel()
	probe, why = b.acquire(t10)
	if why != "" {
		t.Fatalf("probe place not freed by cancel: %s", why)
	}
	// A failed probe re-opens it for OpenFor.
	probe.settle(outcomeFailure, t10)
	if _, why := b.acquire(t10.Add(time.Second)); !strings.Contains(why, "open after a half-open probe failed; next probe in 9s") {
		t.Fatalf("after a failed probe: %q", why)
	}
	// A successful probe closes it with the streak reset.
	t20 := t10.Add(10 * time.Second)
	if !try(b, t20, outcomeSuccess) {
		t.Fatal("probe refused")
	}
	for range 2 {
		if !try(b, t20, outcomeFailure) {
			t.Fatal("closed breaker refused")
		}
	}
	if !try(b, t20, outcomeSuccess) {
		t.Fatal("two failures after closing opened the breaker: the streak was not reset")
	}
}

func TestBreakerStaleOutcomes(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	b := newBreaker(Breaker{ConsecutiveFailures: 1, OpenFor: time.Second}.normalized(), "http://h:80", t0)
	// Two attempts let through while closed, that end later.
	early1, _ := b.acquire(t0)
	early2, _ := b.acquire(t0)
	if !try(b, t0, outcomeFailure) {
		t.Fatal("refused")
	}
	// A success after the breaker opened says nothing about now.
	early1.settle(outcomeSuccess, t0)
	if _, why := b.acquire(t0); why == "" {
		t.Fatal("a stale success closed the open breaker")
	}
	// Nor does one close it once half-open, or free the probe's place.
	t1 := t0.Add(time.Second)
	probe, why := b.acquire(t1)
	if why != "" {
		t.Fatal(why)
	}
	early2.settle(outcomeSuccess, t1)
	if _, why := b.acquire(t1); !strings.Contains(why, "probe in progress") {
		t.Fatalf("after a stale success: %q, want the probe still in progress", why)
	}
	probe.settle(outcomeFailure, t1)
	if _, why := b.acquire(t1); !strings.Contains(why, "is open") {
		t.Fatalf("after a failed probe: %q, want open", why)
	}
}

func TestBreakerRatio(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	cfg := Breaker{FailureRatio: 0.5, MinRequests: 4, Window: 10 * time.Second, OpenFor: time.Minute}.normalized()
	b := newBreaker(cfg, "http://h:80", t0)
	// 3 failures alone are under MinRequests.
	for range 3 {
		if !try(b, t0, outcomeFailure) {
			t.Fatal("opened below MinRequests")
		}
	}
	// A window later they have slid out: 2 failures of 4 attempts then open.
	t10 := t0.Add(10 * time.Second)
	for _, o := range []outcome{outcomeSuccess, outcomeFailure, outcomeSuccess} {
		if !try(b, t10, o) {
			t.Fatal("opened on counts that slid out")
		}
	}
	if !try(b, t10, outcomeFailure) {
		t.Fatal("refused")
	}
	if _, why := b.acquire(t10); !strings.Contains(why, "open after 2 of 4 attempts failed within 10s") {
		t.Fatalf("refusal %q", why)
	}
}

// breakerPolicy is the default policy with a breaker that opens after n
// consecutive failures for a minute, one probe, no budget, one attempt.
func breakerPolicy(n int) Policy {
	p := policy()
	p.MaxAttempts = 1
	p.Breaker = Breaker{ConsecutiveFailures: n, OpenFor: time.Minute, HalfOpenProbes: 1}
	return p
}

// refusedByBreaker checks that err is the refusal of a first attempt by an
// open breaker.
func refusedByBreaker(t *testing.T, err error, detail string) {
	t.Helper()
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("err = %v, want *ExhaustedError", err)
	}
	if ex.Sent || ex.Stopped != StopBreaker || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassBreakerOpen {
		t.Fatalf("Sent=%v Stopped=%q attempts=%+v, want one unsent breaker_open attempt", ex.Sent, ex.Stopped, ex.Attempts)
	}
	if !strings.Contains(ex.Attempts[0].Detail, detail) {
		t.Fatalf("detail %q, want it to say %q", ex.Attempts[0].Detail, detail)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Fatalf("a breaker refusal reads as %v", err)
	}
}

func TestBreakerOpensAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	up := newCounting(t, always(503))
	clock := newFakeClock()
	c, _ := newClient(t, WithNow(clock.now))
	req := request(t, "GET", up.URL+"/v1/charges?api_key=s3cret", nil)
	req.Policy = breakerPolicy(5)
	req.Policy.MaxAttempts = 3

	// 3 attempts, then 2: the 5th failure opens the breaker, which refuses
	// the retry; the 503 in hand is the answer.
	first, err := c.Do(context.Background(), req)
	if err != nil || len(first.Attempts) != 3 || first.Stopped != StopMaxAttempts {
		t.Fatalf("first call: %v, %v", first, err)
	}
	second, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if second.Status != 503 || string(second.Body) != "Service Unavailable" || len(second.Attempts) != 2 || second.Stopped != StopBreaker {
		t.Fatalf("second call: %d %q after %v, stopped %q; want the 503 after 2 attempts, stopped by the breaker",
			second.Status, second.Body, classes(second.Attempts), second.Stopped)
	}
	if n := up.n.Load(); n != 5 {
		t.Fatalf("upstream saw %d requests, want 5", n)
	}
	// Open: nothing reaches the upstream.
	clock.advance(48 * time.Second)
	for range 10 {
		_, err := c.Do(context.Background(), req)
		refusedByBreaker(t, err, "circuit breaker for "+targetKey(req.URL)+" is open after 5 consecutive failures; next probe in 12s")
		var ex *ExhaustedError
		errors.As(err, &ex)
		if d := ex.Attempts[0].Detail + err.Error(); strings.Contains(d, "s3cret") || strings.Contains(d, "?") {
			t.Fatalf("message echoes the query: %q", d)
		}
	}
	if n := up.n.Load(); n != 5 {
		t.Fatalf("upstream saw %d requests while the breaker was open, want none after the 5", n)
	}
}

func TestBreakerOpensOnFailureRatio(t *testing.T) {
	t.Parallel()
	// Every other request fails: 5 of the first 10.
	up := newCounting(t, func(i int64) int {
		if i%2 == 0 {
			return 502
		}
		return 200
	})
	clock := newFakeClock()
	c, _ := newClient(t, WithNow(clock.now))
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = breakerPolicy(0)
	req.Policy.Breaker = Breaker{FailureRatio: 0.5, MinRequests: 10, Window: 30 * time.Second, OpenFor: time.Minute}
	for i := range 10 {
		if _, err := c.Do(context.Background(), req); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	_, err := c.Do(context.Background(), req)
	refusedByBreaker(t, err, "is open after 5 of 10 attempts failed within 30s; next probe in 1m0s")
	if n := up.n.Load(); n != 10 {
		t.Fatalf("upstream saw %d requests, want 10", n)
	}

	// Under the ratio it stays closed: one request in three fails.
	under := newCounting(t, func(i int64) int {
		if i%3 == 0 {
			return 500
		}
		return 200
	})
	req = request(t, "GET", under.URL+"/", nil)
	req.Policy = breakerPolicy(0)
	req.Policy.Breaker = Breaker{FailureRatio: 0.5, MinRequests: 10, Window: 30 * time.Second, OpenFor: time.Minute}
	for i := range 60 {
		if _, err := c.Do(context.Background(), req); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
}

// gated answers request i (from 1) with code(i); when held(i), only once
// release is closed. Every request is announced on arrived.
type gated struct {
	*httptest.Server
	n       atomic.Int64
	arrived chan struct{}
	release chan struct{}
}

func newGated(t *testing.T, code func(i int64) int, held func(i int64) bool) *gated {
	t.Helper()
	g := &gated{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := g.n.Add(1)
		g.arrived <- struct{}{}
		if held(i) {
			<-g.release
		}
		status(code(i))(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

// Many calls arrive at a half-open breaker: exactly HalfOpenProbes reach the
// upstream, the others are refused at once, and those refusals do not count
// as failures: the probes' success closes the breaker.
func TestBreakerHalfOpenProbesUnderConcurrency(t *testing.T) {
	t.Parallel()
	for _, probes := range []int{1, 3} {
		t.Run(fmt.Sprintf("probes=%d", probes), func(t *testing.T) {
			t.Parallel()
			up := newGated(t, func(i int64) int {
				if i == 1 {
					return 503 // opens the breaker
				}
				return 200
			}, func(i int64) bool { return i > 1 }) // the probes wait

			clock := newFakeClock()
			c, _ := newClient(t, WithNow(clock.now))
			req := request(t, "GET", up.URL+"/", nil)
			req.Policy = breakerPolicy(1)
			req.Policy.Breaker.HalfOpenProbes = probes

			if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 503 {
				t.Fatalf("opening call: %v, %v", resp, err)
			}
			<-up.arrived
			_, err := c.Do(context.Background(), req)
			refusedByBreaker(t, err, "is open")
			clock.advance(time.Minute)

			const calls = 30
			type result struct {
				resp *Response
				err  error
			}
			results := make(chan result, calls)
			for range calls {
				go func() {
					resp, err := c.Do(context.Background(), req)
					results <- result{resp, err}
				}()
			}
			// Everyone but the probes is refused without waiting for them.
			for range calls - probes {
				var r result
				within(t, chanOf(results, &r), "a refused call to return")
				refusedByBreaker(t, r.err, "is half-open: probe in progress")
			}
			for range probes {
				within(t, up.arrived, "a probe to arrive")
			}
			if n := up.n.Load(); n != int64(1+probes) {
				t.Fatalf("upstream saw %d requests, want the opening one and %d probes", n, probes)
			}
			close(up.release)
			for range probes {
				var r result
				within(t, chanOf(results, &r), "a probe to return")
				if r.err != nil || r.resp.Status != 200 {
					t.Fatalf("probe: %v, %v", r.resp, r.err)
				}
			}
			// Closed: calls go through again.
			for range 5 {
				if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 200 {
					t.Fatalf("after the probe succeeded: %v, %v", resp, err)
				}
			}
		})
	}
}

// chanOf forwards one value of ch into *dst and then signals.
func chanOf[T any](ch <-chan T, dst *T) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		*dst = <-ch
		close(done)
	}()
	return done
}

func TestBreakerProbeFailureReopens(t *testing.T) {
	t.Parallel()
	up := newCounting(t, func(i int64) int {
		if i <= 2 {
			return 504
		}
		return 200
	})
	clock := newFakeClock()
	c, _ := newClient(t, WithNow(clock.now))
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = breakerPolicy(1)
	req.Policy.Breaker.OpenFor = 10 * time.Second

	if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 504 {
		t.Fatalf("opening call: %v, %v", resp, err)
	}
	clock.advance(10 * time.Second)
	probe, err := c.Do(context.Background(), req)
	if err != nil || probe.Status != 504 {
		t.Fatalf("probe: %v, %v", probe, err)
	}
	clock.advance(9 * time.Second)
	_, err = c.Do(context.Background(), req)
	refusedByBreaker(t, err, "is open after a half-open probe failed; next probe in 1s")
	if n := up.n.Load(); n != 2 {
		t.Fatalf("upstream saw %d requests, want 2", n)
	}
	clock.advance(time.Second)
	if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 200 {
		t.Fatalf("second probe: %v, %v", resp, err)
	}
}

// The caller's cancel says nothing about the upstream: it neither opens the
// breaker nor breaks a streak.
func TestBreakerIgnoresCallerCancel(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 10)
	up := newUpstream(t, status(503), func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	}, status(503), status(200))
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = breakerPolicy(2)

	if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 503 {
		t.Fatalf("first: %v, %v", resp, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	if _, err := c.Do(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	// Had the cancel counted as a failure, the breaker would be open now;
	// had it counted as a success, this 503 would not open it.
	if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 503 {
		t.Fatalf("third: %v, %v", resp, err)
	}
	_, err := c.Do(context.Background(), req)
	refusedByBreaker(t, err, "after 2 consecutive failures")
	if got := len(up.seen()); got != 3 {
		t.Fatalf("upstream saw %d requests, want 3", got)
	}
}

// A connection refused is a failure, and a refusal by the open breaker is
// not sent: Sent stays false, so an idempotency key can be released.
func TestBreakerCountsConnectFailures(t *testing.T) {
	t.Parallel()
	c, s := newClient(t)
	req := request(t, "POST", refusedURL(t), []byte("x"))
	req.Policy = breakerPolicy(2)
	req.Policy.MaxAttempts = 3
	_, err := c.Do(context.Background(), req)
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("err = %v", err)
	}
	if got, want := classes(ex.Attempts), []string{ClassConnectRefused, ClassConnectRefused}; !reflect.DeepEqual(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
	if ex.Sent || ex.Stopped != StopBreaker || len(s.got()) != 1 {
		t.Fatalf("Sent=%v Stopped=%q slept %v; want unsent, stopped by the breaker after one wait", ex.Sent, ex.Stopped, s.got())
	}
}

// A caller that asks for a read timeout shorter than the upstream needs
// (Policy.ShortenedTimeouts) cannot open the target's breaker for everyone
// with its own timeouts; the same timeouts under the policy's own values
// do open it, and a shortened run's other failures still count.
func TestShortenedTimeoutsDoNotOpenTheBreaker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		shortened bool
		slow      http.HandlerFunc // the first 5 answers; then 200
		class     string
		open      bool
	}{
		{"shortened read timeouts are neutral", true, hang(nil), ClassReadTimeout, false},
		{"the policy's own read timeouts are failures", false, hang(nil), ClassReadTimeout, true},
		{"a shortened run's 503s are failures", true, status(503), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			slow := []http.HandlerFunc{tt.slow, tt.slow, tt.slow, tt.slow, tt.slow, status(200)}
			up := newUpstream(t, slow...)
			c, _ := newClient(t)
			req := request(t, "GET", up.URL+"/", nil)
			req.Policy = breakerPolicy(5)
			req.Policy.ReadTimeout = 10 * time.Second
			if tt.class == ClassReadTimeout {
				req.Policy.ReadTimeout = time.Millisecond // the upstream takes until cancelled
			}
			req.Policy.ShortenedTimeouts = tt.shortened
			for i := range 5 {
				resp, err := c.Do(context.Background(), req)
				var ex *ExhaustedError
				switch {
				case tt.class != "":
					if !errors.As(err, &ex) || len(ex.Attempts) != 1 || ex.Attempts[0].Error != tt.class {
						t.Fatalf("call %d: %v, want one attempt of class %s", i+1, err, tt.class)
					}
				case err != nil || resp.Status != 503:
					t.Fatalf("call %d: %v %v, want the 503", i+1, resp, err)
				}
			}
			// The sixth call's answer comes at once; a loaded machine may
			// still take over 1ms to deliver it, which is not what is tested.
			req.Policy.ReadTimeout = 10 * time.Second
			resp, err := c.Do(context.Background(), req)
			if tt.open {
				refusedByBreaker(t, err, "after 5 consecutive failures")
				if n := len(up.seen()); n != 5 {
					t.Fatalf("upstream saw %d requests, want 5", n)
				}
				return
			}
			if err != nil || resp.Status != 200 {
				t.Fatalf("sixth call: %v %v; want it let through by a closed breaker", resp, err)
			}
		})
	}
}
