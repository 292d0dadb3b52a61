package outbound

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// defaultBudget is fetchd's default: 20% of requests plus 10 retries/s, over
// 10s.
func defaultBudget() Budget { return Budget{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second} }

// grants asks b for n retries at now and counts the grants.
func grants(b *budget, now time.Time, n int) int {
	got := 0
	for range n {
		if b.retry(now) {
			got++
		}
	}
	return got
}

func TestBudgetRatioThenFloor(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	b := newBudget(defaultBudget(), t0)
	for range 100 {
		b.request(t0)
	}
	// 20 by the ratio (20 < 0.2*100 fails at the 21st), then 10 by the floor.
	if got := grants(b, t0, 100); got != 30 {
		t.Fatalf("granted %d retries for 100 requests, want 30 (20 by ratio + 10 by floor)", got)
	}
	// The next second: the ratio is still spent, the floor grants 10 more.
	if got := grants(b, t0.Add(time.Second), 100); got != 10 {
		t.Fatalf("granted %d in the next second, want 10 (floor only)", got)
	}
	// More requests in the window make room under the ratio: 200 requests
	// allow 40 retries, 40 were counted, so none; 250 allow 50: 10 more.
	for range 150 {
		b.request(t0.Add(time.Second))
	}
	if got := grants(b, t0.Add(time.Second), 100); got != 10 {
		t.Fatalf("granted %d after 150 more requests (250 in all, 40 retries), want 10", got)
	}
}

func TestBudgetFloorIsARateNotAReserve(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	b := newBudget(defaultBudget(), t0)
	// No requests for a whole window: a reserve would have filled to
	// Window*MinPerSecond = 100; the floor grants only this second's 10.
	if got := grants(b, t0.Add(30*time.Second), 1000); got != 10 {
		t.Fatalf("granted %d after an idle window, want 10", got)
	}
	// Fractional rate: "fewer than 0.5 granted this second" grants 1.
	f := newBudget(Budget{MinPerSecond: 0.5, Window: time.Second}, t0)
	if got := grants(f, t0, 10); got != 1 {
		t.Fatalf("MinPerSecond 0.5 granted %d in one second, want 1", got)
	}
}

func TestBudgetWindowSlides(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	b := newBudget(Budget{Ratio: 0.5, Window: 10 * time.Second}, t0)
	for range 10 {
		b.request(t0)
	}
	if got := grants(b, t0, 10); got != 5 {
		t.Fatalf("granted %d, want 5", got)
	}
	// Half a window later: the first requests and retries still count.
	t5 := t0.Add(5 * time.Second)
	for range 10 {
		b.request(t5)
	}
	if got := grants(b, t5, 10); got != 5 {
		t.Fatalf("granted %d at 5s (20 requests, 5 retries), want 5", got)
	}
	// A window after the first batch it has slid out: 10 requests, 5
	// retries, nothing left.
	t10 := t0.Add(10 * time.Second)
	if got := grants(b, t10, 10); got != 0 {
		t.Fatalf("granted %d at 10s, want 0", got)
	}
	// A window after the second batch everything has slid out.
	b.request(t5.Add(10 * time.Second))
	b.request(t5.Add(10 * time.Second))
	if got := grants(b, t5.Add(10*time.Second), 10); got != 1 {
		t.Fatalf("granted %d at 15s with 2 requests, want 1", got)
	}
}

func TestBudgetNormalized(t *testing.T) {
	t.Parallel()
	nan := Budget{Ratio: math.NaN(), MinPerSecond: math.NaN(), Window: time.Second}.normalized()
	if nan != (Budget{Window: time.Second}) {
		t.Fatalf("normalized NaN budget = %+v", nan)
	}
	// A config read from the same file twice is the same state, NaN or not.
	var p protection
	now := time.Now
	cfg := Policy{Budget: Budget{Ratio: math.NaN(), Window: time.Second}}.normalized().Budget
	first := p.budgetFor(cfg, now, true)
	if second := p.budgetFor(cfg, now, true); first != second {
		t.Fatal("the same budget config built new state")
	}
	if p.budgetFor(Budget{}, now, true) != nil {
		t.Fatal("a disabled budget has state")
	}
}

// budgetPolicy is the default policy with the default budget, the breaker
// off, a long total timeout and MaxAttempts attempts.
func budgetPolicy(attempts int) Policy {
	p := policy()
	p.Budget = defaultBudget()
	p.MaxAttempts = attempts
	return p
}

