package policy

import (
	"slices"
	"time"

	"github.com/fetchd/fetchd/internal/outbound"
)

// Resolved is what one request runs with.
type Resolved struct {
	// Outbound has every field set: timeouts, retry, Retry-After cap,
	// response limit, and the target's MaxConns, MaxRedirects (0 unless the
	// target rule follows redirects), Budget, Breaker and ShareRetryAfter.
	// Its ShortenedTimeouts is true when the ask made the connect, read or
	// attempt timeout shorter than the policy gives without it (the layered
	// value under its cap), so that the target's breaker does not count the
	// caller's own timeouts. Its RetryOn is a fresh slice the caller may keep.
	Outbound outbound.Policy
	// Policy is the policy applied: "default" or the named policy.
	Policy string
	// TargetRule is the normalised pattern of the matched target rule, ""
	// when no rule matched.
	TargetRule string
	// IdempotencyHeader is the header that carries the key upstream:
	// DefaultIdempotencyHeader unless the target rule names another, in
	// canonical form.
	IdempotencyHeader string
	// MaxRequestBytes is the largest request body accepted.
	MaxRequestBytes int64
	// InFlightWait bounds how long a duplicate keyed call waits for the
	// first one before it is answered ABORTED.
	InFlightWait time.Duration
	// Clamped has one line per value a cap lowered, e.g.
	// "retry.max_attempts: 10 -> 5 (org cap)" or
	// "timeouts.total: 30s -> 20s (cap of target api.stripe.com)"; nil when
	// nothing was clamped.
	Clamped []string
}

// Resolve returns what a request runs with: policyName is
// FetchRequest.policy ("" or "default" is the default policy), host the
// normalised host of its URL (egress.ParseURL's Hostname()), ask what the
// caller asked for.
//
// Each value is the first of: the ask (when set), the named policy, the
// matched target rule, the file's defaults, the built-in default. Then the
// org caps, tightened by the target rule's caps, clamp it; every clamp is
// reported in Resolved.Clamped, asks are never refused. max_backoff is
// never below initial_backoff, and a multiplier asked below 1 reads as 1.
// An ask below what the policy gives for the connect, read or attempt
// timeout sets Outbound.ShortenedTimeouts.
// The ask's shape (negative durations, status ranges) is the caller's to
// check: a negative or zero ask is unset.
//
// An unknown policyName is an error wrapping ErrUnknownPolicy that lists
// the defined names.
func (s *Set) Resolve(ask Ask, policyName, host string) (Resolved, error) {
	pol := &values{}
	name := DefaultName
	if policyName != "" && policyName != DefaultName {
		p, ok := s.policies[policyName]
		if !ok {
			return Resolved{}, &unknownPolicyError{name: clip(policyName, 64), defined: s.definedList}
		}
		pol, name = p, policyName
	}
	t := s.match(host)
	tv, def := &t.values, &s.defaults
	r := Resolved{
		Policy:            name,
		TargetRule:        t.pattern,
		IdempotencyHeader: t.idempotencyHeader,
		InFlightWait:      s.inFlightWait,
	}
	c := clamper{rule: t, out: &r.Clamped}
	o := &r.Outbound
	caps := &t.caps

	connect := layer(fConnect, pol, tv, def).connect
	read := layer(fRead, pol, tv, def).read
	attempt := layer(fAttempt, pol, tv, def).attempt
	o.ConnectTimeout = c.dur(fConnect, "timeouts.connect", asked(ask.ConnectTimeout, connect), caps.connect)
	o.ReadTimeout = c.dur(fRead, "timeouts.read", asked(ask.ReadTimeout, read), caps.read)
	o.AttemptTimeout = c.dur(fAttempt, "timeouts.attempt", asked(ask.AttemptTimeout, attempt), caps.attempt)
	// What the policy gives without the ask is the layered value under its
	// cap; an ask below it makes the run's timeouts the caller's own.
	o.ShortenedTimeouts = o.ConnectTimeout < min(connect, caps.connect) ||
		o.ReadTimeout < min(read, caps.read) ||
		o.AttemptTimeout < min(attempt, caps.attempt)
	o.TotalTimeout = c.dur(fTotal, "timeouts.total", asked(ask.TotalTimeout, layer(fTotal, pol, tv, def).total), caps.total)

	attempts := layer(fMaxAttempts, pol, tv, def).maxAttempts
	if ask.MaxAttempts > 0 {
		attempts = ask.MaxAttempts
	}
	o.MaxAttempts = max(c.integer(fMaxAttempts, "retry.max_attempts", attempts, caps.maxAttempts), 1)

	o.InitialBackoff = c.dur(fMaxBackoff, "retry.initial_backoff", asked(ask.InitialBackoff, layer(fInitialBackoff, pol, tv, def).initialBackoff), caps.backoff)
	o.MaxBackoff = max(c.dur(fMaxBackoff, "retry.max_backoff", asked(ask.MaxBackoff, layer(fMaxBackoff, pol, tv, def).maxBackoff), caps.backoff), o.InitialBackoff)

	mult := layer(fMultiplier, pol, tv, def).multiplier
	if ask.Multiplier != 0 {
		mult = ask.Multiplier
		if !(mult >= 1) { // also NaN
			mult = 1
		}
	}
	o.Multiplier = c.float(fMultiplier, "retry.multiplier", mult, caps.multiplier)

	if len(ask.RetryOn) > 0 {
		o.RetryOn = slices.Clone(ask.RetryOn)
	} else {
		o.RetryOn = slices.Clone(layer(fRetryOn, pol, tv, def).retryOn)
	}
	o.IgnoreRetryAfter = ask.IgnoreRetryAfter
	o.MaxRetryAfter = c.dur(fMaxRetryAfter, "retry.max_retry_after", layer(fMaxRetryAfter, pol, tv, def).maxRetryAfter, caps.retryAfter)
	o.MaxResponseBytes = c.bytes(fResponseBytes, "max_response_bytes", layer(fResponseBytes, pol, tv, def).responseBytes, caps.responseBytes)
	r.MaxRequestBytes = c.bytes(fRequestBytes, "max_request_bytes", layer(fRequestBytes, pol, tv, def).requestBytes, caps.requestBytes)

	o.MaxConns = t.maxConns
	o.MaxRedirects = t.maxRedirects
	o.Budget = t.budget
	o.Breaker = t.breaker
	o.ShareRetryAfter = t.shareRetryAfter
	return r, nil
}

