package policy

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
)

// FuzzLoad checks that Load never panics, that every refusal is an *Error,
// and that a Set that loads resolves every policy for every kind of host and
// ask without error, within the caps that apply, matching the host as
// egress.HostPattern does.
//
//	go test -run '^$' -fuzz FuzzLoad -fuzztime 60s ./internal/policy/
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("../../examples/*.yaml")
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, path := range append(seeds, bad...) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(layered))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Load("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("refusal without an *Error: %v", err)
			}
			if s != nil {
				t.Fatal("a Set came back with an error")
			}
			return
		}
		checkSet(t, s)
	})
}

// fuzzAsks covers unset, tiny, huge and malformed asks.
var fuzzAsks = []Ask{
	{},
	{ConnectTimeout: 1, ReadTimeout: 1, AttemptTimeout: 1, TotalTimeout: 1, MaxAttempts: 1, InitialBackoff: 1, MaxBackoff: 1, Multiplier: 1},
	{ConnectTimeout: math.MaxInt64, ReadTimeout: math.MaxInt64, AttemptTimeout: math.MaxInt64, TotalTimeout: math.MaxInt64,
		MaxAttempts: math.MaxInt, InitialBackoff: math.MaxInt64, MaxBackoff: math.MaxInt64, Multiplier: math.Inf(1)},
	{ConnectTimeout: -1, MaxAttempts: -1, InitialBackoff: -1, MaxBackoff: -1, Multiplier: math.NaN()},
	{InitialBackoff: time.Hour, MaxBackoff: time.Millisecond, Multiplier: 0.1, RetryOn: []int{500}},
}

func checkSet(t *testing.T, s *Set) {
	t.Helper()
	hosts := []string{"", "example.com", "api.example.com", "10.0.0.5", "::ffff:10.0.0.5", "2001:db8::1", "a.b.c.d.e"}
	for p := range s.exact {
		hosts = append(hosts, p, "x."+p)
	}
	for suffix := range s.suffix {
		hosts = append(hosts, "x"+suffix, "a.b"+suffix, suffix[1:])
	}
	patterns := parsedPatterns(s)
	for _, host := range hosts {
		rule := s.match(host)
		if want := bruteMatch(s, patterns, host); want != rule {
			t.Fatalf("host %q matched %q, egress.HostPattern says %q", host, rule.pattern, want.pattern)
		}
		for _, name := range append(s.PolicyNames(), "") {
			for _, ask := range fuzzAsks {
				r, err := s.Resolve(ask, name, host)
				if err != nil {
					t.Fatalf("Resolve(%q, %q): %v", name, host, err)
				}
				checkWithinCaps(t, r, rule.caps, ask)
			}
		}
	}
	_, _, _, _ = s.Identity(), s.Server(), s.AllowCIDRs(), s.IdempotencyTTL()
	if _, err := s.Resolve(Ask{}, "no such policy name at all", ""); !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("unknown policy: %v", err)
	}
}

func checkWithinCaps(t *testing.T, r Resolved, c limits, ask Ask) {
	t.Helper()
	o := r.Outbound
	fail := func(what string) { t.Fatalf("%s: %+v (caps %+v)", what, r, c) }
	switch {
	case o.ConnectTimeout <= 0 || o.ConnectTimeout > c.connect:
		fail("connect timeout")
	case o.ReadTimeout <= 0 || o.ReadTimeout > c.read:
		fail("read timeout")
	case o.AttemptTimeout <= 0 || o.AttemptTimeout > c.attempt:
		fail("attempt timeout")
	case o.TotalTimeout <= 0 || o.TotalTimeout > c.total:
		fail("total timeout")
	case o.MaxAttempts < 1 || o.MaxAttempts > c.maxAttempts:
		fail("max attempts")
	case o.InitialBackoff <= 0 || o.InitialBackoff > c.backoff:
		fail("initial backoff")
	case o.MaxBackoff < o.InitialBackoff || o.MaxBackoff > c.backoff:
		fail("max backoff")
	case !(o.Multiplier >= 1) || o.Multiplier > c.multiplier:
		fail("multiplier")
	case o.MaxRetryAfter <= 0 || o.MaxRetryAfter > c.retryAfter:
		fail("max retry after")
	case o.MaxResponseBytes < 0 || o.MaxResponseBytes > c.responseBytes || o.MaxResponseBytes > MaxResponseBytesLimit:
		fail("max response bytes")
	case r.MaxRequestBytes < 0 || r.MaxRequestBytes > c.requestBytes || r.MaxRequestBytes > MaxRequestBytesLimit:
		fail("max request bytes")
	case o.MaxConns < 1 || o.MaxRedirects < 0 || o.MaxRedirects > MaxRedirectsLimit:
		fail("target settings")
	case o.Budget.Enabled() && (o.Budget.Ratio < 0 || o.Budget.Ratio > 1 || o.Budget.MinPerSecond < 0):
		fail("budget")
	case o.Breaker.Enabled() && (o.Breaker.FailureRatio <= 0 || o.Breaker.FailureRatio > 1 || o.Breaker.MinRequests < 1 ||
		o.Breaker.Window <= 0 || o.Breaker.OpenFor <= 0 || o.Breaker.HalfOpenProbes < 1):
		fail("breaker")
	case r.IdempotencyHeader == "" || len(r.Clamped) > int(nFields):
		fail("idempotency header or clamp lines")
	}
	if len(ask.RetryOn) == 0 {
		for _, st := range o.RetryOn {
			if st < 400 || st > 599 {
				fail("retry_on_status")
			}
		}
	}
	for _, line := range r.Clamped {
		if !strings.Contains(line, " -> ") || !strings.HasSuffix(line, ")") {
			fail("clamp line " + line)
		}
	}
}

// parsedPatterns parses the pattern of every rule of s, for bruteMatch.
func parsedPatterns(s *Set) map[*rule]egress.HostPattern {
	m := map[*rule]egress.HostPattern{}
	for _, r := range s.exact {
		m[r] = egress.MustParseHostPattern(r.pattern)
	}
	for _, r := range s.suffix {
		m[r] = egress.MustParseHostPattern(r.pattern)
	}
	if s.any != nil {
		m[s.any] = egress.MustParseHostPattern(s.any.pattern)
	}
	return m
}

// bruteMatch is the reference host match: the most specific pattern that
// egress.HostPattern.Match accepts.
func bruteMatch(s *Set, patterns map[*rule]egress.HostPattern, host string) *rule {
	best, bestSpec := &s.none, -1
	for r, p := range patterns {
		if p.Match(host) && p.Specificity() > bestSpec {
			best, bestSpec = r, p.Specificity()
		}
	}
	return best
}
