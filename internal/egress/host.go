package egress

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// lookupProfile maps a host for lookup (UTS #46 non-transitional, joiner and
// Bidi checks) and refuses invalid labels. Two checks of the strict profile
// are relaxed because real hosts fail them: underscores (service names,
// some SaaS tenants) and "--" in the third and fourth positions of an ASCII
// label (CDN hosts such as r3---sn-abc.example.net). normalizeHost then
// allows only letters, digits, '-' and '_' in the mapped result, and DNS
// lengths are checked after the trailing dot is removed.
var lookupProfile = idna.New(
	idna.MapForLookup(),
	idna.StrictDomainName(false),
	idna.CheckHyphens(false),
	idna.BidiRule(),
	idna.Transitional(false),
)

const (
	maxRawHost = 1024 // refuse before IDNA work; no real host comes near it
	maxHost    = 253
	maxLabel   = 63
)

// normalizeHost normalises a host written without brackets or port. It
// returns either a lower-case ASCII name or, when the host is a numeric IPv4
// spelling, the address it reaches; reason is set when the host is malformed.
func normalizeHost(raw string) (name string, addr netip.Addr, reason string) {
	return normalize(raw, !plainASCII(raw))
}

// normalize is normalizeHost, mapping raw through lookupProfile or not.
func normalize(raw string, mapIDNA bool) (name string, addr netip.Addr, reason string) {
	if raw == "" {
		return "", netip.Addr{}, "url has no host"
	}
	if len(raw) > maxRawHost {
		return "", netip.Addr{}, fmt.Sprintf("host is longer than %d characters", maxHost)
	}
	if strings.Contains(raw, "%") {
		return "", netip.Addr{}, fmt.Sprintf("host %q contains a %%", clip(raw, 64))
	}
	if !utf8.ValidString(raw) {
		// The IDNA mapping would turn the bad bytes into U+FFFD and
		// encode that as punycode: a name nobody wrote.
		return "", netip.Addr{}, fmt.Sprintf("host %q is not valid UTF-8", clip(raw, 64))
	}
	host := raw
	if mapIDNA {
		var err error
		if host, err = lookupProfile.ToASCII(raw); err != nil {
			return "", netip.Addr{}, fmt.Sprintf("host %q is not a valid domain name (%v)", clip(raw, 64), err)
		}
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return "", netip.Addr{}, fmt.Sprintf("host %q is not a valid domain name", clip(raw, 64))
	}
	if len(host) > maxHost {
		return "", netip.Addr{}, fmt.Sprintf("host is longer than %d characters", maxHost)
	}
	if endsInNumber(host) {
		a, ok := parseIPv4(host)
		if !ok {
			return "", netip.Addr{}, fmt.Sprintf("host %q looks like an IPv4 address but is not a valid one", clip(raw, 64))
		}
		return "", a, ""
	}
	for label := range strings.SplitSeq(host, ".") {
		switch {
		case label == "":
			return "", netip.Addr{}, fmt.Sprintf("host %q has an empty label", clip(raw, 64))
		case len(label) > maxLabel:
			return "", netip.Addr{}, fmt.Sprintf("host label %q is longer than %d characters", clip(label, 16), maxLabel)
		case !ldh(label), label[0] == '-', label[len(label)-1] == '-':
			return "", netip.Addr{}, fmt.Sprintf("host %q is not a valid domain name", clip(raw, 64))
		}
	}
	return host, netip.Addr{}, ""
}

// plainASCII reports whether host holds only lower-case letters, digits,
// '.', '-' and '_' and no punycode label: lookupProfile maps such a host to
// itself and refuses none (the label checks after it still run), so
// normalizeHost skips the IDNA mapping, most of the CPU it spends on common
// hosts and IP addresses. TestPlainASCIISkipsNothing holds the two paths
// equal.
func plainASCII(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return !strings.Contains(host, "xn--")
}

// ipv6Literal checks the inside of a bracketed URL host.
func ipv6Literal(s string) (netip.Addr, string) {
	if strings.Contains(s, "%") {
		return netip.Addr{}, "IPv6 zones are not allowed in a url host"
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return netip.Addr{}, fmt.Sprintf("host [%s] is not a valid IPv6 address", clip(s, 64))
	}
	return a, ""
}

// ldh reports whether label holds only lower-case letters, digits, hyphens
// and underscores.
func ldh(label string) bool {
	for i := 0; i < len(label); i++ {
		c := label[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// endsInNumber reports whether the last label of host is a number, as the
// WHATWG URL standard decides it: such a host is an IPv4 address or nothing.
func endsInNumber(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if allDigits(last) {
		return true
	}
	_, ok := parseIPv4Number(last)
	return ok
}

// parseIPv4 parses host as inet_aton and browsers do: one to four parts,
// each decimal, octal (leading 0) or hex (0x); the last part fills the
// remaining bytes. 127.1 is 127.0.0.1 and 2130706433 is 127.0.0.1.
func parseIPv4(host string) (netip.Addr, bool) {
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var nums [4]uint64
	for i, p := range parts {
		n, ok := parseIPv4Number(p)
		if !ok {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	last := len(parts) - 1
	var v uint64
	for i := range last {
		if nums[i] > 255 {
			return netip.Addr{}, false
		}
		v |= nums[i] << (8 * (3 - i))
	}
	if nums[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	v |= nums[last]
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// parseIPv4Number parses one part of a numeric IPv4 host. ok is false when s
// is not a number; a number too large for any part saturates rather than
// failing, so the caller reports it as out of range.
func parseIPv4Number(s string) (n uint64, ok bool) {
	if s == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		base, s = 16, s[2:]
	case len(s) >= 2 && s[0] == '0':
		base, s = 8, s[1:]
	}
	const limit = 1 << 40 // far above any valid part
	for i := 0; i < len(s); i++ {
		var d uint64
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		if n < limit {
			n = n*base + d
		}
	}
	return n, true
}
