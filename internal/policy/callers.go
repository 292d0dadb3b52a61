package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/identity"
)

// AnonymousName is reserved: it names callers without credentials in logs,
// so no caller in a file may take it.
const AnonymousName = "anonymous"

const tokenPrefix = "sha256:"

// identity compiles the callers and the anonymous section.
func (c *compiler) identity() identity.Config {
	var cfg identity.Config
	names := map[string]pos{}
	tokens := map[[sha256.Size]byte]pos{}
	certs := map[identity.CertMatch]pos{}
	for i := range c.doc.Callers {
		d := &c.doc.Callers[i]
		caller := identity.Caller{Name: d.Name.V}
		switch name := d.Name.V; {
		case !d.Name.Set:
			if !d.Name.At.written() {
				c.fail(d.At.key("name"), "required: the caller's name, as logs and idempotency scopes show it")
			}
		case name == AnonymousName:
			c.fail(d.Name.At, "%q is reserved for callers without credentials; configure them in the anonymous section", AnonymousName)
		case !validName(name):
			c.fail(d.Name.At, "%q is not a caller name: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63", clip(name, 64))
		default:
			if first, dup := names[name]; dup {
				c.fail(d.Name.At, "caller %q is already defined at %s (line %d)", name, first.path, first.line)
			}
			names[name] = pos{path: d.At.path, line: d.Name.At.line}
		}

		if o := d.Tokens; o.Set {
			if len(o.V) == 0 {
				c.fail(o.At, "is empty; list token hashes, or remove the key")
			}
			for j, tok := range o.V {
				at := o.At.index(j, o.At.line)
				sum, ok := tokenHash(tok)
				if !ok {
					// The value is not echoed: it may be a raw token pasted by mistake.
					c.fail(at, "must be \"sha256:\" and the 64 hex digits of the SHA-256 of the bearer token (e.g. printf %%s \"$TOKEN\" | sha256sum); the value is not shown")
					continue
				}
				if first, dup := tokens[sum]; dup {
					c.fail(at, "the same token hash is already given at %s (line %d); each token identifies one caller", first.path, first.line)
					continue
				}
				tokens[sum] = at
				caller.Tokens = append(caller.Tokens, sum)
			}
		}
		for j := range d.Certificates {
			cd := &d.Certificates[j]
			m, ok := c.certMatch(cd)
			if !ok {
				continue
			}
			// A DNS SAN matches whatever its case (identity compares DNS names
			// case-insensitively), so two spellings are one identity.
			key := m
			key.DNS = strings.ToLower(key.DNS)
			if first, dup := certs[key]; dup {
				c.fail(cd.At, "the same certificate identity is already given at %s (line %d)%s; each identifies one caller", first.path, first.line, dnsCase(m.DNS))
				continue
			}
			certs[key] = cd.At
			caller.Certificates = append(caller.Certificates, m)
		}
		if !d.Tokens.At.written() && len(d.Certificates) == 0 {
			c.fail(d.At, "caller %q has no tokens and no certificates, so no call can ever be identified as it; give one or both", clip(caller.Name, 64))
		}
		caller.AllowTargets = c.patterns(d.AllowTargets)
		caller.Rate = c.rate(&d.RateLimit)
		cfg.Callers = append(cfg.Callers, caller)
	}

	a := &c.doc.Anonymous
	cfg.Anonymous = identity.AnonymousNever
	if o := a.Allow; o.Set {
		switch o.V {
		case "never":
		case "loopback":
			cfg.Anonymous = identity.AnonymousLoopback
		case "always":
			cfg.Anonymous = identity.AnonymousAlways
		default:
			c.fail(o.At, "%q is not an anonymous mode: write never, loopback or always", clip(o.V, 32))
		}
	}
	cfg.AnonymousAllowTargets = c.patterns(a.AllowTargets)
	cfg.AnonymousRate = c.rate(&a.RateLimit)
	return cfg
}

// dnsCase explains a duplicate certificate identity that is a DNS name.
func dnsCase(dns string) string {
	if dns == "" {
		return ""
	}
	return " (DNS names match in any case)"
}

// validateIdentity is the second belt: the caller table compiled from the
// file must also pass identity.Config.Validate, which is what makes it
// unambiguous for the authenticator. Each problem it reports becomes an
// *Error on the callers section. It runs only on a file without other
// problems, whose checks above already cover Validate's; it catches what
// they would miss.
func (c *compiler) validateIdentity(cfg identity.Config) {
	err := cfg.Validate()
	if err == nil {
		return
	}
	at := pos{path: "callers"}
	if len(c.doc.Callers) > 0 {
		at.line = c.doc.Callers[0].At.line
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		c.fail(at, "%v", e)
	}
}

// tokenHash decodes "sha256:<64 hex>" (either case).
func tokenHash(s string) ([sha256.Size]byte, bool) {
	var sum [sha256.Size]byte
	hexed, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok || len(hexed) != 2*sha256.Size {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(hexed)); err != nil {
		return sum, false
	}
	return sum, true
}

