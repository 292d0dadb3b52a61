package outbound

import (
	"math"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

// retryAfterNow is the clock of the seeds: the now of TestParseRetryAfter.
var retryAfterNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// FuzzRetryAfter checks parseRetryAfter against its doc comment, read as a
// reference model (digits, HTTP-date, whitespace, duplicates, invalid
// forms), and that delay and heldFor never wait longer than the policy's
// caps allow, nor less than zero.
//
// values is a Retry-After header given count times (0, 1 or 2; the second
// copy is other); nowSec is the clock (Unix seconds); offset places a
// generated HTTP-date relative to now; the rest is the policy.
//
//	go test -run '^$' -fuzz '^FuzzRetryAfter$' -fuzztime 60s ./internal/outbound/
func FuzzRetryAfter(f *testing.F) {
	now := retryAfterNow.Unix()
	date := func(d time.Duration) string { return retryAfterNow.Add(d).Format(http.TimeFormat) }
	// The cases of TestParseRetryAfter.
	for _, v := range [][]string{
		nil, {"120"}, {"0"}, {"007"}, {" \t3 "}, {date(90 * time.Second)}, {"  " + date(time.Minute) + " "},
		{retryAfterNow.Add(30 * time.Second).Format(time.RFC850)}, {retryAfterNow.Add(10 * time.Second).Format(time.ANSIC)},
		{date(-time.Hour)}, {"Thu, 01 Jan 1970 00:00:00 GMT"}, {"-5"}, {"+5"}, {"1.5"}, {"soon"}, {""}, {"   "},
		{"1 2"}, {"10s"}, {"99999999999999999999999999"}, {"9223372036854775807"}, {"9223372037"}, {"9223372036"},
		{"5", "5"}, {"5", " 5 "}, {"5", "6"}, {"5", date(5 * time.Second)}, {"5, 6"},
	} {
		value, other := "", ""
		if len(v) > 0 {
			value = v[0]
		}
		if len(v) > 1 {
			other = v[1]
		}
		f.Add(value, other, uint8(len(v)), now, int32(90), int64(time.Minute), uint16(503), false)
	}
	f.Fuzz(func(t *testing.T, value, other string, count uint8, nowSec int64, offset int32, maxRetryAfter int64, status uint16, ignore bool) {
		now := time.Unix(nowSec, 0).UTC()
		var values []string
		switch count % 3 {
		case 1:
			values = []string{value}
		case 2:
			values = []string{value, other}
		}

		d, ok := parseRetryAfter(values, now)
		wantD, wantOK := retryAfterModel(values, now)
		if ok != wantOK || (ok && d != wantD) {
			t.Fatalf("parseRetryAfter(%q, %v) = %v, %v; the documented contract says %v, %v", values, now, d, ok, wantD, wantOK)
		}
		if ok && d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v: negative", values, d)
		}
		// Whitespace around a value and a repeated identical value change nothing.
		alone, aloneOK := parseRetryAfter([]string{value}, now)
		if padded, paddedOK := parseRetryAfter([]string{" \t" + value + "\t ", value}, now); paddedOK != aloneOK || aloneOK && padded != alone {
			t.Fatalf("padded and repeated %q = %v, %v; alone %v, %v", value, padded, paddedOK, alone, aloneOK)
		}

		checkGeneratedDate(t, nowSec, offset)

		p := Policy{
			InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, Multiplier: 2,
			MaxRetryAfter: time.Duration(maxRetryAfter), IgnoreRetryAfter: ignore,
		}.normalized()
		h := http.Header{}
		for _, v := range values {
			h.Add("Retry-After", v)
		}
		wild := func(limit time.Duration) time.Duration { return time.Duration(int64(limit) ^ maxRetryAfter) }
		for n := 1; n <= 3; n++ {
			w, why := delay(p, n, int(status), h, now, wild)
			honoured := !ignore && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && ok
			switch {
			case w < 0:
				t.Fatalf("delay = %v (%s): negative", w, why)
			case honoured && d > p.MaxRetryAfter && (why != ReasonRetryAfterCapped || w != p.MaxRetryAfter):
				t.Fatalf("delay = %v (%s) for Retry-After %v; want the cap %v (%s)", w, why, d, p.MaxRetryAfter, ReasonRetryAfterCapped)
			case honoured && d <= p.MaxRetryAfter && (why != ReasonRetryAfter || w != d):
				t.Fatalf("delay = %v (%s) for Retry-After %v under cap %v; want it as is (%s)", w, why, d, p.MaxRetryAfter, ReasonRetryAfter)
			case !honoured && (why != ReasonBackoff || w > backoffCap(p.InitialBackoff, p.MaxBackoff, p.Multiplier, n)):
				t.Fatalf("delay = %v (%s) retry %d without a usable Retry-After; want a backoff within %v", w, why, n,
					backoffCap(p.InitialBackoff, p.MaxBackoff, p.Multiplier, n))
			}
		}
		held := heldFor(int(status), h, now, p.MaxRetryAfter)
		switch {
		case held < 0 || held > p.MaxRetryAfter:
			t.Fatalf("heldFor = %v: outside [0, %v]", held, p.MaxRetryAfter)
		case (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && ok && held != min(d, p.MaxRetryAfter):
			t.Fatalf("heldFor = %v for Retry-After %v capped at %v", held, d, p.MaxRetryAfter)
		}
	})
}

// retryAfterModel is parseRetryAfter's doc comment as code, written apart
// from it: big integers for delta-seconds (saturating at the largest
// Duration), a past date compared with now rather than clamped.
func retryAfterModel(values []string, now time.Time) (time.Duration, bool) {
	if len(values) == 0 {
		return 0, false
	}
	v := strings.TrimSpace(values[0])
	for _, o := range values[1:] {
		if strings.TrimSpace(o) != v {
			return 0, false // contradictory duplicates
		}
	}
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		n, _ := new(big.Int).SetString(v, 10)
		n.Mul(n, big.NewInt(int64(time.Second)))
		if !n.IsInt64() {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(n.Int64()), true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false // a sign, a fraction, a unit, a list, garbage
	}
	if !at.After(now) {
		return 0, true // a date in the past means retry now
	}
	return at.Sub(now), true
}

// checkGeneratedDate checks that an HTTP-date offset seconds from a clock
// in 1970-2068 comes back as offset (0 when past), in each of the three
// forms http.ParseTime knows, whatever the offset's sign.
func checkGeneratedDate(t *testing.T, nowSec int64, offset int32) {
	t.Helper()
	const span = 98 * 365 * 24 * 3600 // keep RFC 850's two-digit year unambiguous
	now := time.Unix(nowSec%span, 0).UTC()
	if now.Year() < 1970 {
		now = now.AddDate(98, 0, 0)
	}
	at := now.Add(time.Duration(offset) * time.Second)
	want := max(time.Duration(offset)*time.Second, 0)
	layouts := []string{http.TimeFormat, time.ANSIC}
	if y := at.Year(); y >= 1969 && y <= 2068 {
		layouts = append(layouts, time.RFC850)
	}
	for _, layout := range layouts {
		v := at.Format(layout)
		if d, ok := parseRetryAfter([]string{v}, now); !ok || d != want {
			t.Fatalf("parseRetryAfter(%q) at %v = %v, %v; want %v, true", v, now, d, ok, want)
		}
	}
}