// The required bound: a dead upstream sees about (1 + Ratio) times the
// requests, not MaxAttempts times. The clock stands still, so the floor
// grants at most 10 retries in all: 200 + 0.2*200 + 10 = 250 at most.
func TestBudgetBoundsRetriesToDeadUpstream(t *testing.T) {
	t.Parallel()
	up := newCounting(t, always(503))
	clock := newFakeClock()
	c, _ := newClient(t, WithNow(clock.now))
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = budgetPolicy(5)

	var (
		st   stops
		wg   sync.WaitGroup
		errs = make(chan error, 200)
	)
	for range 20 {
		wg.Go(func() {
			for range 10 {
				resp, err := c.Do(context.Background(), req)
				if err != nil {
					errs <- err
					return
				}
				if resp.Status != 503 {
					errs <- errors.New("status " + http.StatusText(resp.Status))
					return
				}
				st.add(resp.Stopped)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := up.n.Load()
	t.Logf("200 calls x 5 attempts against a dead upstream: it saw %d requests; stopped: %d retry_budget, %d max_attempts",
		n, st.get(StopBudget), st.get(StopMaxAttempts))
	if n > 260 || n <= 200 {
		t.Fatalf("upstream saw %d requests, want more than 200 and at most 260", n)
	}
	if got := st.get(StopBudget) + st.get(StopMaxAttempts); got != 200 {
		t.Fatalf("%d calls stopped for the budget or max attempts, want all 200 (%v)", got, st.by)
	}
	if st.get(StopBudget) < 150 {
		t.Fatalf("only %d calls stopped for the budget (%v)", st.get(StopBudget), st.by)
	}
}

// A healthy upstream that fails 1 request in 20 gets every failure retried,
// by the ratio alone (the floor is off here, so it cannot hide a ratio that
// refuses).
func TestBudgetAllowsRetriesOfHealthyUpstream(t *testing.T) {
	t.Parallel()
	// Every 20th call fails its first attempt; a retry (a call seen before,
	// by its X-Call header) always succeeds. Counting sends instead would
	// let concurrent calls in lockstep land a retry on the next failing
	// slot again and again.
	var (
		mu     sync.Mutex
		calls  = map[string]bool{}
		n      atomic.Int64
		failed atomic.Int64
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		mu.Lock()
		seen := calls[r.Header.Get("X-Call")]
		calls[r.Header.Get("X-Call")] = true
		first := int64(len(calls))
		mu.Unlock()
		if !seen && first%20 == 0 {
			failed.Add(1)
			status(503)(w, r)
			return
		}
		status(200)(w, r)
	}))
	t.Cleanup(up.Close)
	clock := newFakeClock()
	c, _ := newClient(t, WithNow(clock.now))
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = budgetPolicy(5)
	req.Policy.Budget.MinPerSecond = 0

	var (
		wg      sync.WaitGroup
		retried atomic.Int64
		errs    = make(chan error, 400)
	)
	for g := range 20 {
		wg.Go(func() {
			for i := range 20 {
				req := *req
				req.Header = http.Header{"X-Call": {fmt.Sprintf("%d-%d", g, i)}}
				resp, err := c.Do(context.Background(), &req)
				if err != nil {
					errs <- err
					return
				}
				if resp.Status != 200 || resp.Stopped != "" {
					errs <- fmt.Errorf("got %d (stopped %q) after %v", resp.Status, resp.Stopped, classes(resp.Attempts))
					return
				}
				retried.Add(int64(len(resp.Attempts) - 1))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, r := n.Load(), retried.Load(); n != 400+r || r != 400/20 || failed.Load() != r {
		t.Fatalf("upstream saw %d requests and failed %d, with %d retries; want 400 + the 20 retries of the 20 failures", n, failed.Load(), r)
	}
}

// After Window passes, the requests and retries that spent the budget have
// slid out and retries are granted again. The floor is off, so only the
// ratio decides.
func TestBudgetRefillsAfterWindow(t *testing.T) {
	t.Parallel()
	up := newCounting(t, always(503))
	clock := newFakeClock()
	c, _ := newClient(t, WithNow(clock.now))
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = budgetPolicy(2)
	req.Policy.Budget = Budget{Ratio: 0.2, Window: 10 * time.Second}

	do := func() *Response {
		t.Helper()
		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Call k is retried while the retries so far are fewer than 0.2*k:
	// calls 1, 6 and 11.
	var retried []int
	for k := 1; k <= 11; k++ {
		if len(do().Attempts) == 2 {
			retried = append(retried, k)
		}
	}
	if !reflect.DeepEqual(retried, []int{1, 6, 11}) {
		t.Fatalf("calls %v were retried, want [1 6 11]", retried)
	}
	if resp := do(); len(resp.Attempts) != 1 || resp.Stopped != StopBudget {
		t.Fatalf("12th call: %v stopped %q, want one attempt stopped by the budget", classes(resp.Attempts), resp.Stopped)
	}
	clock.advance(time.Second) // a new second does not help: there is no floor
	if resp := do(); len(resp.Attempts) != 1 || resp.Stopped != StopBudget {
		t.Fatalf("a second later: %v stopped %q, want one attempt stopped by the budget", classes(resp.Attempts), resp.Stopped)
	}
	clock.advance(10 * time.Second)
	if resp := do(); len(resp.Attempts) != 2 || resp.Stopped != StopMaxAttempts {
		t.Fatalf("a window later: %v stopped %q, want a retry, then max attempts", classes(resp.Attempts), resp.Stopped)
	}
}
