package policy

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/outbound"
)

// layered has distinct values in every layer so that each test can tell
// which layer a value came from:
//
//	value            built-in  defaults  target api  policy pol  caps (org / api)
//	connect          3s        2s        4s          1s          10s
//	read             30s       20s       40s         -           60s
//	attempt          10s       8s        -           -           60s
//	total            30s       25s       -           50s         100s / 40s
//	max_attempts     3         2         3           5           6 / 4
//	initial_backoff  100ms     200ms     -           -           40s (max_backoff)
//	max_backoff      10s       5s        -           -           40s
//	multiplier       2         3         4           -           8
//	retry_on_status  5 codes   [503]     [502]       [429]       -
//	max_retry_after  60s       30s       -           -           60s / 20s
//	request bytes    4MiB      1MiB      2MiB        -           8MiB
//	response bytes   3968KiB   2MiB      -           5MiB        16MiB / 3MiB
const layered = `version: 1
defaults:
  timeouts: {connect: 2s, read: 20s, attempt: 8s, total: 25s}
  retry: {max_attempts: 2, initial_backoff: 200ms, max_backoff: 5s, multiplier: 3, retry_on_status: [503], max_retry_after: 30s}
  max_request_bytes: 1MiB
  max_response_bytes: 2MiB
caps:
  max_attempts: 6
  max_total_timeout: 100s
  max_backoff: 40s
  max_multiplier: 8
  max_response_bytes: 16MiB
policies:
  pol:
    timeouts: {connect: 1s, total: 50s}
    retry: {max_attempts: 5, retry_on_status: [429]}
    max_response_bytes: 5MiB
  empty: {}
targets:
  - host: api.example.com
    timeouts: {connect: 4s, read: 40s}
    retry: {max_attempts: 3, multiplier: 4, retry_on_status: [502]}
    max_request_bytes: 2MiB
    caps: {max_attempts: 4, max_total_timeout: 40s, max_retry_after: 20s, max_response_bytes: 3MiB}
    max_conns: 8
    idempotency_header: x-request-key
    follow_redirects: true
    protection:
      retry_budget: {ratio: 0.5}
      breaker: {enabled: false}
      share_retry_after: false
  - host: "*.example.com"
    retry: {max_attempts: 5}
    follow_redirects: true
    max_redirects: 7
  - host: "*.b.example.com"
    timeouts: {read: 45s}
    caps: {max_attempts: 1}
`

