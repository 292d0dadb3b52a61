package policy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/outbound"
)

// compiler checks a decoded file and builds the Set. Every problem is
// recorded with its key and line; compile carries on after one so that a
// single Load reports as many as it can.
type compiler struct {
	*decoder
	doc *fileDoc
	org capSet
}

// capSet is a set of caps and where each was written, for messages.
type capSet struct {
	lim limits
	ref [nFields]capRef // by the field capped
}

// capRef names a cap in messages.
type capRef struct {
	key  string // "caps.max_attempts"
	line int    // 0: the built-in cap
}

func (r capRef) describe(v string) string {
	if r.line == 0 {
		return fmt.Sprintf("%s (%s, the built-in cap)", r.key, v)
	}
	return fmt.Sprintf("%s (%s, line %d)", r.key, v, r.line)
}

// protConf is the protection settings with the enabled switches kept apart
// from the values, so that a target rule can turn on a budget the org
// turned off and get the org's values.
type protConf struct {
	budgetOn  bool
	budget    outbound.Budget
	breakerOn bool
	breaker   outbound.Breaker
	share     bool
}

func (p protConf) apply(r *rule) {
	r.budget, r.breaker, r.shareRetryAfter = outbound.Budget{}, outbound.Breaker{}, p.share
	if p.budgetOn {
		r.budget = p.budget
	}
	if p.breakerOn {
		r.breaker = p.breaker
	}
}

func (c *compiler) compile() *Set {
	doc := c.doc
	builtin := Default()
	s := &Set{
		policies: make(map[string]*values, len(doc.Policies)),
		exact:    map[string]*rule{},
		suffix:   map[string]*rule{},
	}

	c.org = capSet{lim: builtinLimits(builtin)}
	for f, key := range capKeys {
		c.org.ref[f] = capRef{key: "caps." + key}
	}
	c.org, _ = c.caps(&doc.Caps, c.org, false)

	s.defaults = c.defaults(builtin)
	c.policies(s)

	orgProt := c.protection(&doc.Protection, protConf{
		budgetOn: true, budget: builtin.Budget,
		breakerOn: true, breaker: builtin.Breaker,
		share: builtin.ShareRetryAfter,
	})
	s.none = rule{caps: c.org.lim, maxConns: builtin.MaxConns, idempotencyHeader: DefaultIdempotencyHeader}
	orgProt.apply(&s.none)
	c.targets(s, builtin, orgProt)

	s.allowCIDRs = c.cidrs(doc.Egress.AllowCIDRs)
	s.redactParams = c.queryParams(doc.Telemetry.RedactQueryParams)
	s.server = c.server(&doc.Server)
	s.ttl, s.inFlightWait = builtin.IdempotencyTTL, builtin.InFlightWait
	if o := doc.Idempotency.TTL; c.positive(o) {
		s.ttl = o.V
	}
	if o := doc.Idempotency.InFlightWait; o.Set {
		if o.V < 0 {
			c.fail(o.At, "must not be negative, got %s (0 answers a duplicate at once)", formatDuration(o.V))
		}
		s.inFlightWait = o.V
	}
	s.identity = c.identity()
	if len(c.errs) == 0 {
		c.validateIdentity(s.identity)
	}
	return s
}

// capKeys names the caps by the field they cap (initial_backoff is capped
// by max_backoff too).
var capKeys = map[field]string{
	fMaxAttempts:    "max_attempts",
	fConnect:        "max_connect_timeout",
	fRead:           "max_read_timeout",
	fAttempt:        "max_attempt_timeout",
	fTotal:          "max_total_timeout",
	fInitialBackoff: "max_backoff",
	fMaxBackoff:     "max_backoff",
	fMultiplier:     "max_multiplier",
	fMaxRetryAfter:  "max_retry_after",
	fRequestBytes:   "max_request_bytes",
	fResponseBytes:  "max_response_bytes",
}