func (c *compiler) certMatch(d *certDoc) (identity.CertMatch, bool) {
	var m identity.CertMatch
	n := 0
	for _, o := range []opt[string]{d.URI, d.DNS, d.CommonName} {
		if o.Set {
			n++
			if o.V == "" {
				c.fail(o.At, "is empty")
				return m, false
			}
		}
	}
	if n != 1 {
		if n > 1 || !d.URI.At.written() && !d.DNS.At.written() && !d.CommonName.At.written() {
			c.fail(d.At, "give exactly one of uri, dns and common_name, got %d", n)
		}
		return m, false
	}
	m.URI, m.DNS, m.CommonName = d.URI.V, d.DNS.V, d.CommonName.V
	return m, true
}

// patterns parses an allow_targets list; nil when it was not written (any
// host).
func (c *compiler) patterns(o opt[[]string]) []egress.HostPattern {
	if !o.Set {
		return nil
	}
	if len(o.V) == 0 {
		c.fail(o.At, "is empty, which would allow no host at all; list hosts, or remove the key to allow any")
		return nil
	}
	out := make([]egress.HostPattern, 0, len(o.V))
	for i, s := range o.V {
		at := o.At.index(i, o.At.line)
		p, err := egress.ParseHostPattern(s)
		if err != nil {
			c.fail(at, "%v", err)
			continue
		}
		for _, q := range out {
			if q.String() == p.String() {
				c.fail(at, "%q is listed twice", p.String())
			}
		}
		out = append(out, p)
	}
	return out
}

// rate compiles a rate_limit section; the zero Rate (no limit) when it was
// not written. Burst defaults to per_second rounded up (at least 1).
func (c *compiler) rate(d *rateDoc) identity.Rate {
	if !d.At.written() {
		return identity.Rate{}
	}
	var r identity.Rate
	switch o := d.PerSecond; {
	case !o.Set:
		if !o.At.written() {
			c.fail(d.At.key("per_second"), "required: calls per second (remove rate_limit for no limit)")
		}
		return r
	case o.V <= 0:
		c.fail(o.At, "must be positive, got %s (remove rate_limit for no limit)", formatFloat(o.V))
		return r
	default:
		r.PerSecond = o.V
	}
	r.Burst = int(min(math.Ceil(r.PerSecond), math.MaxInt32))
	if o := d.Burst; o.Set && c.atLeast(o, 1) {
		r.Burst = o.V
	}
	return r
}

// cidrs parses egress.allow_cidrs: network addresses without host bits,
// each once.
func (c *compiler) cidrs(o opt[[]string]) []netip.Prefix {
	if !o.Set {
		return nil
	}
	var out []netip.Prefix
	for i, s := range o.V {
		at := o.At.index(i, o.At.line)
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			c.fail(at, "%q is not a CIDR range (write e.g. 10.20.0.0/16 or fd00::/8)", clip(s, 64))
		case p != p.Masked():
			c.fail(at, "%s has host bits set; write the network address %s", s, p.Masked())
		case containsPrefix(out, p):
			c.fail(at, "%s is listed twice", p)
		default:
			out = append(out, p)
		}
	}
	return out
}

// queryParams checks telemetry.redact_query_params: query parameter names,
// each once (names match case-insensitively).
func (c *compiler) queryParams(o opt[[]string]) []string {
	if !o.Set {
		return nil
	}
	var out []string
	for i, s := range o.V {
		at := o.At.index(i, o.At.line)
		switch {
		case s == "" || strings.ContainsAny(s, "&=#? \t"):
			c.fail(at, "%q is not a query parameter name", clip(s, 64))
		case slices.ContainsFunc(out, func(x string) bool { return strings.EqualFold(x, s) }):
			c.fail(at, "%s is listed twice", clip(s, 64))
		default:
			out = append(out, s)
		}
	}
	return out
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// server checks the server section.
func (c *compiler) server(d *serverDoc) Server {
	var s Server
	if o := d.Listen; o.Set && c.address(o, false) {
		s.Listen = &o.V
	}
	if o := d.Admin; o.Set && c.address(o, true) {
		s.Admin = &o.V
	}
	if o := d.Store; o.Set {
		// The value is not echoed: a redis URL may carry a password.
		scheme, _, _ := strings.Cut(o.V, ":")
		switch strings.ToLower(scheme) {
		case "file", "memory", "redis", "rediss":
			s.Store = &o.V
		default:
			c.fail(o.At, "must be file:PATH, memory:, redis://HOST:PORT/DB or rediss://HOST:PORT/DB")
		}
	}
	if o := d.DrainTimeout; c.positive(o) {
		s.DrainTimeout = &o.V
	}
	return s
}

// address checks a host:port listen address; port 0 picks a free port.
func (c *compiler) address(o opt[string], emptyOK bool) bool {
	if o.V == "" && emptyOK {
		return true
	}
	_, port, err := net.SplitHostPort(o.V)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		hint := "write host:port, e.g. 127.0.0.1:7070 (port 0 picks a free one)"
		if emptyOK {
			hint += `, or "" to disable it`
		}
		c.fail(o.At, "%q is not a listen address: %s", clip(o.V, 64), hint)
		return false
	}
	return true
}