func mustLoad(t testing.TB, src string) *Set {
	t.Helper()
	s, err := Load("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func TestResolvePrecedence(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, layered)
	orgBudget := Default().Budget
	tests := []struct {
		name    string
		ask     Ask
		policy  string
		host    string
		want    func(r *Resolved) // edits the expectation built from defaults
		clamped []string
	}{
		{
			name: "no ask, no policy, no rule: the file's defaults",
			host: "plain.org",
		},
		{
			name:   "explicit default policy is the defaults",
			policy: "default",
			host:   "plain.org",
		},
		{
			name: "target rule beats defaults; rule-only settings apply",
			host: "api.example.com",
			want: func(r *Resolved) {
				r.TargetRule = "api.example.com"
				o := &r.Outbound
				o.ConnectTimeout, o.ReadTimeout = 4*time.Second, 40*time.Second
				o.MaxAttempts, o.Multiplier, o.RetryOn = 3, 4, []int{502}
				o.MaxRetryAfter = 20 * time.Second // the rule's cap lowers the default 30s
				r.MaxRequestBytes = 2 << 20
				o.MaxConns, o.MaxRedirects = 8, DefaultMaxRedirects
				o.Budget = outbound.Budget{Ratio: 0.5, MinPerSecond: orgBudget.MinPerSecond, Window: orgBudget.Window}
				o.Breaker, o.ShareRetryAfter = outbound.Breaker{}, false
				r.IdempotencyHeader = "X-Request-Key"
			},
			clamped: []string{"retry.max_retry_after: 30s -> 20s (cap of target api.example.com)"},
		},
		{
			name:   "named policy beats target rule; its values above the rule's caps are clamped",
			policy: "pol",
			host:   "api.example.com",
			want: func(r *Resolved) {
				r.Policy, r.TargetRule = "pol", "api.example.com"
				o := &r.Outbound
				o.ConnectTimeout, o.ReadTimeout, o.TotalTimeout = time.Second, 40*time.Second, 40*time.Second
				o.MaxAttempts, o.Multiplier, o.RetryOn = 4, 4, []int{429}
				o.MaxRetryAfter, o.MaxResponseBytes = 20*time.Second, 3<<20
				r.MaxRequestBytes = 2 << 20
				o.MaxConns, o.MaxRedirects = 8, DefaultMaxRedirects
				o.Budget = outbound.Budget{Ratio: 0.5, MinPerSecond: orgBudget.MinPerSecond, Window: orgBudget.Window}
				o.Breaker, o.ShareRetryAfter = outbound.Breaker{}, false
				r.IdempotencyHeader = "X-Request-Key"
			},
			clamped: []string{
				"timeouts.total: 50s -> 40s (cap of target api.example.com)",
				"retry.max_attempts: 5 -> 4 (cap of target api.example.com)",
				"retry.max_retry_after: 30s -> 20s (cap of target api.example.com)",
				"max_response_bytes: 5MiB -> 3MiB (cap of target api.example.com)",
			},
		},
		{
			name:   "named policy beats defaults where no rule matches",
			policy: "pol",
			host:   "plain.org",
			want: func(r *Resolved) {
				r.Policy = "pol"
				o := &r.Outbound
				o.ConnectTimeout, o.TotalTimeout = time.Second, 50*time.Second
				o.MaxAttempts, o.RetryOn, o.MaxResponseBytes = 5, []int{429}, 5<<20
			},
		},
		{
			name:   "a policy that sets nothing falls through to the rule",
			policy: "empty",
			host:   "api.example.com",
			want: func(r *Resolved) {
				r.Policy, r.TargetRule = "empty", "api.example.com"
				o := &r.Outbound
				o.ConnectTimeout, o.ReadTimeout = 4*time.Second, 40*time.Second
				o.MaxAttempts, o.Multiplier, o.RetryOn = 3, 4, []int{502}
				o.MaxRetryAfter = 20 * time.Second
				r.MaxRequestBytes = 2 << 20
				o.MaxConns, o.MaxRedirects = 8, DefaultMaxRedirects
				o.Budget = outbound.Budget{Ratio: 0.5, MinPerSecond: orgBudget.MinPerSecond, Window: orgBudget.Window}
				o.Breaker, o.ShareRetryAfter = outbound.Breaker{}, false
				r.IdempotencyHeader = "X-Request-Key"
			},
			clamped: []string{"retry.max_retry_after: 30s -> 20s (cap of target api.example.com)"},
		},
		{
			name: "the ask beats the named policy",
			ask: Ask{
				ConnectTimeout: 500 * time.Millisecond, ReadTimeout: 5 * time.Second, AttemptTimeout: 7 * time.Second,
				TotalTimeout: 9 * time.Second, MaxAttempts: 1, InitialBackoff: 50 * time.Millisecond,
				MaxBackoff: time.Second, Multiplier: 1.5, RetryOn: []int{418}, IgnoreRetryAfter: true,
			},
			policy: "pol",
			host:   "api.example.com",
			want: func(r *Resolved) {
				r.Policy, r.TargetRule = "pol", "api.example.com"
				o := &r.Outbound
				o.ConnectTimeout, o.ReadTimeout, o.AttemptTimeout, o.TotalTimeout = 500*time.Millisecond, 5*time.Second, 7*time.Second, 9*time.Second
				o.ShortenedTimeouts = true // below the policy's 1s, the rule's 40s and the defaults' 8s
				o.MaxAttempts, o.InitialBackoff, o.MaxBackoff, o.Multiplier = 1, 50*time.Millisecond, time.Second, 1.5
				o.RetryOn, o.IgnoreRetryAfter = []int{418}, true
				o.MaxRetryAfter, o.MaxResponseBytes = 20*time.Second, 3<<20
				r.MaxRequestBytes = 2 << 20
				o.MaxConns, o.MaxRedirects = 8, DefaultMaxRedirects
				o.Budget = outbound.Budget{Ratio: 0.5, MinPerSecond: orgBudget.MinPerSecond, Window: orgBudget.Window}
				o.Breaker, o.ShareRetryAfter = outbound.Breaker{}, false
				r.IdempotencyHeader = "X-Request-Key"
			},
			clamped: []string{
				"retry.max_retry_after: 30s -> 20s (cap of target api.example.com)",
				"max_response_bytes: 5MiB -> 3MiB (cap of target api.example.com)",
			},
		},
		{
			name: "asks above the org caps are clamped and reported",
			ask:  Ask{ConnectTimeout: time.Hour, TotalTimeout: 200 * time.Second, MaxAttempts: 50, Multiplier: 100, MaxBackoff: time.Minute},
			host: "plain.org",
			want: func(r *Resolved) {
				o := &r.Outbound
				o.ConnectTimeout, o.TotalTimeout = 10*time.Second, 100*time.Second
				o.MaxAttempts, o.Multiplier, o.MaxBackoff = 6, 8, 40*time.Second
			},
			clamped: []string{
				"timeouts.connect: 1h -> 10s (org cap)",
				"timeouts.total: 200s -> 100s (org cap)",
				"retry.max_attempts: 50 -> 6 (org cap)",
				"retry.max_backoff: 1m -> 40s (org cap)",
				"retry.multiplier: 100 -> 8 (org cap)",
			},
		},
		{
			name:   "asks above a target's caps are clamped to the lower of org and target caps",
			ask:    Ask{TotalTimeout: 60 * time.Second, MaxAttempts: 6, ConnectTimeout: time.Minute},
			policy: "",
			host:   "api.example.com",
			want: func(r *Resolved) {
				r.TargetRule = "api.example.com"
				o := &r.Outbound
				o.ConnectTimeout, o.ReadTimeout, o.TotalTimeout = 10*time.Second, 40*time.Second, 40*time.Second
				o.MaxAttempts, o.Multiplier, o.RetryOn = 4, 4, []int{502}
				o.MaxRetryAfter = 20 * time.Second
				r.MaxRequestBytes = 2 << 20
				o.MaxConns, o.MaxRedirects = 8, DefaultMaxRedirects
				o.Budget = outbound.Budget{Ratio: 0.5, MinPerSecond: orgBudget.MinPerSecond, Window: orgBudget.Window}
				o.Breaker, o.ShareRetryAfter = outbound.Breaker{}, false
				r.IdempotencyHeader = "X-Request-Key"
			},
			clamped: []string{
				"timeouts.connect: 1m -> 10s (org cap)",
				"timeouts.total: 1m -> 40s (cap of target api.example.com)",
				"retry.max_attempts: 6 -> 4 (cap of target api.example.com)",
				"retry.max_retry_after: 30s -> 20s (cap of target api.example.com)",
			},
		},
		{
			name: "a target cap below the defaults clamps them, reported",
			host: "x.b.example.com",
			want: func(r *Resolved) {
				r.TargetRule = "*.b.example.com"
				r.Outbound.ReadTimeout, r.Outbound.MaxAttempts = 45*time.Second, 1
			},
			clamped: []string{"retry.max_attempts: 2 -> 1 (cap of target *.b.example.com)"},
		},
		{
			name: "a wildcard rule: its own values, redirects named",
			host: "a.example.com",
			want: func(r *Resolved) {
				r.TargetRule = "*.example.com"
				r.Outbound.MaxAttempts, r.Outbound.MaxRedirects = 5, 7
			},
		},
		{
			name: "initial backoff asked above max_backoff raises max_backoff",
			ask:  Ask{InitialBackoff: 20 * time.Second},
			host: "plain.org",
			want: func(r *Resolved) {
				r.Outbound.InitialBackoff, r.Outbound.MaxBackoff = 20*time.Second, 20*time.Second
			},
		},
		{
			name: "initial backoff above the backoff cap is clamped, max follows",
			ask:  Ask{InitialBackoff: 100 * time.Second, MaxBackoff: time.Second},
			host: "plain.org",
			want: func(r *Resolved) {
				r.Outbound.InitialBackoff, r.Outbound.MaxBackoff = 40*time.Second, 40*time.Second
			},
			clamped: []string{"retry.initial_backoff: 100s -> 40s (org cap)"},
		},
		{
			name: "multiplier asked below 1 reads as 1",
			ask:  Ask{Multiplier: 0.25},
			host: "plain.org",
			want: func(r *Resolved) { r.Outbound.Multiplier = 1 },
		},
		{
			name: "NaN multiplier reads as 1",
			ask:  Ask{Multiplier: math.NaN()},
			host: "plain.org",
			want: func(r *Resolved) { r.Outbound.Multiplier = 1 },
		},
		{
			name: "negative asks are unset",
			ask:  Ask{ConnectTimeout: -time.Second, MaxAttempts: -3, InitialBackoff: -1},
			host: "plain.org",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := Resolved{
				Outbound: outbound.Policy{
					ConnectTimeout: 2 * time.Second, ReadTimeout: 20 * time.Second,
					AttemptTimeout: 8 * time.Second, TotalTimeout: 25 * time.Second,
					MaxAttempts: 2, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second,
					Multiplier: 3, RetryOn: []int{503}, MaxRetryAfter: 30 * time.Second,
					MaxResponseBytes: 2 << 20,
					MaxConns:         Default().MaxConns, Budget: Default().Budget, Breaker: Default().Breaker,
					ShareRetryAfter: true,
				},
				Policy:            DefaultName,
				IdempotencyHeader: DefaultIdempotencyHeader,
				MaxRequestBytes:   1 << 20,
				InFlightWait:      2 * time.Second,
				Clamped:           tt.clamped,
			}
			if tt.want != nil {
				tt.want(&want)
			}
			got, err := s.Resolve(tt.ask, tt.policy, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Resolve =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestResolveUnknownPolicy(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, layered)
	_, err := s.Resolve(Ask{}, "bulk", "api.example.com")
	if !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("err = %v, want ErrUnknownPolicy", err)
	}
	if want := `policy "bulk" is not defined (defined: default, empty, pol)`; err.Error() != want {
		t.Errorf("message = %q, want %q", err, want)
	}
	_, err = DefaultSet().Resolve(Ask{}, "payments", "x.org")
	if want := `policy "payments" is not defined (defined: default)`; err == nil || err.Error() != want {
		t.Errorf("DefaultSet message = %v, want %q", err, want)
	}
}

func TestResolveHostSpecificity(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `version: 1
targets:
  - {host: "*", max_conns: 1}
  - {host: "*.com", max_conns: 2}
  - {host: "*.example.com", max_conns: 3}
  - {host: "*.api.example.com", max_conns: 4}
  - {host: api.example.com, max_conns: 5}
  - {host: 10.0.0.5, max_conns: 6}
  - {host: "[2001:db8::1]", max_conns: 7}
  - {host: "BÜCHER.example.com.", max_conns: 8}
`)
	tests := []struct {
		host string
		rule string
	}{
		{"api.example.com", "api.example.com"},
		{"v1.api.example.com", "*.api.example.com"},
		{"a.b.api.example.com", "*.api.example.com"},
		{"www.example.com", "*.example.com"},
		{"example.com", "*.com"},
		{"com", "*"},
		{"example.org", "*"},
		{"10.0.0.5", "10.0.0.5"},
		{"::ffff:10.0.0.5", "10.0.0.5"},
		{"10.0.0.6", "*"},
		{"2001:db8::1", "2001:db8::1"},
		{"xn--bcher-kva.example.com", "xn--bcher-kva.example.com"},
		{"", "*"},
	}
	for _, tt := range tests {
		r, err := s.Resolve(Ask{}, "", tt.host)
		if err != nil {
			t.Fatal(err)
		}
		if r.TargetRule != tt.rule {
			t.Errorf("host %q: rule %q, want %q", tt.host, r.TargetRule, tt.rule)
		}
		if want := bruteMatch(s, parsedPatterns(s), tt.host); want.pattern != r.TargetRule {
			t.Errorf("host %q: brute-force match %q, Resolve %q", tt.host, want.pattern, r.TargetRule)
		}
	}
}

// TestDefaultSetMatchesDefault checks that the built-in Set resolves to
// exactly what Default().Resolve gives, for many asks.
func TestDefaultSetMatchesDefault(t *testing.T) {
	t.Parallel()
	s := DefaultSet()
	asks := []Ask{
		{},
		{MaxAttempts: 1},
		{MaxAttempts: 50},
		{ConnectTimeout: time.Hour, ReadTimeout: time.Hour, AttemptTimeout: time.Hour, TotalTimeout: time.Hour},
		{TotalTimeout: 2 * time.Second, ReadTimeout: time.Second},
		{InitialBackoff: 5 * time.Second, MaxBackoff: time.Second, Multiplier: 100},
		{InitialBackoff: time.Hour},
		{Multiplier: 0.5},
		{RetryOn: []int{409}, IgnoreRetryAfter: true},
		{ConnectTimeout: -1, MaxAttempts: -1, Multiplier: -2},
		{ConnectTimeout: 3 * time.Second, ReadTimeout: 30 * time.Second, AttemptTimeout: 10 * time.Second},
		{AttemptTimeout: time.Millisecond},
		{ConnectTimeout: time.Millisecond},
	}
	for _, ask := range asks {
		got, err := s.Resolve(ask, "", "api.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if want := Default().Resolve(ask); !reflect.DeepEqual(got.Outbound, want) {
			t.Errorf("ask %+v:\nDefaultSet %+v\nDefault    %+v", ask, got.Outbound, want)
		}
		if got.MaxRequestBytes != Default().MaxRequestBytes || got.InFlightWait != Default().InFlightWait ||
			got.IdempotencyHeader != "Idempotency-Key" || got.Policy != "default" || got.TargetRule != "" {
			t.Errorf("ask %+v: %+v", ask, got)
		}
	}
}

// TestDefaultSetValues pins the built-in numbers of DESIGN.md.
func TestDefaultSetValues(t *testing.T) {
	t.Parallel()
	s := DefaultSet()
	r, err := s.Resolve(Ask{}, "", "api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := outbound.Policy{
		ConnectTimeout: 3 * time.Second, ReadTimeout: 30 * time.Second, AttemptTimeout: 10 * time.Second, TotalTimeout: 30 * time.Second,
		MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, Multiplier: 2,
		RetryOn: []int{429, 500, 502, 503, 504}, MaxRetryAfter: 60 * time.Second, MaxResponseBytes: 4<<20 - 128<<10,
		MaxConns: 64,
		Budget:   outbound.Budget{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second},
		Breaker: outbound.Breaker{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20,
			Window: 30 * time.Second, OpenFor: 30 * time.Second, HalfOpenProbes: 1},
		ShareRetryAfter: true,
	}
	if !reflect.DeepEqual(r.Outbound, want) {
		t.Errorf("Outbound =\n%+v\nwant\n%+v", r.Outbound, want)
	}
	if r.MaxRequestBytes != 4<<20 || r.InFlightWait != 2*time.Second || r.Clamped != nil {
		t.Errorf("Resolved = %+v", r)
	}
	r, _ = s.Resolve(Ask{MaxAttempts: 9}, "", "x.org")
	if !slices.Equal(r.Clamped, []string{"retry.max_attempts: 9 -> 5 (org cap)"}) {
		t.Errorf("Clamped = %q", r.Clamped)
	}
	if s.Digest() != "embedded" || s.IdempotencyTTL() != 24*time.Hour || !slices.Equal(s.PolicyNames(), []string{"default"}) {
		t.Errorf("Digest %q TTL %v names %v", s.Digest(), s.IdempotencyTTL(), s.PolicyNames())
	}
	if id := s.Identity(); id.Anonymous != 1 || len(id.Callers) != 0 { // 1: identity.AnonymousLoopback
		t.Errorf("Identity = %+v, want loopback anonymous and no callers", id)
	}
	if srv := s.Server(); srv.Listen != nil || srv.Admin != nil || srv.Store != nil || srv.DrainTimeout != nil {
		t.Errorf("Server = %+v, want nothing set", srv)
	}
	if s.AllowCIDRs() != nil {
		t.Errorf("AllowCIDRs = %v", s.AllowCIDRs())
	}
}

func TestResolveDoesNotAliasSet(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, layered)
	r, _ := s.Resolve(Ask{}, "pol", "api.example.com")
	r.Outbound.RetryOn[0] = 999
	again, _ := s.Resolve(Ask{}, "pol", "api.example.com")
	if again.Outbound.RetryOn[0] != 429 {
		t.Fatal("Resolve must copy RetryOn: the Set's slice was changed")
	}
	ask := Ask{RetryOn: []int{500}}
	r, _ = s.Resolve(ask, "", "x.org")
	r.Outbound.RetryOn[0] = 1
	if ask.RetryOn[0] != 500 {
		t.Fatal("Resolve must copy the ask's RetryOn")
	}
}

func TestBuiltinDefaultsLoweredToFileCaps(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `version: 1
caps: {max_connect_timeout: 1s, max_attempts: 2, max_backoff: 50ms, max_multiplier: 1.5, max_retry_after: 5s, max_response_bytes: 1MiB}
defaults:
  timeouts: {read: 7s}
`)
	r, err := s.Resolve(Ask{}, "", "x.org")
	if err != nil {
		t.Fatal(err)
	}
	o := r.Outbound
	if o.ConnectTimeout != time.Second || o.ReadTimeout != 7*time.Second || o.AttemptTimeout != 10*time.Second ||
		o.MaxAttempts != 2 || o.InitialBackoff != 50*time.Millisecond || o.MaxBackoff != 50*time.Millisecond ||
		o.Multiplier != 1.5 || o.MaxRetryAfter != 5*time.Second || o.MaxResponseBytes != 1<<20 {
		t.Errorf("Outbound = %+v", o)
	}
	if r.Clamped != nil {
		t.Errorf("lowered built-in defaults are not clamps: %q", r.Clamped)
	}
}

