package outbound

import (
	"math"
	"math/rand/v2"
	"time"
)

// backoffCap returns the cap of the wait before retry n (n >= 1 is the
// number of retries so far, counting this one): min(max,
// initial*multiplier^(n-1)). Full jitter then draws the wait from [0, cap].
// A huge n, an overflow or an Inf gives max.
func backoffCap(initial, maxBackoff time.Duration, multiplier float64, n int) time.Duration {
	if initial <= 0 || maxBackoff <= 0 {
		return 0
	}
	if !(multiplier >= 1) {
		multiplier = 1
	}
	n = max(n, 1)
	f := float64(initial) * math.Pow(multiplier, float64(n-1))
	if math.IsNaN(f) || f >= float64(maxBackoff) {
		return maxBackoff
	}
	return time.Duration(f)
}

// fullJitter draws a duration uniformly from [0, limit].
func fullJitter(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	if limit == math.MaxInt64 {
		return time.Duration(rand.Int64N(math.MaxInt64))
	}
	return time.Duration(rand.Int64N(int64(limit) + 1))
}
