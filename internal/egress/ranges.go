package egress

import (
	"cmp"
	"net/netip"
	"slices"
)

// rule is one special-purpose range and the reason an address in it is
// refused.
type rule struct {
	prefix netip.Prefix
	reason string
}

const (
	reasonMetadata = "cloud metadata endpoint"
	reasonTunnel   = "embeds an IPv4 address that cannot be checked"
)

// rules lists the ranges the guard refuses. It is sorted most specific
// first, so the first match is the most specific one (169.254.169.254 is a
// metadata endpoint before it is link-local). IPv4-mapped addresses never
// reach the IPv6 rows: Decide judges them as the IPv4 address they carry.
var rules = sortRules([]rule{
	// IPv4
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network" address (0.0.0.0/8)`},
	{netip.MustParsePrefix("10.0.0.0/8"), "private address (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT, RFC 6598)"},
	{netip.MustParsePrefix("100.100.100.200/32"), reasonMetadata},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback address"},
	{netip.MustParsePrefix("168.63.129.16/32"), reasonMetadata},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local address"},
	{netip.MustParsePrefix("169.254.169.254/32"), reasonMetadata},
	{netip.MustParsePrefix("172.16.0.0/12"), "private address (RFC 1918)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment (RFC 6890)"},
	{netip.MustParsePrefix("192.0.0.192/32"), reasonMetadata},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation address (RFC 5737)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private address (RFC 1918)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking address (RFC 2544)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation address (RFC 5737)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation address (RFC 5737)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved address (240.0.0.0/4)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast address"},

	// IPv6
	{netip.MustParsePrefix("::/128"), "unspecified address"},
	{netip.MustParsePrefix("::1/128"), "loopback address"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible IPv6 address (deprecated; " + reasonTunnel + ")"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64 address (" + reasonTunnel + ")"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 address (" + reasonTunnel + ")"},
	{netip.MustParsePrefix("100::/64"), "discard-only address (RFC 6666)"},
	{netip.MustParsePrefix("2001::/32"), "Teredo address (" + reasonTunnel + ")"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking address (RFC 5180)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation address (RFC 3849)"},
	{netip.MustParsePrefix("2002::/16"), "6to4 address (" + reasonTunnel + ")"},
	{netip.MustParsePrefix("3fff::/20"), "documentation address (RFC 9637)"},
	{netip.MustParsePrefix("fc00::/7"), "unique local address (fc00::/7)"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), reasonMetadata},
	{netip.MustParsePrefix("fe80::/10"), "link-local address"},
	{netip.MustParsePrefix("ff00::/8"), "multicast address"},
})

// globalUnicast6 is the IPv6 global unicast space; everything outside it is
// refused.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

func sortRules(rs []rule) []rule {
	slices.SortStableFunc(rs, func(a, b rule) int { return cmp.Compare(b.prefix.Bits(), a.prefix.Bits()) })
	return rs
}

// classify judges an unmapped, zoneless address against the rules alone.
func classify(a netip.Addr) (reason string, ok bool) {
	for _, r := range rules {
		if r.prefix.Contains(a) {
			return r.reason, false
		}
	}
	if a.Is6() && !globalUnicast6.Contains(a) {
		return "not a global unicast address (outside 2000::/3)", false
	}
	if !a.IsGlobalUnicast() {
		// Unreachable while the rules cover every non-global IPv4 range;
		// kept so a table edit cannot let such an address through.
		return "not a global unicast address", false
	}
	return "global unicast", true
}