// caps applies the caps written in d over base. For a target rule
// (target true) a cap may only tighten base; tightened says which did.
func (c *compiler) caps(d *capsDoc, base capSet, target bool) (capSet, fieldMask) {
	out := base
	var tightened fieldMask
	apply := func(at pos, f field, lower, higher bool, v, was string) {
		switch {
		case target && higher:
			c.fail(at, "%s is above %s; a target's caps can only tighten the org's", v, base.ref[f].describe(was))
			return
		case target && lower:
			tightened.add(f)
			if f == fMaxBackoff {
				tightened.add(fInitialBackoff)
			}
		}
		out.ref[f] = capRef{key: at.path, line: at.line}
		if f == fMaxBackoff {
			out.ref[fInitialBackoff] = out.ref[f]
		}
	}
	if o := d.MaxAttempts; o.Set && c.atLeast(o, 1) {
		was := base.lim.maxAttempts
		apply(o.At, fMaxAttempts, o.V < was, o.V > was, formatInt(int64(o.V)), formatInt(int64(was)))
		out.lim.maxAttempts = o.V
		if target {
			out.lim.maxAttempts = min(o.V, was)
		}
	}
	durCap := func(o opt[time.Duration], f field, dst *time.Duration, was time.Duration) {
		if !c.positive(o) {
			return
		}
		apply(o.At, f, o.V < was, o.V > was, formatDuration(o.V), formatDuration(was))
		*dst = o.V
		if target {
			*dst = min(o.V, was)
		}
	}
	durCap(d.MaxConnectTimeout, fConnect, &out.lim.connect, base.lim.connect)
	durCap(d.MaxReadTimeout, fRead, &out.lim.read, base.lim.read)
	durCap(d.MaxAttemptTimeout, fAttempt, &out.lim.attempt, base.lim.attempt)
	durCap(d.MaxTotalTimeout, fTotal, &out.lim.total, base.lim.total)
	durCap(d.MaxBackoff, fMaxBackoff, &out.lim.backoff, base.lim.backoff)
	durCap(d.MaxRetryAfter, fMaxRetryAfter, &out.lim.retryAfter, base.lim.retryAfter)
	if o := d.MaxMultiplier; o.Set && c.atLeastFloat(o, 1) {
		was := base.lim.multiplier
		apply(o.At, fMultiplier, o.V < was, o.V > was, formatFloat(o.V), formatFloat(was))
		out.lim.multiplier = o.V
		if target {
			out.lim.multiplier = min(o.V, was)
		}
	}
	sizeCap := func(o opt[byteSize], f field, dst *int64, was int64, ceiling int64, why string) {
		if !o.Set || !c.ceiling(o, ceiling, why) {
			return
		}
		apply(o.At, f, int64(o.V) < was, int64(o.V) > was, formatSize(int64(o.V)), formatSize(was))
		*dst = int64(o.V)
		if target {
			*dst = min(int64(o.V), was)
		}
	}
	sizeCap(d.MaxRequestBytes, fRequestBytes, &out.lim.requestBytes, base.lim.requestBytes, MaxRequestBytesLimit, requestCeilingWhy)
	sizeCap(d.MaxResponseBytes, fResponseBytes, &out.lim.responseBytes, base.lim.responseBytes, MaxResponseBytesLimit, responseCeilingWhy)
	return out, tightened
}

const (
	requestCeilingWhy  = "fetchd's gRPC server receives messages of at most 8 MiB + 64 KiB, so a larger request body could never arrive"
	responseCeilingWhy = "a response is held in memory and returned in one gRPC message"
)

// defaults returns the file's defaults over the built-in ones. Built-in
// values the file does not replace are lowered to the file's caps, so a
// file that lowers a cap need not restate the default.
func (c *compiler) defaults(builtin Policy) values {
	def := builtinValues(builtin)
	l := c.org.lim
	def.connect, def.read = min(def.connect, l.connect), min(def.read, l.read)
	def.attempt, def.total = min(def.attempt, l.attempt), min(def.total, l.total)
	def.maxAttempts = min(def.maxAttempts, l.maxAttempts)
	def.initialBackoff, def.maxBackoff = min(def.initialBackoff, l.backoff), min(def.maxBackoff, l.backoff)
	def.multiplier, def.maxRetryAfter = min(def.multiplier, l.multiplier), min(def.maxRetryAfter, l.retryAfter)
	def.requestBytes, def.responseBytes = min(def.requestBytes, l.requestBytes), min(def.responseBytes, l.responseBytes)

	d := &c.doc.Defaults
	overlay(&def, c.layer(d, &c.org))
	if def.initialBackoff > def.maxBackoff {
		switch r := d.Retry; {
		case r.InitialBackoff.Set && r.MaxBackoff.Set:
			// layer reported it
		case r.InitialBackoff.Set:
			c.fail(r.InitialBackoff.At, "%s is above the max_backoff (%s, built in); set defaults.retry.max_backoff too", formatDuration(def.initialBackoff), formatDuration(def.maxBackoff))
		case r.MaxBackoff.Set:
			c.fail(r.MaxBackoff.At, "%s is below the initial_backoff (%s, built in); set defaults.retry.initial_backoff too", formatDuration(def.maxBackoff), formatDuration(def.initialBackoff))
		}
	}
	return def
}

