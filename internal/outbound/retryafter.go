package outbound

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxDuration stands for a Retry-After too long to represent; the policy's
// MaxRetryAfter always caps it.
const maxDuration = time.Duration(math.MaxInt64)

// parseRetryAfter reads the values of a Retry-After header (RFC 9110 section
// 10.2.3) relative to now. ok is false when the header is absent or invalid,
// and the caller then uses the computed backoff.
//
//   - delta-seconds: one or more ASCII digits. "0" means retry now. A number
//     too large for a time.Duration gives maxDuration (never overflows).
//   - HTTP-date in any of the three forms http.ParseTime knows. A date in the
//     past means retry now (0).
//   - Leading and trailing whitespace is ignored.
//   - Invalid: empty, a sign ("-5", "+5"), a fraction, anything else.
//   - A header given more than once is valid only when every value is the
//     same (after trimming); differing values are contradictory, so the
//     header is ignored.
func parseRetryAfter(values []string, now time.Time) (d time.Duration, ok bool) {
	if len(values) == 0 {
		return 0, false
	}
	v := strings.TrimSpace(values[0])
	for _, o := range values[1:] {
		if strings.TrimSpace(o) != v {
			return 0, false
		}
	}
	if v == "" {
		return 0, false
	}
	if digits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > int64(maxDuration/time.Second) { // err is only ErrRange here
			return maxDuration, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true // Sub saturates instead of overflowing
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// delay decides the wait before retry n (n >= 1) after an attempt that got
// status (0 for none) with header h: Retry-After on 429 and 503 unless the
// policy ignores it, else the jittered exponential backoff.
func delay(p Policy, n, status int, h http.Header, now time.Time, jitter func(time.Duration) time.Duration) (time.Duration, string) {
	if !p.IgnoreRetryAfter && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
		if d, ok := parseRetryAfter(h.Values("Retry-After"), now); ok {
			if d > p.MaxRetryAfter {
				return p.MaxRetryAfter, ReasonRetryAfterCapped
			}
			return d, ReasonRetryAfter
		}
	}
	limit := backoffCap(p.InitialBackoff, p.MaxBackoff, p.Multiplier, n)
	return min(max(jitter(limit), 0), limit), ReasonBackoff
}
