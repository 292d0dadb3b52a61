package outbound

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHoldExtendsOnly(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	var h hold
	if got := h.left(t0); got != 0 {
		t.Fatalf("zero hold lasts %v", got)
	}
	h.extend(t0, 5*time.Second)
	h.extend(t0, 2*time.Second) // shorter: ignored
	h.extend(t0, 0)
	if got := h.left(t0.Add(time.Second)); got != 4*time.Second {
		t.Fatalf("hold left %v, want 4s", got)
	}
	h.extend(t0.Add(time.Second), 10*time.Second)
	if got := h.left(t0.Add(time.Second)); got != 10*time.Second {
		t.Fatalf("hold left %v, want 10s", got)
	}
	if got := h.left(t0.Add(time.Hour)); got != 0 {
		t.Fatalf("hold left %v after it ended", got)
	}
}

func TestHeldFor(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		status int
		after  string
		want   time.Duration
	}{
		{429, "5", 5 * time.Second},
		{503, "5", 5 * time.Second},
		{503, "120", time.Minute}, // capped
		{500, "5", 0},
		{200, "5", 0},
		{429, "", 0},
		{429, "soon", 0},
		{429, "0", 0},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.after != "" {
			h.Set("Retry-After", tt.after)
		}
		if got := heldFor(tt.status, h, now, time.Minute); got != tt.want {
			t.Errorf("heldFor(%d, %q) = %v, want %v", tt.status, tt.after, got, tt.want)
		}
	}
}

// holdPolicy is the default policy with ShareRetryAfter and one attempt.
func holdPolicy() Policy {
	p := policy()
	p.ShareRetryAfter = true
	p.MaxAttempts = 1
	return p
}

// A 429 with Retry-After: 5 to one call holds the target: another call waits
// the 5s before its first attempt (recorded as target_hold), even one that
// ignores Retry-After for itself; with only 2s left it fails at once without
// sending.
func TestSharedRetryAfterHoldsOtherCalls(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(429, "Retry-After", "5"), status(200))
	clock := newFakeClock()
	c, s := newClient(t, WithNow(clock.now))
	limited := request(t, "GET", up.URL+"/a", nil)
	limited.Policy = holdPolicy()
	resp, err := c.Do(context.Background(), limited)
	if err != nil || resp.Status != 429 || resp.Stopped != StopMaxAttempts {
		t.Fatalf("first call: %v, %v", resp, err)
	}

	t.Run("waits", func(t *testing.T) {
		for _, ignore := range []bool{false, true} {
			other := request(t, "GET", up.URL+"/b", nil)
			other.Policy = holdPolicy()
			other.Policy.IgnoreRetryAfter = ignore
			before := len(s.got())
			resp, err := c.Do(context.Background(), other)
			if err != nil || resp.Status != 200 {
				t.Fatalf("IgnoreRetryAfter=%v: %v, %v", ignore, resp, err)
			}
			if a := resp.Attempts[0]; a.Backoff != 5*time.Second || a.BackoffReason != ReasonTargetHold {
				t.Fatalf("IgnoreRetryAfter=%v: first attempt waited %v (%s), want 5s (target_hold)", ignore, a.Backoff, a.BackoffReason)
			}
			if got := s.got()[before:]; !reflect.DeepEqual(got, []time.Duration{5 * time.Second}) {
				t.Fatalf("IgnoreRetryAfter=%v: slept %v, want [5s]", ignore, got)
			}
		}
	})
	t.Run("fails fast", func(t *testing.T) {
		sent := len(up.seen())
		other := request(t, "GET", up.URL+"/c?sig=s3cret", nil)
		other.Policy = holdPolicy()
		other.Policy.TotalTimeout = 2 * time.Second
		before := len(s.got())
		_, err := c.Do(context.Background(), other)
		var ex *ExhaustedError
		if !errors.As(err, &ex) {
			t.Fatalf("err = %v, want *ExhaustedError", err)
		}
		if ex.Sent || ex.Stopped != StopDeadline || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassTargetHold {
			t.Fatalf("Sent=%v Stopped=%q attempts=%+v, want one unsent target_hold attempt", ex.Sent, ex.Stopped, ex.Attempts)
		}
		detail := ex.Attempts[0].Detail
		if want := targetKey(other.URL) + " asked callers to wait 5s more (Retry-After); only 2s of the deadline is left"; detail != want {
			t.Fatalf("detail %q, want %q", detail, want)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("message echoes the query: %v", err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("a hold refusal reads as the deadline")
		}
		if len(up.seen()) != sent || len(s.got()) != before {
			t.Fatalf("upstream saw %d more, slept %v more", len(up.seen())-sent, s.got()[before:])
		}
	})
	t.Run("not shared", func(t *testing.T) {
		other := request(t, "GET", up.URL+"/d", nil)
		other.Policy = holdPolicy()
		other.Policy.ShareRetryAfter = false
		resp, err := c.Do(context.Background(), other)
		if err != nil || resp.Status != 200 || resp.Attempts[0].Backoff != 0 {
			t.Fatalf("%v, %v; want an answer without a wait", resp, err)
		}
	})
	t.Run("over", func(t *testing.T) {
		clock.advance(5 * time.Second)
		other := request(t, "GET", up.URL+"/e", nil)
		other.Policy = holdPolicy()
		resp, err := c.Do(context.Background(), other)
		if err != nil || resp.Status != 200 || resp.Attempts[0].Backoff != 0 {
			t.Fatalf("%v, %v; want an answer without a wait", resp, err)
		}
	})
}

