package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/outbound"
)

// badFiles maps each fixture in testdata/bad to the start of the first
// problem Load reports ("file:line: key: ") and a fragment of its message.
var badFiles = map[string]struct{ prefix, msg string }{
	"unknown_key.yaml":                           {"unknown_key.yaml:6: targets[1].retry.max_atempts: ", "unknown key; did you mean max_attempts? (known: initial_backoff, max_attempts, max_backoff, max_retry_after, multiplier, retry_on_status)"},
	"wrong_type_duration.yaml":                   {"wrong_type_duration.yaml:4: defaults.timeouts.connect: ", `"3x" is not a duration (write e.g. 3s or 250ms)`},
	"duration_without_unit.yaml":                 {"duration_without_unit.yaml:4: defaults.timeouts.read: ", "30 has no unit (write e.g. 3s or 250ms)"},
	"default_above_cap.yaml":                     {"default_above_cap.yaml:4: defaults.retry.max_attempts: ", "7 is above caps.max_attempts (5, line 6)"},
	"policy_above_cap.yaml":                      {"policy_above_cap.yaml:4: policies.payments.timeouts.total: ", "5m is above caps.max_total_timeout (2m, the built-in cap)"},
	"target_cap_above_org.yaml":                  {"target_cap_above_org.yaml:6: targets[0].caps.max_attempts: ", "6 is above caps.max_attempts (4, line 3); a target's caps can only tighten the org's"},
	"target_value_above_target_cap.yaml":         {"target_value_above_target_cap.yaml:4: targets[0].retry.max_attempts: ", "3 is above targets[0].caps.max_attempts (2, line 5)"},
	"duplicate_target.yaml":                      {"duplicate_target.yaml:4: targets[1].host: ", `"api.example.com" is the same pattern as targets[0] (line 3)`},
	"bad_host_pattern.yaml":                      {"bad_host_pattern.yaml:3: targets[0].host: ", "must be a host name, not a URL"},
	"duplicate_caller.yaml":                      {"duplicate_caller.yaml:5: callers[1].name: ", `caller "checkout" is already defined at callers[0] (line 3)`},
	"token_not_a_list.yaml":                      {"token_not_a_list.yaml:4: callers[0].tokens: ", "must be a list, got a string"},
	"bad_token_hash.yaml":                        {"bad_token_hash.yaml:4: callers[0].tokens[0]: ", `must be "sha256:" and the 64 hex digits`},
	"shared_token.yaml":                          {"shared_token.yaml:6: callers[1].tokens[0]: ", "the same token hash is already given at callers[0].tokens[0] (line 4)"},
	"bad_redact_query_param.yaml":                {"bad_redact_query_param.yaml:3: telemetry.redact_query_params[1]: ", `"a=b" is not a query parameter name`},
	"cidr_host_bits.yaml":                        {"cidr_host_bits.yaml:3: egress.allow_cidrs[1]: ", "10.20.1.5/16 has host bits set; write the network address 10.20.0.0/16"},
	"bad_cidr.yaml":                              {"bad_cidr.yaml:3: egress.allow_cidrs[0]: ", `"10.0.0.0/33" is not a CIDR range`},
	"negative_timeout.yaml":                      {"negative_timeout.yaml:4: defaults.timeouts.total: ", "must be positive, got -5s"},
	"zero_attempts_cap.yaml":                     {"zero_attempts_cap.yaml:3: caps.max_attempts: ", "must be at least 1, got 0"},
	"ratio_out_of_range.yaml":                    {"ratio_out_of_range.yaml:4: protection.retry_budget.ratio: ", "must be between 0 and 1, got 1.5"},
	"failure_ratio_zero.yaml":                    {"failure_ratio_zero.yaml:3: protection.breaker.failure_ratio: ", "must be above 0 and at most 1, got 0"},
	"status_out_of_range.yaml":                   {"status_out_of_range.yaml:4: defaults.retry.retry_on_status[1]: ", "700 is not an HTTP status (100-599)"},
	"status_below_400.yaml":                      {"status_below_400.yaml:5: policies.p.retry.retry_on_status[0]: ", "302 is below 400"},
	"bad_idempotency_header.yaml":                {"bad_idempotency_header.yaml:4: targets[0].idempotency_header: ", `"Idempotency Key" is not a valid HTTP header name`},
	"forbidden_idempotency_header.yaml":          {"forbidden_idempotency_header.yaml:4: targets[0].idempotency_header: ", "Authorization cannot carry the idempotency key"},
	"redirects_without_follow.yaml":              {"redirects_without_follow.yaml:4: targets[0].max_redirects: ", "only applies with follow_redirects: true"},
	"too_many_redirects.yaml":                    {"too_many_redirects.yaml:5: targets[0].max_redirects: ", "must be between 1 and 20, got 21"},
	"unknown_anonymous_mode.yaml":                {"unknown_anonymous_mode.yaml:3: anonymous.allow: ", `"sometimes" is not an anonymous mode: write never, loopback or always`},
	"missing_version.yaml":                       {"missing_version.yaml:1: version: ", `required: write "version: 1"`},
	"wrong_version.yaml":                         {"wrong_version.yaml:1: version: ", "2 is not supported: this fetchd reads version 1"},
	"empty.yaml":                                 {"empty.yaml: ", "empty policy file"},
	"comments_only.yaml":                         {"comments_only.yaml: ", "empty policy file"},
	"duplicate_key.yaml":                         {"duplicate_key.yaml:5: defaults.timeouts.connect: ", "duplicate key (first written on line 4)"},
	"two_documents.yaml":                         {"two_documents.yaml:2: ", "a second YAML document starts here"},
	"request_bytes_over_limit.yaml":              {"request_bytes_over_limit.yaml:3: defaults.max_request_bytes: ", "9MiB is above the 8MiB ceiling: fetchd's gRPC server receives messages of at most 8 MiB + 64 KiB"},
	"response_bytes_over_limit.yaml":             {"response_bytes_over_limit.yaml:3: caps.max_response_bytes: ", "65MiB is above the 64MiB ceiling"},
	"decimal_size_unit.yaml":                     {"decimal_size_unit.yaml:3: defaults.max_response_bytes: ", `"4MB" uses a decimal unit`},
	"negative_size.yaml":                         {"negative_size.yaml:3: defaults.max_response_bytes: ", "must not be negative, got -1"},
	"size_overflow.yaml":                         {"size_overflow.yaml:3: defaults.max_response_bytes: ", "is too large"},
	"string_for_number.yaml":                     {"string_for_number.yaml:3: caps.max_attempts: ", `must be a whole number, got the string "5"`},
	"float_for_int.yaml":                         {"float_for_int.yaml:3: defaults.retry.max_attempts: ", "must be a whole number, got 2.5"},
	"list_for_mapping.yaml":                      {"list_for_mapping.yaml:3: defaults.timeouts: ", "must be a mapping, got a list"},
	"alias.yaml":                                 {"alias.yaml:3: defaults.timeouts: ", "anchors (&t) are not supported"},
	"unquoted_wildcard.yaml":                     {"unquoted_wildcard.yaml: ", `line 3 has an unquoted value starting with *, which YAML reads as an alias: quote host patterns, e.g. "*.example.com"`},
	"initial_above_max_backoff.yaml":             {"initial_above_max_backoff.yaml:4: policies.slow.retry.initial_backoff: ", "5s is above policies.slow.retry.max_backoff (1s)"},
	"multiplier_below_one.yaml":                  {"multiplier_below_one.yaml:3: defaults.retry.multiplier: ", "must be at least 1, got 0.5"},
	"null_value.yaml":                            {"null_value.yaml:3: caps.max_attempts: ", "has no value"},
	"bad_caller_name.yaml":                       {"bad_caller_name.yaml:3: callers[0].name: ", `"Checkout" is not a caller name`},
	"anonymous_caller_name.yaml":                 {"anonymous_caller_name.yaml:3: callers[0].name: ", `"anonymous" is reserved`},
	"caller_without_credentials.yaml":            {"caller_without_credentials.yaml:3: callers[0]: ", `caller "checkout" has no tokens and no certificates`},
	"certificate_two_fields.yaml":                {"certificate_two_fields.yaml:5: callers[0].certificates[0]: ", "give exactly one of uri, dns and common_name, got 2"},
	"duplicate_certificate_dns_case.yaml":        {"duplicate_certificate_dns_case.yaml:8: callers[1].certificates[0]: ", "the same certificate identity is already given at callers[0].certificates[0] (line 5) (DNS names match in any case)"},
	"empty_allow_targets.yaml":                   {"empty_allow_targets.yaml:5: callers[0].allow_targets: ", "is empty, which would allow no host at all"},
	"default_policy_name.yaml":                   {"default_policy_name.yaml:3: policies.default: ", "write its values in the defaults section"},
	"bad_listen.yaml":                            {"bad_listen.yaml:3: server.listen: ", `"localhost" is not a listen address`},
	"bad_store.yaml":                             {"bad_store.yaml:3: server.store: ", "must be file:PATH, memory:, redis://HOST:PORT/DB"},
	"not_a_mapping.yaml":                         {"not_a_mapping.yaml:1: ", "a policy file is a mapping of sections"},
	"default_backoff_below_builtin_initial.yaml": {"default_backoff_below_builtin_initial.yaml:3: defaults.retry.max_backoff: ", "50ms is below the initial_backoff (100ms, built in)"},
}

