package identity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fetchd/fetchd/internal/egress"
)

// Validate reports every problem that would make the caller table wrong or
// ambiguous, joined with errors.Join, each naming the caller and field:
//
//   - a caller without a name, named [AnonymousName], or named twice;
//   - a caller with neither tokens nor certificates (it could never call);
//   - a token digest given to two callers;
//   - a CertMatch with no field or more than one field set, or the same
//     CertMatch given to two callers (DNS names compared case-insensitively);
//   - a zero egress.HostPattern in an allowance (it matches nothing);
//   - a Rate whose PerSecond is NaN or whose Burst is negative;
//   - an Anonymous value other than the three constants.
//
// Two different CertMatches can still both match one certificate (a URI SAN
// for one caller, the same certificate's CN for another); only a real
// certificate shows that, and [Authenticator.Authenticate] then refuses the
// call with [ErrAmbiguous]. A nil error means none of the above.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	names := make(map[string]bool)
	tokens := make(map[[sha256.Size]byte]string)
	certs := make(map[CertMatch]string)
	for i, cc := range c.Callers {
		who := fmt.Sprintf("caller %q", cc.Name)
		switch {
		case cc.Name == "":
			who = fmt.Sprintf("caller #%d", i+1)
			bad("%s has no name", who)
		case cc.Name == AnonymousName:
			bad("%s: the name %q is reserved for calls without credentials", who, AnonymousName)
		case names[cc.Name]:
			bad("%s is defined more than once", who)
		}
		names[cc.Name] = true
		if len(cc.Tokens) == 0 && len(cc.Certificates) == 0 {
			bad("%s has no tokens and no certificates, so it can never be authenticated", who)
		}
		for _, h := range cc.Tokens {
			if other, ok := tokens[h]; ok && other != cc.Name {
				// A digest is not the token, so naming it is safe.
				bad("%s: token %s is also given to caller %q; give each token to one caller", who, FormatTokenHash(h), other)
				continue
			}
			tokens[h] = cc.Name
		}
		for _, m := range cc.Certificates {
			if n := m.fieldsSet(); n != 1 {
				bad("%s: a certificate match must set exactly one of URI, DNS or common name, not %d", who, n)
				continue
			}
			key := m
			key.DNS = strings.ToLower(key.DNS)
			if other, ok := certs[key]; ok && other != cc.Name {
				bad("%s: certificate %s is also given to caller %q; name each certificate for one caller", who, m, other)
				continue
			}
			certs[key] = cc.Name
		}
		errs = append(errs, validateTargets(who, cc.AllowTargets)...)
		if err := cc.Rate.validate(); err != nil {
			bad("%s: %w", who, err)
		}
	}
	switch c.Anonymous {
	case AnonymousNever, AnonymousLoopback, AnonymousAlways:
	default:
		bad("anonymous setting %d is not never, loopback or always", int(c.Anonymous))
	}
	errs = append(errs, validateTargets("anonymous calls", c.AnonymousAllowTargets)...)
	if err := c.AnonymousRate.validate(); err != nil {
		bad("anonymous calls: %w", err)
	}
	return errors.Join(errs...)
}

func validateTargets(who string, ps []egress.HostPattern) []error {
	var errs []error
	for i, p := range ps {
		if p.String() == "" {
			errs = append(errs, fmt.Errorf("%s: allowed target #%d is empty and matches nothing", who, i+1))
		}
	}
	return errs
}

func (r Rate) validate() error {
	switch {
	case math.IsNaN(r.PerSecond):
		return errors.New("rate per_second is not a number")
	case r.Burst < 0:
		return fmt.Errorf("rate burst %d is negative", r.Burst)
	}
	return nil
}

func (m CertMatch) fieldsSet() int {
	n := 0
	for _, f := range []string{m.URI, m.DNS, m.CommonName} {
		if f != "" {
			n++
		}
	}
	return n
}

// String names the match for a message: URI "...", DNS "..." or CN "...".
func (m CertMatch) String() string {
	var parts []string
	if m.URI != "" {
		parts = append(parts, "URI "+strconv.Quote(m.URI))
	}
	if m.DNS != "" {
		parts = append(parts, "DNS "+strconv.Quote(m.DNS))
	}
	if m.CommonName != "" {
		parts = append(parts, "CN "+strconv.Quote(m.CommonName))
	}
	if len(parts) == 0 {
		return "(empty)"
	}
	return strings.Join(parts, " ")
}