// overlay copies the fields l sets into dst.
func overlay(dst *values, l values) {
	m := l.set
	if m.has(fConnect) {
		dst.connect = l.connect
	}
	if m.has(fRead) {
		dst.read = l.read
	}
	if m.has(fAttempt) {
		dst.attempt = l.attempt
	}
	if m.has(fTotal) {
		dst.total = l.total
	}
	if m.has(fMaxAttempts) {
		dst.maxAttempts = l.maxAttempts
	}
	if m.has(fInitialBackoff) {
		dst.initialBackoff = l.initialBackoff
	}
	if m.has(fMaxBackoff) {
		dst.maxBackoff = l.maxBackoff
	}
	if m.has(fMultiplier) {
		dst.multiplier = l.multiplier
	}
	if m.has(fRetryOn) {
		dst.retryOn = l.retryOn
	}
	if m.has(fMaxRetryAfter) {
		dst.maxRetryAfter = l.maxRetryAfter
	}
	if m.has(fRequestBytes) {
		dst.requestBytes = l.requestBytes
	}
	if m.has(fResponseBytes) {
		dst.responseBytes = l.responseBytes
	}
	dst.set |= m
}

// layer checks one set of values (defaults, a named policy, a target rule)
// against caps and returns what it sets.
func (c *compiler) layer(d *valuesDoc, caps *capSet) values {
	var out values
	dur := func(o opt[time.Duration], f field, dst *time.Duration, limit time.Duration) {
		if c.positive(o) && c.under(o.At, f, caps, o.V > limit, formatDuration(o.V), formatDuration(limit)) {
			*dst = o.V
			out.set.add(f)
		}
	}
	t, r := &d.Timeouts, &d.Retry
	dur(t.Connect, fConnect, &out.connect, caps.lim.connect)
	dur(t.Read, fRead, &out.read, caps.lim.read)
	dur(t.Attempt, fAttempt, &out.attempt, caps.lim.attempt)
	dur(t.Total, fTotal, &out.total, caps.lim.total)
	if o := r.MaxAttempts; o.Set && c.atLeast(o, 1) &&
		c.under(o.At, fMaxAttempts, caps, o.V > caps.lim.maxAttempts, formatInt(int64(o.V)), formatInt(int64(caps.lim.maxAttempts))) {
		out.maxAttempts = o.V
		out.set.add(fMaxAttempts)
	}
	dur(r.InitialBackoff, fInitialBackoff, &out.initialBackoff, caps.lim.backoff)
	dur(r.MaxBackoff, fMaxBackoff, &out.maxBackoff, caps.lim.backoff)
	if out.set.has(fInitialBackoff) && out.set.has(fMaxBackoff) && out.initialBackoff > out.maxBackoff {
		c.fail(r.InitialBackoff.At, "%s is above %s (%s); the first backoff cannot be longer than the longest",
			formatDuration(out.initialBackoff), r.MaxBackoff.At.path, formatDuration(out.maxBackoff))
	}
	if o := r.Multiplier; o.Set && c.atLeastFloat(o, 1) &&
		c.under(o.At, fMultiplier, caps, o.V > caps.lim.multiplier, formatFloat(o.V), formatFloat(caps.lim.multiplier)) {
		out.multiplier = o.V
		out.set.add(fMultiplier)
	}
	if o := r.RetryOnStatus; o.Set && c.statuses(o) {
		out.retryOn = o.V
		out.set.add(fRetryOn)
	}
	dur(r.MaxRetryAfter, fMaxRetryAfter, &out.maxRetryAfter, caps.lim.retryAfter)
	size := func(o opt[byteSize], f field, dst *int64, limit, ceiling int64, why string) {
		if o.Set && c.ceiling(o, ceiling, why) && c.under(o.At, f, caps, int64(o.V) > limit, formatSize(int64(o.V)), formatSize(limit)) {
			*dst = int64(o.V)
			out.set.add(f)
		}
	}
	size(d.MaxRequestBytes, fRequestBytes, &out.requestBytes, caps.lim.requestBytes, MaxRequestBytesLimit, requestCeilingWhy)
	size(d.MaxResponseBytes, fResponseBytes, &out.responseBytes, caps.lim.responseBytes, MaxResponseBytesLimit, responseCeilingWhy)
	return out
}

