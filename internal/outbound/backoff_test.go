package outbound

import (
	"math"
	"testing"
	"time"
)

func TestBackoffCap(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	tests := []struct {
		name          string
		initial, maxB time.Duration
		mult          float64
		n             int
		want          time.Duration
	}{
		{"first retry is initial", 100 * ms, 10 * time.Second, 2, 1, 100 * ms},
		{"doubles", 100 * ms, 10 * time.Second, 2, 2, 200 * ms},
		{"doubles again", 100 * ms, 10 * time.Second, 2, 3, 400 * ms},
		{"multiplier 1.5", 100 * ms, 10 * time.Second, 1.5, 3, 225 * ms},
		{"multiplier 1 is constant", 100 * ms, 10 * time.Second, 1, 50, 100 * ms},
		{"capped", 100 * ms, 10 * time.Second, 2, 8, 10 * time.Second},
		{"exactly at cap", 100 * ms, 800 * ms, 2, 4, 800 * ms},
		{"huge n does not overflow", 100 * ms, 10 * time.Second, 2, 1 << 30, 10 * time.Second},
		{"max int n", 100 * ms, 10 * time.Second, 10, math.MaxInt, 10 * time.Second},
		{"Inf multiplier", 100 * ms, 10 * time.Second, math.Inf(1), 2, 10 * time.Second},
		{"NaN multiplier read as 1", 100 * ms, 10 * time.Second, math.NaN(), 5, 100 * ms},
		{"multiplier below 1 read as 1", 100 * ms, 10 * time.Second, 0.5, 5, 100 * ms},
		{"n below 1 read as 1", 100 * ms, 10 * time.Second, 2, 0, 100 * ms},
		{"initial above max", time.Minute, 10 * time.Second, 2, 1, 10 * time.Second},
		{"zero initial", 0, 10 * time.Second, 2, 3, 0},
		{"zero max", 100 * ms, 0, 2, 3, 0},
		{"max duration cap", 100 * ms, time.Duration(math.MaxInt64), 2, 1 << 20, time.Duration(math.MaxInt64)},
	}
	for _, tt := range tests {
		if got := backoffCap(tt.initial, tt.maxB, tt.mult, tt.n); got != tt.want {
			t.Errorf("%s: backoffCap(%v, %v, %v, %d) = %v, want %v", tt.name, tt.initial, tt.maxB, tt.mult, tt.n, got, tt.want)
		}
	}
}

func TestFullJitterStaysInRange(t *testing.T) {
	t.Parallel()
	for _, limit := range []time.Duration{0, -1, 1, time.Millisecond, time.Hour, time.Duration(math.MaxInt64)} {
		for range 200 {
			got := fullJitter(limit)
			if got < 0 || got > max(limit, 0) {
				t.Fatalf("fullJitter(%v) = %v, outside [0, %v]", limit, got, limit)
			}
		}
	}
	// Full jitter spreads: 200 draws from [0, 1h] are not all equal.
	seen := map[time.Duration]bool{}
	for range 200 {
		seen[fullJitter(time.Hour)] = true
	}
	if len(seen) < 100 {
		t.Fatalf("fullJitter(1h) gave only %d distinct values in 200 draws", len(seen))
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	half := func(limit time.Duration) time.Duration { return limit / 2 }
	wild := func(limit time.Duration) time.Duration { return limit * 3 } // clamped to limit
	base := Policy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, Multiplier: 2, MaxRetryAfter: time.Minute}
	ignore := base
	ignore.IgnoreRetryAfter = true
	tests := []struct {
		name       string
		p          Policy
		n, status  int
		retryAfter []string
		jitter     func(time.Duration) time.Duration
		want       time.Duration
		reason     string
	}{
		{"no status: backoff", base, 1, 0, nil, half, 50 * time.Millisecond, ReasonBackoff},
		{"third retry", base, 3, 500, nil, half, 200 * time.Millisecond, ReasonBackoff},
		{"jitter clamped to limit", base, 1, 0, nil, wild, 100 * time.Millisecond, ReasonBackoff},
		{"503 Retry-After seconds", base, 1, 503, []string{"2"}, half, 2 * time.Second, ReasonRetryAfter},
		{"429 Retry-After date", base, 1, 429, []string{now.Add(5 * time.Second).Format(timeFormat)}, half, 5 * time.Second, ReasonRetryAfter},
		{"429 Retry-After zero", base, 1, 429, []string{"0"}, half, 0, ReasonRetryAfter},
		{"Retry-After capped", base, 1, 503, []string{"120"}, half, time.Minute, ReasonRetryAfterCapped},
		{"Retry-After huge capped", base, 1, 503, []string{"99999999999999999999999"}, half, time.Minute, ReasonRetryAfterCapped},
		{"Retry-After ignored on 500", base, 1, 500, []string{"2"}, half, 50 * time.Millisecond, ReasonBackoff},
		{"Retry-After ignored on 502", base, 1, 502, []string{"2"}, half, 50 * time.Millisecond, ReasonBackoff},
		{"invalid Retry-After: backoff", base, 1, 503, []string{"soon"}, half, 50 * time.Millisecond, ReasonBackoff},
		{"policy ignores Retry-After", ignore, 1, 429, []string{"2"}, half, 50 * time.Millisecond, ReasonBackoff},
	}
	for _, tt := range tests {
		h := map[string][]string{}
		if tt.retryAfter != nil {
			h["Retry-After"] = tt.retryAfter
		}
		got, reason := delay(tt.p, tt.n, tt.status, h, now, tt.jitter)
		if got != tt.want || reason != tt.reason {
			t.Errorf("%s: delay = %v %q, want %v %q", tt.name, got, reason, tt.want, tt.reason)
		}
	}
}
