package outbound

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

// poolTarget returns the pool's current target for raw.
func poolTarget(t *testing.T, c *Client, raw string) *target {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	e, ok := c.pool.byKey[targetKey(u)]
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
	if first.transport.MaxConnsPerHost != defaultMaxConnsPerHost {
		t.Fatalf("MaxConns 0 gave %d connections, want the Client's default %d", first.transport.MaxConnsPerHost, defaultMaxConnsPerHost)
	}
	do("/", defaultMaxConnsPerHost) // the same value: the same transport
	if poolTarget(t, c, up.URL) != first {
		t.Fatal("an unchanged MaxConns built a new transport")
	}

	do("/", 2)
	second := poolTarget(t, c, up.URL)
	if second == first || second.transport.MaxConnsPerHost != 2 || second.prot != first.prot {
		t.Fatalf("MaxConns 2: new target %v, %d connections, same protection %v", second != first, second.transport.MaxConnsPerHost, second.prot == first.prot)
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
	if third.transport.MaxConnsPerHost != 3 || !second.evicted.Load() {
		t.Fatalf("MaxConns 3: %d connections, old evicted %v", third.transport.MaxConnsPerHost, second.evicted.Load())
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

// Evicting a target from the pool forgets its protection state.
func TestEvictionForgetsProtection(t *testing.T) {
	t.Parallel()
	a := newCounting(t, always(503))
	b := newCounting(t, always(200))
	c, _ := newClient(t, WithMaxTargets(1))
	reqA := request(t, "GET", a.URL+"/", nil)
	reqA.Policy = breakerPolicy(1)
	if _, err := c.Do(context.Background(), reqA); err != nil {
		t.Fatal(err)
	}
	_, err := c.Do(context.Background(), reqA)
	refusedByBreaker(t, err, "is open")
	if _, err := c.Do(context.Background(), request(t, "GET", b.URL+"/", nil)); err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Do(context.Background(), reqA); err != nil || resp.Status != 503 {
		t.Fatalf("after eviction: %v, %v; want the upstream reached", resp, err)
	}
	if n := a.n.Load(); n != 2 {
		t.Fatalf("upstream saw %d requests, want 2", n)
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
