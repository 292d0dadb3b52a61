package outbound

import (
	"net/http"
	"sync/atomic"
	"time"
)

// hold is a target's shared Retry-After: the time until which every call to
// the target waits before an attempt. The zero hold holds nothing. It is
// safe for concurrent use, and lock-free.
type hold struct {
	until atomic.Pointer[time.Time]
}

// extend moves the hold to now+d unless it already ends later.
func (h *hold) extend(now time.Time, d time.Duration) {
	if d <= 0 {
		return
	}
	t := now.Add(d)
	for {
		old := h.until.Load()
		if old != nil && !old.Before(t) {
			return
		}
		if h.until.CompareAndSwap(old, &t) {
			return
		}
	}
}

// left returns how long the hold still lasts at now; 0 when it is over.
func (h *hold) left(now time.Time) time.Duration {
	t := h.until.Load()
	if t == nil {
		return 0
	}
	return max(t.Sub(now), 0)
}

// holding reports a status whose Retry-After holds every caller of the
// target: 429 and 503.
func holding(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// heldFor returns how long a response asks every caller of its target to
// wait: its Retry-After on a 429 or 503, capped by maxWait; 0 for anything
// else. Unlike the call's own wait, it ignores Policy.IgnoreRetryAfter,
// which is the caller's ask and does not speak for the other callers.
func heldFor(status int, h http.Header, now time.Time, maxWait time.Duration) time.Duration {
	if !holding(status) {
		return 0
	}
	d, ok := parseRetryAfter(h.Values("Retry-After"), now)
	if !ok {
		return 0
	}
	return min(d, maxWait)
}