// secrets are values in fixtures that must never appear in a message.
var secretValues = []string{"s3cr3t-raw-token", "hunter2", "raw-secret-token-value"}

func TestLoadRefusesBadFiles(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range paths {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, ok := badFiles[name]
			if !ok {
				t.Fatalf("fixture %s has no expectation in badFiles", name)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Load(name, data)
			if err == nil || s != nil {
				t.Fatalf("Load accepted %s", name)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not an *Error: %v", err)
			}
			first := e.Error()
			if !strings.HasPrefix(first, want.prefix) || !strings.Contains(first, want.msg) {
				t.Errorf("first problem:\n  %s\nwant prefix %q and %q", first, want.prefix, want.msg)
			}
			for _, secret := range secretValues {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("message shows a secret: %v", err)
				}
			}
		})
	}
	for name := range badFiles {
		if !seen[name] {
			t.Errorf("badFiles names %s, which is not in testdata/bad", name)
		}
	}
}

func TestLoadReportsEveryProblemInLineOrder(t *testing.T) {
	t.Parallel()
	_, err := Load("p.yaml", []byte(`version: 1
targets:
  - host: api.example.com
    max_redirects: 3
caps:
  max_atempts: 3
defaults:
  timeouts: {connect: 0s}
`))
	var lines []int
	for _, e := range joined(err) {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("not an *Error: %v", e)
		}
		lines = append(lines, pe.Line)
	}
	// The unknown key stops Load before values are checked: decoding
	// problems come first, alone.
	if !slices.Equal(lines, []int{6}) {
		t.Errorf("lines = %v (%v), want [6]", lines, err)
	}

	_, err = Load("p.yaml", []byte(`version: 1
targets:
  - host: api.example.com
    max_redirects: 3
defaults:
  timeouts: {connect: 0s}
  retry: {max_attempts: 0}
`))
	lines = nil
	for _, e := range joined(err) {
		var pe *Error
		if errors.As(e, &pe) {
			lines = append(lines, pe.Line)
		}
	}
	if !slices.Equal(lines, []int{4, 6, 7}) {
		t.Errorf("lines = %v (%v), want [4 6 7]", lines, err)
	}
}

