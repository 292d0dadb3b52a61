package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// HostPattern matches the hosts of normalised URLs (as [ParseURL] returns
// them). It is written one of three ways:
//
//   - "api.example.com": exactly that host;
//   - "*.example.com": any host below example.com (a.example.com,
//     a.b.example.com), not example.com itself;
//   - "*": every host.
//
// An IP address matches as its canonical text ("10.0.0.5", "2001:db8::1").
// Patterns are normalised like URL hosts (IDN to punycode, lower case, no
// trailing dot), so "API.Example.COM." and "api.example.com" are the same
// pattern. The zero HostPattern matches nothing.
type HostPattern struct {
	text   string // normalised pattern as written: "api.example.com", "*.example.com", "*"
	suffix string // ".example.com" for a wildcard; "" for an exact host
	any    bool
}

// ParseHostPattern parses a pattern; the error says what is wrong with it.
func ParseHostPattern(s string) (HostPattern, error) {
	switch {
	case s == "*":
		return HostPattern{text: "*", any: true}, nil
	case s == "":
		return HostPattern{}, errors.New("host pattern is empty")
	case strings.Contains(s, "://") || strings.ContainsAny(s, "/?#@"):
		return HostPattern{}, fmt.Errorf("host pattern %q must be a host name, not a URL", clip(s, 64))
	}
	wild := strings.HasPrefix(s, "*.")
	rest := strings.TrimPrefix(s, "*.")
	if strings.Contains(rest, "*") {
		return HostPattern{}, fmt.Errorf("host pattern %q: only a leading \"*.\" wildcard is allowed", clip(s, 64))
	}
	if strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") {
		rest = rest[1 : len(rest)-1]
	}
	if a, err := netip.ParseAddr(rest); err == nil {
		if wild {
			return HostPattern{}, fmt.Errorf("host pattern %q: a wildcard cannot apply to an IP address", clip(s, 64))
		}
		if a.Zone() != "" {
			return HostPattern{}, fmt.Errorf("host pattern %q: IPv6 zones are not allowed", clip(s, 64))
		}
		return HostPattern{text: a.Unmap().String()}, nil
	}
	if strings.Contains(rest, ":") {
		return HostPattern{}, fmt.Errorf("host pattern %q must not carry a port", clip(s, 64))
	}
	name, addr, reason := normalizeHost(rest)
	switch {
	case reason != "":
		return HostPattern{}, fmt.Errorf("host pattern %q: %s", clip(s, 64), strings.TrimPrefix(reason, "url "))
	case addr.IsValid() && wild:
		return HostPattern{}, fmt.Errorf("host pattern %q: a wildcard cannot apply to an IP address", clip(s, 64))
	case addr.IsValid():
		return HostPattern{text: addr.String()}, nil
	case wild:
		return HostPattern{text: "*." + name, suffix: "." + name}, nil
	}
	return HostPattern{text: name}, nil
}

// MustParseHostPattern is ParseHostPattern for patterns known to be valid;
// it panics on a bad one.
func MustParseHostPattern(s string) HostPattern {
	p, err := ParseHostPattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Match reports whether host (a URL's Hostname() after [ParseURL]: lower
// case, ASCII, no brackets) matches the pattern.
func (p HostPattern) Match(host string) bool {
	switch {
	case p.any:
		return true
	case p.text == "":
		return false
	case p.suffix != "":
		return len(host) > len(p.suffix) && strings.HasSuffix(host, p.suffix)
	}
	if host == p.text {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String() == p.text
	}
	return false
}

// Specificity orders patterns that match the same host: an exact host beats
// any wildcard, a longer suffix beats a shorter one, and "*" comes last.
func (p HostPattern) Specificity() int {
	switch {
	case p.any:
		return 0
	case p.suffix != "":
		return 1 + len(p.suffix)
	case p.text == "":
		return -1
	}
	return 1 << 20
}

// String returns the normalised pattern.
func (p HostPattern) String() string { return p.text }
