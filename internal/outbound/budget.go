package outbound

import (
	"sync"
	"time"
)

// budget is the retry budget of one target: the requests and retries counted
// over a sliding window, and the retries the floor granted in the current
// second. It is safe for concurrent use.
type budget struct {
	cfg Budget // normalized; never changes

	mu      sync.Mutex
	counts  window // a: requests, b: retries
	second  int64  // the floor's current second since counts.base
	granted int    // retries the floor granted in that second
}

func newBudget(cfg Budget, now time.Time) *budget {
	return &budget{cfg: cfg, counts: newWindow(cfg.Window, now)}
}

// normalized makes a Budget comparable and usable: NaN and negative rates
// read as 0.
func (b Budget) normalized() Budget {
	if !(b.Ratio > 0) {
		b.Ratio = 0
	}
	if !(b.MinPerSecond > 0) {
		b.MinPerSecond = 0
	}
	return b
}

// request counts one request: a Do whose first attempt is being made.
func (b *budget) request(now time.Time) {
	b.mu.Lock()
	b.counts.add(now, 1, 0)
	b.mu.Unlock()
}

// empty reports whether the budget counted no request and no retry over the
// window that ends at now: forgetting it would lose nothing.
func (b *budget) empty(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	requests, retries := b.counts.sum(now)
	return requests == 0 && retries == 0
}

// retry asks for one retry and counts it when granted. A retry is granted
// while the retries counted over the window are fewer than Ratio times the
// requests; otherwise the floor grants it if it has granted fewer than
// MinPerSecond retries in the current whole second. The floor is a rate, not
// a reserve: what it did not grant in an earlier second is lost.
func (b *budget) retry(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	requests, retries := b.counts.sum(now)
	if float64(retries) < b.cfg.Ratio*float64(requests) {
		b.counts.add(now, 0, 1)
		return true
	}
	if sec := int64(max(now.Sub(b.counts.base), 0) / time.Second); sec != b.second {
		b.second, b.granted = sec, 0
	}
	if float64(b.granted) < b.cfg.MinPerSecond {
		b.granted++
		b.counts.add(now, 0, 1)
		return true
	}
	return false
}