func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestLoadCapsTheNumberOfProblems(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("version: 1\ntargets:\n")
	for range 50 {
		b.WriteString("  - {host: a.example, max_conns: 0}\n")
	}
	_, err := Load("p.yaml", []byte(b.String()))
	errs := joined(err)
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Error(), "more problems not shown") {
		t.Fatalf("got %d problems: %v", len(errs), err)
	}
}

func TestLoadFileNamesThePath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "fetchd.yaml")
	if err := os.WriteFile(path, []byte("version: 1\ncaps: {max_attempts: 0}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: caps.max_attempts: ") {
		t.Errorf("err = %v", err)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestExampleFile loads examples/policy.yaml and checks that it resolves as
// its comments say.
func TestExampleFile(t *testing.T) {
	t.Parallel()
	const path = "../../examples/policy.yaml"
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.RedactQueryParams(); !slices.Equal(got, []string{"api_key", "access_token"}) {
		t.Errorf("RedactQueryParams = %v", got)
	}
	sum := sha256.Sum256(data)
	if s.Digest() != hex.EncodeToString(sum[:]) {
		t.Errorf("Digest = %s", s.Digest())
	}

	srv := s.Server()
	if srv.Listen == nil || *srv.Listen != "127.0.0.1:7070" || srv.Admin == nil || *srv.Admin != "127.0.0.1:7071" ||
		srv.Store == nil || *srv.Store != "file:data/fetchd.db" || srv.DrainTimeout == nil || *srv.DrainTimeout != 20*time.Second {
		t.Errorf("Server = %+v", srv)
	}
	if got := s.AllowCIDRs(); !slices.Equal(got, []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}) {
		t.Errorf("AllowCIDRs = %v", got)
	}
	if s.IdempotencyTTL() != 24*time.Hour {
		t.Errorf("IdempotencyTTL = %v", s.IdempotencyTTL())
	}
	if got := s.PolicyNames(); !slices.Equal(got, []string{"default", "bulk", "payments"}) {
		t.Errorf("PolicyNames = %v", got)
	}

	resolve := func(ask Ask, policy, host string) Resolved {
		t.Helper()
		r, err := s.Resolve(ask, policy, host)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// Default policy, no specific rule: "*" sets only max_conns 16.
	r := resolve(Ask{}, "", "other.org")
	o := r.Outbound
	if r.TargetRule != "*" || o.MaxConns != 16 || o.ConnectTimeout != 3*time.Second || o.TotalTimeout != 30*time.Second ||
		o.MaxAttempts != 3 || o.MaxResponseBytes != 3968<<10 || r.MaxRequestBytes != 4<<20 || r.InFlightWait != 2*time.Second ||
		!o.ShareRetryAfter || o.Breaker.ConsecutiveFailures != 5 || o.Budget.Ratio != 0.2 || o.MaxRedirects != 0 || r.Clamped != nil {
		t.Errorf("other.org: %+v", r)
	}

	// api.stripe.com: connect 2s, total 25s, 2 attempts, 1MiB responses, 32
	// connections, breaker after 3 consecutive failures, the rest from the org.
	r = resolve(Ask{}, "", "api.stripe.com")
	o = r.Outbound
	if r.TargetRule != "api.stripe.com" || o.ConnectTimeout != 2*time.Second || o.TotalTimeout != 25*time.Second ||
		o.MaxAttempts != 2 || o.MaxResponseBytes != 1<<20 || o.MaxConns != 32 || o.MaxRedirects != 0 ||
		o.Breaker.ConsecutiveFailures != 3 || o.Breaker.FailureRatio != 0.5 || o.Budget.Ratio != 0.2 ||
		r.IdempotencyHeader != "Idempotency-Key" || r.Clamped != nil {
		t.Errorf("api.stripe.com: %+v", r)
	}

	// payments on stripe: the policy's total 20s wins; its 4 attempts are
	// clamped to the rule's cap of 2.
	r = resolve(Ask{}, "payments", "api.stripe.com")
	if r.Outbound.TotalTimeout != 20*time.Second || r.Outbound.MaxAttempts != 2 ||
		!slices.Equal(r.Clamped, []string{"retry.max_attempts: 4 -> 2 (cap of target api.stripe.com)"}) {
		t.Errorf("payments on stripe: %+v", r)
	}
	// bulk on stripe: total 90s clamped to the rule's 25s.
	r = resolve(Ask{}, "bulk", "api.stripe.com")
	if r.Outbound.TotalTimeout != 25*time.Second || r.Outbound.AttemptTimeout != 30*time.Second ||
		!slices.Equal(r.Outbound.RetryOn, []int{503}) || r.Outbound.MaxResponseBytes != 16<<20 ||
		!slices.Equal(r.Clamped, []string{"timeouts.total: 90s -> 25s (cap of target api.stripe.com)"}) {
		t.Errorf("bulk on stripe: %+v", r)
	}
	// payments elsewhere: 4 attempts stand (org cap 5); an ask of 9 is clamped.
	r = resolve(Ask{MaxAttempts: 9}, "payments", "other.org")
	if r.Outbound.MaxAttempts != 5 || !slices.Equal(r.Clamped, []string{"retry.max_attempts: 9 -> 5 (org cap)"}) {
		t.Errorf("payments elsewhere: %+v", r)
	}
	if r = resolve(Ask{}, "payments", "other.org"); r.Outbound.MaxAttempts != 4 || r.Outbound.TotalTimeout != 20*time.Second {
		t.Errorf("payments elsewhere: %+v", r)
	}

	// *.example.com: follows up to 3 redirects, no budget, no shared Retry-After.
	r = resolve(Ask{}, "", "www.example.com")
	o = r.Outbound
	if r.TargetRule != "*.example.com" || o.MaxRedirects != 3 || o.Budget.Enabled() || o.ShareRetryAfter ||
		!o.Breaker.Enabled() || o.MaxConns != 64 {
		t.Errorf("www.example.com: %+v", r)
	}

	id := s.Identity()
	tok := sha256.Sum256([]byte("test"))
	want := identity.Config{
		Callers: []identity.Caller{
			{
				Name:         "checkout",
				Tokens:       [][sha256.Size]byte{tok},
				Certificates: []identity.CertMatch{{URI: "spiffe://example.org/checkout"}},
				AllowTargets: []egress.HostPattern{egress.MustParseHostPattern("api.stripe.com"), egress.MustParseHostPattern("*.example.com")},
				Rate:         identity.Rate{PerSecond: 100, Burst: 200},
			},
			{
				Name:         "reports",
				Certificates: []identity.CertMatch{{DNS: "reports.internal.example.org"}, {CommonName: "reports-batch"}},
			},
		},
		Anonymous:             identity.AnonymousLoopback,
		AnonymousAllowTargets: []egress.HostPattern{egress.MustParseHostPattern("*.example.com")},
		AnonymousRate:         identity.Rate{PerSecond: 5, Burst: 5},
	}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("Identity =\n%+v\nwant\n%+v", id, want)
	}
}

func TestLoadMinimalFileTakesBuiltins(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, "version: 1\n")
	got, err := s.Resolve(Ask{MaxAttempts: 4}, "", "api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if want := Default().Resolve(Ask{MaxAttempts: 4}); !reflect.DeepEqual(got.Outbound, want) {
		t.Errorf("Outbound =\n%+v\nwant\n%+v", got.Outbound, want)
	}
	// Unlike DefaultSet, a file without an anonymous section refuses anonymous calls.
	if id := s.Identity(); id.Anonymous != identity.AnonymousNever {
		t.Errorf("Anonymous = %v, want never", id.Anonymous)
	}
}