// The hold lengthens a retry's own wait when it is longer, and a retry that
// the hold pushes past the deadline is not made: the answer in hand is
// returned, stopped for the deadline. The hold is set while the call's first
// attempt is in flight, by another call's 429.
func TestSharedHoldLengthensRetryWait(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		total    time.Duration
		attempts []string
		stopped  string
	}{
		{"fits", time.Minute, []string{"Service Unavailable", "OK"}, ""},
		{"past the deadline", 20 * time.Second, []string{"Service Unavailable"}, StopDeadline},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			c, s := newClient(t, WithNow(clock.now))
			var url string
			var firstB atomic.Bool
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/a":
					status(429, "Retry-After", "30")(w, r)
				case !firstB.Swap(true):
					other := request(t, "GET", url+"/a", nil)
					other.Policy = holdPolicy()
					if resp, err := c.Do(r.Context(), other); err != nil || resp.Status != 429 {
						t.Errorf("the other call: %v, %v", resp, err)
					}
					status(503)(w, r)
				default:
					status(200)(w, r)
				}
			})
			url = up.URL

			req := request(t, "GET", up.URL+"/b", nil)
			req.Policy = holdPolicy()
			req.Policy.MaxAttempts = 2
			req.Policy.TotalTimeout = tt.total
			resp, err := c.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if got := classes(resp.Attempts); !reflect.DeepEqual(got, tt.attempts) || resp.Stopped != tt.stopped {
				t.Fatalf("attempts %v stopped %q, want %v stopped %q", got, resp.Stopped, tt.attempts, tt.stopped)
			}
			if tt.stopped == "" {
				if a := resp.Attempts[1]; a.Backoff != 30*time.Second || a.BackoffReason != ReasonTargetHold {
					t.Fatalf("retry waited %v (%s), want 30s (target_hold) instead of its own 50ms backoff", a.Backoff, a.BackoffReason)
				}
				if got := s.got(); !reflect.DeepEqual(got, []time.Duration{30 * time.Second}) {
					t.Fatalf("slept %v, want [30s]", got)
				}
			} else if got := s.got(); len(got) != 0 {
				t.Fatalf("slept %v, want no wait", got)
			}
		})
	}
}

// The call that receives the 429 waits its own Retry-After (retry_after):
// the hold it set is not longer.
func TestSharedHoldOwnRetryAfter(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(429, "Retry-After", "120"), status(200))
	clock := newFakeClock()
	c, _ := newClient(t, WithNow(clock.now))
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy = holdPolicy()
	req.Policy.MaxAttempts = 2
	req.Policy.MaxRetryAfter = 10 * time.Second
	resp, err := c.Do(context.Background(), req)
	if err != nil || resp.Status != 200 {
		t.Fatalf("%v, %v", resp, err)
	}
	if a := resp.Attempts[1]; a.Backoff != 10*time.Second || a.BackoffReason != ReasonRetryAfterCapped {
		t.Fatalf("retry waited %v (%s), want 10s (retry_after_capped)", a.Backoff, a.BackoffReason)
	}
	// The hold is capped the same way.
	other := request(t, "GET", up.URL+"/", nil)
	other.Policy = holdPolicy()
	other.Policy.MaxRetryAfter = 10 * time.Second
	resp, err = c.Do(context.Background(), other)
	if err != nil || resp.Attempts[0].Backoff != 10*time.Second || resp.Attempts[0].BackoffReason != ReasonTargetHold {
		t.Fatalf("other call: %+v, %v; want a 10s target_hold wait", resp, err)
	}
}