// under reports a value above its cap (over true) naming both keys.
func (c *compiler) under(at pos, f field, caps *capSet, over bool, v, limit string) bool {
	if over {
		c.fail(at, "%s is above %s; lower the value or raise the cap", v, caps.ref[f].describe(limit))
		return false
	}
	return true
}

func (c *compiler) positive(o opt[time.Duration]) bool {
	if !o.Set {
		return false
	}
	if o.V <= 0 {
		c.fail(o.At, "must be positive, got %s", formatDuration(o.V))
		return false
	}
	return true
}

func (c *compiler) atLeast(o opt[int], least int) bool {
	if o.V < least {
		c.fail(o.At, "must be at least %d, got %d", least, o.V)
		return false
	}
	return true
}

func (c *compiler) atLeastFloat(o opt[float64], least float64) bool {
	if o.V < least {
		c.fail(o.At, "must be at least %s, got %s", formatFloat(least), formatFloat(o.V))
		return false
	}
	return true
}

func (c *compiler) ceiling(o opt[byteSize], ceiling int64, why string) bool {
	if int64(o.V) > ceiling {
		c.fail(o.At, "%s is above the %s ceiling: %s", formatSize(int64(o.V)), formatSize(ceiling), why)
		return false
	}
	return true
}

// statuses checks retry_on_status: error statuses, each once.
func (c *compiler) statuses(o opt[[]int]) bool {
	ok := true
	for i, st := range o.V {
		at := o.At.index(i, o.At.line)
		switch {
		case st < 100 || st > 599:
			c.fail(at, "%d is not an HTTP status (100-599)", st)
			ok = false
		case st < 400:
			c.fail(at, "%d is below 400: only error statuses (400-599) can be retried", st)
			ok = false
		case slices.Contains(o.V[:i], st):
			c.fail(at, "%d is listed twice", st)
			ok = false
		}
	}
	return ok
}

// policies compiles the named policies.
func (c *compiler) policies(s *Set) {
	for name, d := range c.doc.Policies {
		at := pos{path: "policies." + name, line: d.At.line}
		switch {
		case name == DefaultName:
			c.fail(at, "%q is the policy of requests that name none; write its values in the defaults section", DefaultName)
			continue
		case !validName(name):
			c.fail(at, "%q is not a policy name: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63", clip(name, 64))
			continue
		}
		v := c.layer(&d, &c.org)
		s.policies[name] = &v
	}
	s.setPolicyNames()
}

// validName reports whether s matches [a-z0-9][a-z0-9._-]{0,62}.
func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		case i > 0 && (ch == '.' || ch == '_' || ch == '-'):
		default:
			return false
		}
	}
	return true
}

// protection applies a protection section over base.
func (c *compiler) protection(d *protectionDoc, base protConf) protConf {
	p := base
	b := &d.RetryBudget
	if b.Enabled.Set {
		p.budgetOn = b.Enabled.V
	}
	if o := b.Ratio; o.Set {
		if o.V < 0 || o.V > 1 {
			c.fail(o.At, "must be between 0 and 1, got %s (0.2 lets retries add 20%% to the requests)", formatFloat(o.V))
		}
		p.budget.Ratio = o.V
	}
	if o := b.MinRetriesPerSecond; o.Set {
		if o.V < 0 {
			c.fail(o.At, "must not be negative, got %s", formatFloat(o.V))
		}
		p.budget.MinPerSecond = o.V
	}
	if c.positive(b.Window) {
		p.budget.Window = b.Window.V
	}

	k := &d.Breaker
	if k.Enabled.Set {
		p.breakerOn = k.Enabled.V
	}
	if o := k.ConsecutiveFailures; o.Set {
		if o.V < 0 {
			c.fail(o.At, "must not be negative, got %d (0 opens on the failure ratio only)", o.V)
		}
		p.breaker.ConsecutiveFailures = o.V
	}
	if o := k.FailureRatio; o.Set {
		if o.V <= 0 || o.V > 1 {
			c.fail(o.At, "must be above 0 and at most 1, got %s", formatFloat(o.V))
		}
		p.breaker.FailureRatio = o.V
	}
	if o := k.MinRequests; o.Set && c.atLeast(o, 1) {
		p.breaker.MinRequests = o.V
	}
	if c.positive(k.Window) {
		p.breaker.Window = k.Window.V
	}
	if c.positive(k.OpenFor) {
		p.breaker.OpenFor = k.OpenFor.V
	}
	if o := k.HalfOpenProbes; o.Set && c.atLeast(o, 1) {
		p.breaker.HalfOpenProbes = o.V
	}
	if d.ShareRetryAfter.Set {
		p.share = d.ShareRetryAfter.V
	}
	return p
}