func TestLoadTargetProtectionReplacesFieldByField(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `version: 1
protection:
  retry_budget: {enabled: false, ratio: 0.3}
  breaker: {consecutive_failures: 7, min_requests: 40}
targets:
  - host: a.example
    protection:
      retry_budget: {enabled: true, window: 5s}
      breaker: {enabled: true, open_for: 1m}
  - host: b.example
    protection:
      breaker: {enabled: false}
`)
	r, _ := s.Resolve(Ask{}, "", "a.example")
	b := Default().Breaker
	b.ConsecutiveFailures, b.MinRequests, b.OpenFor = 7, 40, time.Minute
	if want := (outbound.Budget{Ratio: 0.3, MinPerSecond: 10, Window: 5 * time.Second}); r.Outbound.Budget != want || r.Outbound.Breaker != b {
		t.Errorf("a.example: budget %+v breaker %+v", r.Outbound.Budget, r.Outbound.Breaker)
	}
	r, _ = s.Resolve(Ask{}, "", "b.example")
	if r.Outbound.Budget.Enabled() || r.Outbound.Breaker.Enabled() {
		t.Errorf("b.example: budget %+v breaker %+v", r.Outbound.Budget, r.Outbound.Breaker)
	}
	r, _ = s.Resolve(Ask{}, "", "c.example")
	b.OpenFor = Default().Breaker.OpenFor
	if r.Outbound.Budget.Enabled() || r.Outbound.Breaker != b {
		t.Errorf("c.example: budget %+v breaker %+v", r.Outbound.Budget, r.Outbound.Breaker)
	}
}

