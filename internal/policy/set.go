package policy

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/outbound"
)

// Limits of the file format.
const (
	// MaxRequestBytesLimit is the largest max_request_bytes anywhere in a
	// policy file: fetchd's gRPC server receives messages of at most 8 MiB +
	// 64 KiB (service.MaxRequestMessageBytes), so a larger body could never
	// arrive; the transport would refuse it first.
	MaxRequestBytesLimit = 8 << 20
	// MaxResponseBytesLimit is the largest max_response_bytes anywhere in a
	// policy file: a response is held in memory and returned in one gRPC
	// message.
	MaxResponseBytesLimit = 64 << 20
	// MaxRedirectsLimit is the largest max_redirects of a target rule.
	MaxRedirectsLimit = 20
	// DefaultMaxRedirects is the hop limit of a target rule that follows
	// redirects without naming one.
	DefaultMaxRedirects = 5
	// DefaultIdempotencyHeader carries the idempotency key upstream unless a
	// target rule names another header.
	DefaultIdempotencyHeader = "Idempotency-Key"
)

// Set is one generation of the policy: the file's defaults, caps, named
// policies, target rules, callers and server settings, checked and compiled
// by Load (or built in, by DefaultSet). A Set is immutable and safe for
// concurrent use; a reload builds a new one.
type Set struct {
	digest string

	defaults    values             // complete: every field set
	policies    map[string]*values // named policies, without "default"
	policyNames []string           // "default" first, then the names in order
	definedList string             // policyNames joined, for messages

	exact  map[string]*rule // exact host patterns
	suffix map[string]*rule // "*.example.com" rules keyed by ".example.com"
	any    *rule            // the "*" rule, or nil
	none   rule             // what a host no rule matches gets

	server       Server
	allowCIDRs   []netip.Prefix
	redactParams []string
	identity     identity.Config
	ttl          time.Duration
	inFlightWait time.Duration
}

// Server holds the server settings of a policy file. They are read once at
// start; a changed value takes a restart, and a command-line flag wins over
// the file. A nil field was not in the file.
type Server struct {
	Listen       *string        // gRPC address
	Admin        *string        // admin HTTP address; "" disables it
	Store        *string        // idempotency store URL (file:PATH, redis://..., memory:)
	DrainTimeout *time.Duration // how long in-flight calls get at shutdown
}

// field names one value a request resolves, for the set masks of layers and
// the caps a target rule tightened.
type field uint8

const (
	fConnect field = iota
	fRead
	fAttempt
	fTotal
	fMaxAttempts
	fInitialBackoff
	fMaxBackoff
	fMultiplier
	fRetryOn
	fMaxRetryAfter
	fRequestBytes
	fResponseBytes
	nFields
)

type fieldMask uint16

func (m fieldMask) has(f field) bool { return m&(1<<f) != 0 }

func (m *fieldMask) add(f field) { *m |= 1 << f }

const allFields fieldMask = 1<<nFields - 1

// values is one layer of the precedence: defaults, a named policy or a
// target rule. Only the fields in set were written.
type values struct {
	set                           fieldMask
	connect, read, attempt, total time.Duration
	maxAttempts                   int
	initialBackoff, maxBackoff    time.Duration
	multiplier                    float64
	retryOn                       []int // never modified once built
	maxRetryAfter                 time.Duration
	requestBytes, responseBytes   int64
}

// limits are caps. backoff caps both initial_backoff and max_backoff.
type limits struct {
	maxAttempts                   int
	connect, read, attempt, total time.Duration
	backoff                       time.Duration
	multiplier                    float64
	retryAfter                    time.Duration
	requestBytes, responseBytes   int64
}

// rule is a compiled target rule, or the Set's none rule for hosts no rule
// matches.
type rule struct {
	pattern   string // normalised host pattern; "" for none
	values    values
	caps      limits    // the org caps, tightened by the rule's own
	tightened fieldMask // the caps the rule lowered below the org's (by the field they cap)
	capLabel  string    // "cap of target api.stripe.com"

	maxConns          int
	idempotencyHeader string
	maxRedirects      int
	budget            outbound.Budget
	breaker           outbound.Breaker
	shareRetryAfter   bool
}

// DefaultSet returns the built-in policy, used when no file is given: the
// values of Default(), no named policies, no target rules, no callers, and
// anonymous calls accepted from loopback peers only.
func DefaultSet() *Set {
	p := Default()
	s := &Set{
		digest:       "embedded",
		defaults:     builtinValues(p),
		policies:     map[string]*values{},
		exact:        map[string]*rule{},
		suffix:       map[string]*rule{},
		ttl:          p.IdempotencyTTL,
		inFlightWait: p.InFlightWait,
		identity:     identity.Config{Anonymous: identity.AnonymousLoopback},
	}
	s.none = rule{
		caps:              builtinLimits(p),
		maxConns:          p.MaxConns,
		idempotencyHeader: DefaultIdempotencyHeader,
		budget:            p.Budget,
		breaker:           p.Breaker,
		shareRetryAfter:   p.ShareRetryAfter,
	}
	s.setPolicyNames()
	return s
}