// layer returns the first layer that sets f: the named policy, the target
// rule, else the defaults (which set every field).
func layer(f field, pol, target, def *values) *values {
	switch {
	case pol.set.has(f):
		return pol
	case target.set.has(f):
		return target
	}
	return def
}

// asked returns the ask when it is set (positive), else v.
func asked(ask, v time.Duration) time.Duration {
	if ask > 0 {
		return ask
	}
	return v
}

// clamper lowers values to caps and records each clamp.
type clamper struct {
	rule *rule
	out  *[]string
}

func (c clamper) note(capField field, key, from, to string) {
	src := "org cap"
	if c.rule.tightened.has(capField) {
		src = c.rule.capLabel
	}
	*c.out = append(*c.out, key+": "+from+" -> "+to+" ("+src+")")
}

func (c clamper) dur(capField field, key string, v, limit time.Duration) time.Duration {
	if v <= limit {
		return v
	}
	c.note(capField, key, formatDuration(v), formatDuration(limit))
	return limit
}

func (c clamper) integer(capField field, key string, v, limit int) int {
	if v <= limit {
		return v
	}
	c.note(capField, key, formatInt(int64(v)), formatInt(int64(limit)))
	return limit
}

func (c clamper) float(capField field, key string, v, limit float64) float64 {
	if v <= limit {
		return v
	}
	c.note(capField, key, formatFloat(v), formatFloat(limit))
	return limit
}

func (c clamper) bytes(capField field, key string, v, limit int64) int64 {
	if v <= limit {
		return v
	}
	c.note(capField, key, formatSize(v), formatSize(limit))
	return limit
}