func TestLoadCallerDetails(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `version: 1
callers:
  - name: svc-a.v2
    tokens: ["sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"]
    rate_limit: {per_second: 2.5}
anonymous: {allow: always}
`)
	id := s.Identity()
	if id.Anonymous != identity.AnonymousAlways || len(id.Callers) != 1 {
		t.Fatalf("Identity = %+v", id)
	}
	c := id.Callers[0]
	if c.Name != "svc-a.v2" || len(c.Tokens) != 1 || c.Tokens[0] != sha256.Sum256([]byte("test")) ||
		c.AllowTargets != nil || c.Rate != (identity.Rate{PerSecond: 2.5, Burst: 3}) {
		t.Errorf("caller = %+v (upper-case hex decodes; burst defaults to per_second rounded up; no allow_targets = any)", c)
	}
	// Identity returns a copy.
	id.Callers[0].Name = "changed"
	id.Callers[0].Tokens[0][0] ^= 0xff
	if again := s.Identity(); again.Callers[0].Name != "svc-a.v2" || again.Callers[0].Tokens[0] != sha256.Sum256([]byte("test")) {
		t.Errorf("Identity shares state with the Set: %+v", again.Callers[0])
	}
}

func TestLoadServerAndCopies(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `version: 1
server: {admin: "", listen: "[::1]:0", store: "memory:"}
egress: {allow_cidrs: ["127.0.0.0/8", "fd00::/8"]}
idempotency: {ttl: 1h, in_flight_wait: 0s}
`)
	srv := s.Server()
	if srv.Admin == nil || *srv.Admin != "" || *srv.Listen != "[::1]:0" || *srv.Store != "memory:" || srv.DrainTimeout != nil {
		t.Errorf("Server = %+v", srv)
	}
	*srv.Listen = "changed"
	if *s.Server().Listen != "[::1]:0" {
		t.Error("Server shares its pointers with the Set")
	}
	cidrs := s.AllowCIDRs()
	cidrs[0] = netip.Prefix{}
	if s.AllowCIDRs()[0] != netip.MustParsePrefix("127.0.0.0/8") {
		t.Error("AllowCIDRs shares its slice with the Set")
	}
	r, _ := s.Resolve(Ask{}, "", "x.org")
	if s.IdempotencyTTL() != time.Hour || r.InFlightWait != 0 {
		t.Errorf("ttl %v in-flight wait %v", s.IdempotencyTTL(), r.InFlightWait)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want byteSize
		bad  string
	}{
		{in: "0B", want: 0},
		{in: "512B", want: 512},
		{in: "64KiB", want: 64 << 10},
		{in: "4 MiB", want: 4 << 20},
		{in: "3968KiB", want: 3968 << 10},
		{in: "1GiB", want: 1 << 30},
		{in: "8589934591GiB", want: 8589934591 << 30},
		{in: "8589934592GiB", bad: "is too large"},
		{in: "4MB", bad: "decimal unit"},
		{in: "4kb", bad: "decimal unit"},
		{in: "4", bad: "has no unit"},
		{in: "4mib", bad: "has no unit"},
		{in: "-4MiB", bad: "is negative"},
		{in: "1.5MiB", bad: "not a whole number"},
		{in: "MiB", bad: "not a whole number"},
		{in: "4  MiB", bad: "not a whole number"},
	}
	for _, tt := range tests {
		got, msg := parseSize(tt.in)
		if tt.bad != "" {
			if !strings.Contains(msg, tt.bad) {
				t.Errorf("parseSize(%q) = %d, %q; want a refusal with %q", tt.in, got, msg, tt.bad)
			}
			continue
		}
		if msg != "" || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %q; want %d", tt.in, got, msg, tt.want)
		}
	}
	for _, n := range []int64{1, 1023, 1 << 10, 3968 << 10, 4 << 20, 5 << 30} {
		if got, msg := parseSize(formatSize(n)); msg != "" || int64(got) != n {
			t.Errorf("formatSize(%d) = %q does not parse back", n, formatSize(n))
		}
	}
}