func builtinValues(p Policy) values {
	return values{
		set:            allFields,
		connect:        p.ConnectTimeout,
		read:           p.ReadTimeout,
		attempt:        p.AttemptTimeout,
		total:          p.TotalTimeout,
		maxAttempts:    p.MaxAttempts,
		initialBackoff: p.InitialBackoff,
		maxBackoff:     p.MaxBackoff,
		multiplier:     p.Multiplier,
		retryOn:        slices.Clone(p.RetryOn),
		maxRetryAfter:  p.MaxRetryAfter,
		requestBytes:   p.MaxRequestBytes,
		responseBytes:  p.MaxResponseBytes,
	}
}

func builtinLimits(p Policy) limits {
	return limits{
		maxAttempts:   p.MaxAttemptsCap,
		connect:       p.MaxConnectTimeout,
		read:          p.MaxReadTimeout,
		attempt:       p.MaxAttemptTimeout,
		total:         p.MaxTotalTimeout,
		backoff:       p.MaxBackoffCap,
		multiplier:    p.MaxMultiplier,
		retryAfter:    p.MaxRetryAfter,
		requestBytes:  p.MaxRequestBytesCap,
		responseBytes: p.MaxResponseBytesCap,
	}
}

func (s *Set) setPolicyNames() {
	s.policyNames = make([]string, 0, len(s.policies)+1)
	for name := range s.policies {
		s.policyNames = append(s.policyNames, name)
	}
	slices.Sort(s.policyNames)
	s.policyNames = slices.Insert(s.policyNames, 0, DefaultName)
	s.definedList = ""
	for i, name := range s.policyNames {
		if i > 0 {
			s.definedList += ", "
		}
		s.definedList += name
	}
}

// Digest is the hex SHA-256 of the file's bytes, for log lines that say
// which policy is in force; "embedded" for DefaultSet.
func (s *Set) Digest() string { return s.digest }

// Identity returns the caller table: callers with their token digests,
// certificate matches, allowed targets and rates, and the anonymous rule. A
// file without an anonymous section refuses anonymous calls; DefaultSet
// accepts them from loopback. The result is a copy the caller may keep.
func (s *Set) Identity() identity.Config {
	c := s.identity
	c.Callers = slices.Clone(c.Callers)
	for i := range c.Callers {
		c.Callers[i].Tokens = slices.Clone(c.Callers[i].Tokens)
		c.Callers[i].Certificates = slices.Clone(c.Callers[i].Certificates)
		c.Callers[i].AllowTargets = slices.Clone(c.Callers[i].AllowTargets)
	}
	c.AnonymousAllowTargets = slices.Clone(c.AnonymousAllowTargets)
	return c
}

// RedactQueryParams returns the query parameters whose values are
// redacted from url.full on spans, beyond the built-in list
// (telemetry.redact_query_params); nil when none. The result is a copy.
func (s *Set) RedactQueryParams() []string { return slices.Clone(s.redactParams) }

// AllowCIDRs returns the ranges the egress guard lets through (egress
// allow_cidrs), in file order; nil when none. The result is a copy.
func (s *Set) AllowCIDRs() []netip.Prefix { return slices.Clone(s.allowCIDRs) }

// Server returns the server section; fields the file does not set are nil.
// The pointers are fresh copies.
func (s *Set) Server() Server {
	return Server{
		Listen:       clonePtr(s.server.Listen),
		Admin:        clonePtr(s.server.Admin),
		Store:        clonePtr(s.server.Store),
		DrainTimeout: clonePtr(s.server.DrainTimeout),
	}
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// IdempotencyTTL is how long a completed keyed response is kept for replay
// (idempotency.ttl; default 24h).
func (s *Set) IdempotencyTTL() time.Duration { return s.ttl }

// PolicyNames returns the names a request may give in FetchRequest.policy:
// "default" first, then the file's named policies in order.
func (s *Set) PolicyNames() []string { return slices.Clone(s.policyNames) }

// match returns the most specific rule whose pattern matches host (a
// normalised URL host), or the none rule: an exact host first, then the
// longest "*.suffix", then "*". It agrees with egress.HostPattern.Match and
// Specificity, which a fuzz test checks.
func (s *Set) match(host string) *rule {
	if r, ok := s.exact[host]; ok {
		return r
	}
	if len(s.exact) > 0 && host != "" && (host[0] >= '0' && host[0] <= '9' || strings.IndexByte(host, ':') >= 0) {
		// An IP literal matches a pattern by its canonical, unmapped text.
		if a, err := netip.ParseAddr(host); err == nil {
			if r, ok := s.exact[a.Unmap().String()]; ok {
				return r
			}
		}
	}
	if len(s.suffix) > 0 {
		for i := 1; i < len(host); i++ {
			if host[i] == '.' {
				if r, ok := s.suffix[host[i:]]; ok {
					return r
				}
			}
		}
	}
	if s.any != nil {
		return s.any
	}
	return &s.none
}