// forbiddenIdempotencyHeaders cannot carry the key: they carry credentials,
// are set by the transport, or describe one connection and are dropped.
var forbiddenIdempotencyHeaders = []string{
	"Authorization", "Cookie", "Host", "Content-Length", "Transfer-Encoding", "Connection",
	"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade",
}

// targets compiles the target rules.
func (c *compiler) targets(s *Set, builtin Policy, orgProt protConf) {
	seen := map[string]pos{}
	for i := range c.doc.Targets {
		d := &c.doc.Targets[i]
		at := d.At
		if !d.Host.Set {
			if !d.Host.At.written() {
				c.fail(at.key("host"), "required: the host pattern the rule applies to (api.example.com, \"*.example.com\" or \"*\")")
			}
			continue
		}
		hp, err := egress.ParseHostPattern(d.Host.V)
		if err != nil {
			c.fail(d.Host.At, "%v", err)
			continue
		}
		pattern := hp.String()
		if first, dup := seen[pattern]; dup {
			c.fail(d.Host.At, "%q is the same pattern as %s (line %d)", pattern, first.path, first.line)
			continue
		}
		seen[pattern] = pos{path: at.path, line: d.Host.At.line}

		caps, tightened := c.caps(&d.Caps, c.org, true)
		r := &rule{
			pattern:           pattern,
			values:            c.layer(&d.valuesDoc, &caps),
			caps:              caps.lim,
			tightened:         tightened,
			capLabel:          "cap of target " + pattern,
			maxConns:          builtin.MaxConns,
			idempotencyHeader: DefaultIdempotencyHeader,
		}
		if o := d.MaxConns; o.Set && c.atLeast(o, 1) {
			r.maxConns = o.V
		}
		if o := d.IdempotencyHeader; o.Set {
			r.idempotencyHeader = c.idempotencyHeader(o)
		}
		follow := d.FollowRedirects.Set && d.FollowRedirects.V
		if follow {
			r.maxRedirects = DefaultMaxRedirects
		}
		if o := d.MaxRedirects; o.Set {
			switch {
			case !follow:
				c.fail(o.At, "only applies with follow_redirects: true; add it, or remove max_redirects")
			case o.V < 1 || o.V > MaxRedirectsLimit:
				c.fail(o.At, "must be between 1 and %d, got %d (to follow none, remove follow_redirects)", MaxRedirectsLimit, o.V)
			default:
				r.maxRedirects = o.V
			}
		}
		c.protection(&d.Protection, orgProt).apply(r)

		switch {
		case pattern == "*":
			s.any = r
		case strings.HasPrefix(pattern, "*."):
			s.suffix[pattern[1:]] = r
		default:
			s.exact[pattern] = r
		}
	}
}

func (c *compiler) idempotencyHeader(o opt[string]) string {
	if !httpguts.ValidHeaderFieldName(o.V) {
		c.fail(o.At, "%q is not a valid HTTP header name", clip(o.V, 64))
		return ""
	}
	canon := http.CanonicalHeaderKey(o.V)
	if slices.Contains(forbiddenIdempotencyHeaders, canon) {
		c.fail(o.At, "%s cannot carry the idempotency key: it is a credential, set by the transport, or hop-by-hop; use e.g. Idempotency-Key", canon)
		return ""
	}
	return canon
}