func TestLoadAcceptsIntegerSizesAndScalarForms(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `version: 1
defaults:
  max_request_bytes: 1048576
  max_response_bytes: 0x100000
  retry: {multiplier: 3}
`)
	r, _ := s.Resolve(Ask{}, "", "x.org")
	if r.MaxRequestBytes != 1<<20 || r.Outbound.MaxResponseBytes != 1<<20 || r.Outbound.Multiplier != 3 {
		t.Errorf("Resolved = %+v", r)
	}
}

// TestLoadValidatesTheCallerTable checks the second belt: a caller table
// that identity.Config.Validate refuses becomes an *Error on the callers
// section (the file's own checks catch every such table today, so the
// table is handed in directly).
func TestLoadValidatesTheCallerTable(t *testing.T) {
	t.Parallel()
	c := &compiler{decoder: &decoder{file: "p.yaml"}, doc: &fileDoc{Callers: []callerDoc{{At: pos{path: "callers[0]", line: 3}}}}}
	c.validateIdentity(identity.Config{Callers: []identity.Caller{
		{Name: "checkout", Certificates: []identity.CertMatch{{DNS: "Svc.example.org"}}},
		{Name: "billing", Certificates: []identity.CertMatch{{DNS: "svc.example.org"}}},
		{Name: "reports"},
	}})
	if len(c.errs) != 2 {
		t.Fatalf("got %d problems, want 2: %v", len(c.errs), c.err())
	}
	for _, e := range c.errs {
		if e.File != "p.yaml" || e.Line != 3 || e.Key != "callers" {
			t.Errorf("problem %q is not on callers (line 3)", e)
		}
	}
	if msg := c.errs[0].Msg; !strings.Contains(msg, `caller "billing"`) || !strings.Contains(msg, `"checkout"`) {
		t.Errorf("first problem %q does not name both callers", msg)
	}
	if msg := c.errs[1].Msg; !strings.Contains(msg, `caller "reports" has no tokens and no certificates`) {
		t.Errorf("second problem %q", msg)
	}

	ok := &compiler{decoder: &decoder{file: "p.yaml"}, doc: &fileDoc{}}
	ok.validateIdentity(identity.Config{Callers: []identity.Caller{{Name: "checkout", Tokens: [][sha256.Size]byte{{1}}}}})
	if len(ok.errs) != 0 {
		t.Errorf("a valid table: %v", ok.err())
	}
}