// TestResolveConcurrently runs Resolve from many goroutines on one Set; under
// -race it proves Resolve only reads the Set.
func TestResolveConcurrently(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, layered)
	want, _ := s.Resolve(Ask{MaxAttempts: 50}, "pol", "api.example.com")
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 200 {
				got, err := s.Resolve(Ask{MaxAttempts: 50}, "pol", "api.example.com")
				if err == nil && !reflect.DeepEqual(got, want) {
					err = errors.New("a concurrent Resolve gave a different answer")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestResolveShortenedTimeouts checks that ShortenedTimeouts is set exactly
// when the ask lowers the connect, read or attempt timeout below what the
// request's policy, target rule, defaults and caps give without the ask.
func TestResolveShortenedTimeouts(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `version: 1
defaults:
  timeouts: {connect: 2s, read: 20s, attempt: 8s, total: 25s}
policies:
  quick:
    timeouts: {read: 5s}
targets:
  - host: api.example.com
    timeouts: {connect: 1s}
    caps: {max_attempt_timeout: 6s}
`)
	tests := []struct {
		name   string
		ask    Ask
		policy string
		host   string
		want   bool
	}{
		{"no ask", Ask{}, "", "plain.org", false},
		{"asks equal to the policy's values", Ask{ConnectTimeout: 2 * time.Second, ReadTimeout: 20 * time.Second, AttemptTimeout: 8 * time.Second}, "", "plain.org", false},
		{"asks above the policy's values", Ask{ConnectTimeout: 5 * time.Second, ReadTimeout: 50 * time.Second, AttemptTimeout: 9 * time.Second}, "", "plain.org", false},
		{"asks clamped to a cap", Ask{ConnectTimeout: time.Hour, ReadTimeout: time.Hour, AttemptTimeout: time.Hour}, "", "api.example.com", false},
		{"a shorter total timeout alone", Ask{TotalTimeout: time.Millisecond}, "", "plain.org", false},
		{"negative asks are unset", Ask{ConnectTimeout: -1, ReadTimeout: -time.Second}, "", "plain.org", false},
		{"a shorter connect", Ask{ConnectTimeout: 1999 * time.Millisecond}, "", "plain.org", true},
		{"a shorter read", Ask{ReadTimeout: time.Millisecond}, "", "plain.org", true},
		{"a shorter attempt", Ask{AttemptTimeout: 7 * time.Second}, "", "plain.org", true},
		{"connect equal to the target rule's", Ask{ConnectTimeout: time.Second}, "", "api.example.com", false},
		{"connect below the defaults but not the rule's", Ask{ConnectTimeout: 1500 * time.Millisecond}, "", "api.example.com", false},
		{"connect below the target rule's", Ask{ConnectTimeout: 999 * time.Millisecond}, "", "api.example.com", true},
		{"attempt equal to the rule's cap (the default 8s is clamped)", Ask{AttemptTimeout: 6 * time.Second}, "", "api.example.com", false},
		{"attempt below the rule's cap", Ask{AttemptTimeout: 5 * time.Second}, "", "api.example.com", true},
		{"read equal to the named policy's", Ask{ReadTimeout: 5 * time.Second}, "quick", "plain.org", false},
		{"read below the defaults but not the named policy's", Ask{ReadTimeout: 10 * time.Second}, "quick", "plain.org", false},
		{"read below the named policy's", Ask{ReadTimeout: 4 * time.Second}, "quick", "plain.org", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := s.Resolve(tt.ask, tt.policy, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Outbound.ShortenedTimeouts; got != tt.want {
				t.Errorf("ShortenedTimeouts = %v, want %v (connect %s, read %s, attempt %s)", got, tt.want,
					r.Outbound.ConnectTimeout, r.Outbound.ReadTimeout, r.Outbound.AttemptTimeout)
			}
		})
	}
}
