package egress

import (
	"net/netip"
	"testing"
)

const (
	global    = "global unicast"
	private   = "private address (RFC 1918)"
	loopback  = "loopback address"
	linkLocal = "link-local address"
	metadata  = "cloud metadata endpoint"
	cgnat     = "shared address space (CGNAT, RFC 6598)"
	ietf      = "IETF protocol assignment (RFC 6890)"
	doc4      = "documentation address (RFC 5737)"
	bench4    = "benchmarking address (RFC 2544)"
	multicast = "multicast address"
	reserved  = "reserved address (240.0.0.0/4)"
	thisNet   = `"this network" address (0.0.0.0/8)`
	notGlobal = "not a global unicast address (outside 2000::/3)"
	compat    = "IPv4-compatible IPv6 address (deprecated; embeds an IPv4 address that cannot be checked)"
	nat64     = "NAT64 address (embeds an IPv4 address that cannot be checked)"
	nat64l    = "local-use NAT64 address (embeds an IPv4 address that cannot be checked)"
	sixToFour = "6to4 address (embeds an IPv4 address that cannot be checked)"
	teredo    = "Teredo address (embeds an IPv4 address that cannot be checked)"
	ula       = "unique local address (fc00::/7)"
	mapped    = " (IPv4-mapped IPv6)"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr    string
		allowed bool
		reason  string
	}{
		{"8.8.8.8", true, global},
		{"1.1.1.1", true, global},

		{"0.0.0.0", false, thisNet},
		{"0.255.255.255", false, thisNet},
		{"1.0.0.0", true, global},

		{"9.255.255.255", true, global},
		{"10.0.0.0", false, private},
		{"10.255.255.255", false, private},
		{"11.0.0.0", true, global},

		{"100.63.255.255", true, global},
		{"100.64.0.0", false, cgnat},
		{"100.127.255.255", false, cgnat},
		{"100.128.0.0", true, global},
		{"100.100.100.199", false, cgnat},
		{"100.100.100.200", false, metadata},
		{"100.100.100.201", false, cgnat},

		{"126.255.255.255", true, global},
		{"127.0.0.0", false, loopback},
		{"127.0.0.1", false, loopback},
		{"127.255.255.255", false, loopback},
		{"128.0.0.0", true, global},

		{"168.63.129.15", true, global},
		{"168.63.129.16", false, metadata},
		{"168.63.129.17", true, global},

		{"169.253.255.255", true, global},
		{"169.254.0.0", false, linkLocal},
		{"169.254.169.253", false, linkLocal},
		{"169.254.169.254", false, metadata},
		{"169.254.169.255", false, linkLocal},
		{"169.254.255.255", false, linkLocal},
		{"169.255.0.0", true, global},

		{"172.15.255.255", true, global},
		{"172.16.0.0", false, private},
		{"172.31.255.255", false, private},
		{"172.32.0.0", true, global},

		{"191.255.255.255", true, global},
		{"192.0.0.0", false, ietf},
		{"192.0.0.191", false, ietf},
		{"192.0.0.192", false, metadata},
		{"192.0.0.193", false, ietf},
		{"192.0.0.255", false, ietf},
		{"192.0.1.0", true, global},
		{"192.0.1.255", true, global},
		{"192.0.2.0", false, doc4},
		{"192.0.2.255", false, doc4},
		{"192.0.3.0", true, global},

		{"192.167.255.255", true, global},
		{"192.168.0.0", false, private},
		{"192.168.255.255", false, private},
		{"192.169.0.0", true, global},

		{"198.17.255.255", true, global},
		{"198.18.0.0", false, bench4},
		{"198.19.255.255", false, bench4},
		{"198.20.0.0", true, global},

		{"198.51.99.255", true, global},
		{"198.51.100.0", false, doc4},
		{"198.51.100.255", false, doc4},
		{"198.51.101.0", true, global},

		{"203.0.112.255", true, global},
		{"203.0.113.0", false, doc4},
		{"203.0.113.255", false, doc4},
		{"203.0.114.0", true, global},

		{"223.255.255.255", true, global},
		{"224.0.0.0", false, multicast},
		{"239.255.255.255", false, multicast},
		{"240.0.0.0", false, reserved},
		{"255.255.255.254", false, reserved},
		{"255.255.255.255", false, "broadcast address"},

		// IPv4-mapped: judged as the IPv4 address inside.
		{"::ffff:127.0.0.1", false, loopback + mapped},
		{"::ffff:7f00:1", false, loopback + mapped},
		{"::ffff:10.0.0.1", false, private + mapped},
		{"::ffff:169.254.169.254", false, metadata + mapped},
		{"::ffff:0.0.0.0", false, thisNet + mapped},
		{"::ffff:8.8.8.8", true, global},

		{"::", false, "unspecified address"},
		{"::1", false, loopback},
		{"::2", false, compat},
		{"::127.0.0.1", false, compat},
		{"::8.8.8.8", false, compat},
		{"::ffff", false, compat},
		{"::255.255.255.255", false, compat},
		{"::1:0:0", false, notGlobal},
		{"::fffe:ffff:ffff", false, notGlobal},

		{"64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", false, notGlobal},
		{"64:ff9b::", false, nat64},
		{"64:ff9b::7f00:1", false, nat64},
		{"64:ff9b::808:808", false, nat64},
		{"64:ff9b::ffff:ffff", false, nat64},
		{"64:ff9b::1:0:0", false, notGlobal},
		{"64:ff9b:1::", false, nat64l},
		{"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", false, nat64l},
		{"64:ff9b:2::", false, notGlobal},

		{"100::", false, "discard-only address (RFC 6666)"},
		{"100::ffff:ffff:ffff:ffff", false, "discard-only address (RFC 6666)"},
		{"100:0:0:1::", false, notGlobal},

		{"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, notGlobal},
		{"2000::", true, global},
		{"2001::", false, teredo},
		{"2001:0:ffff:ffff:ffff:ffff:ffff:ffff", false, teredo},
		{"2001:1::", true, global},
		{"2001:2::", false, "benchmarking address (RFC 5180)"},
		{"2001:2:0:ffff:ffff:ffff:ffff:ffff", false, "benchmarking address (RFC 5180)"},
		{"2001:2:1::", true, global},
		{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true, global},
		{"2001:db8::", false, "documentation address (RFC 3849)"},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", false, "documentation address (RFC 3849)"},
		{"2001:db9::", true, global},
		{"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, global},
		{"2002::", false, sixToFour},
		{"2002:7f00:1::", false, sixToFour},
		{"2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, sixToFour},
		{"2003::", true, global},
		{"2606:4700:4700::1111", true, global},
		{"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, global},
		{"3fff::", false, "documentation address (RFC 9637)"},
		{"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", false, "documentation address (RFC 9637)"},
		{"3fff:1000::", true, global},
		{"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, global},
		{"4000::", false, notGlobal},

		{"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, notGlobal},
		{"fc00::", false, ula},
		{"fd00:ec2::253", false, ula},
		{"fd00:ec2::254", false, metadata},
		{"fd00:ec2::255", false, ula},
		{"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, ula},
		{"fe00::", false, notGlobal},
		{"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, notGlobal},
		{"fe80::", false, linkLocal},
		{"fe80::1%eth0", false, linkLocal},
		{"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, linkLocal},
		{"fec0::", false, notGlobal},
		{"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, notGlobal},
		{"ff00::", false, multicast},
		{"ff02::1", false, multicast},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, multicast},
		// A zone is ignored, not a way around the rules.
		{"::1%lo", false, loopback},
		{"2606:4700:4700::1111%eth0", true, global},
	}
	g := New()
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			got := g.Decide(netip.MustParseAddr(tt.addr))
			if got.Allowed != tt.allowed || got.Reason != tt.reason {
				t.Errorf("Decide(%s) = %+v, want {Allowed:%v Reason:%q}", tt.addr, got, tt.allowed, tt.reason)
			}
		})
	}
}

func TestDecideInvalid(t *testing.T) {
	t.Parallel()
	got := New().Decide(netip.Addr{})
	if got.Allowed || got.Reason != "invalid address" {
		t.Errorf("Decide(zero) = %+v, want refused as invalid address", got)
	}
}

func TestDecideZeroGuard(t *testing.T) {
	t.Parallel()
	var g Guard
	if d := g.Decide(netip.MustParseAddr("127.0.0.1")); d.Allowed {
		t.Errorf("zero Guard allowed 127.0.0.1: %+v", d)
	}
	if d := g.Decide(netip.MustParseAddr("8.8.8.8")); !d.Allowed {
		t.Errorf("zero Guard refused 8.8.8.8: %+v", d)
	}
}

func TestDecideWithAllow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allow   []string
		addr    string
		allowed bool
		reason  string
	}{
		{"loopback allowed", []string{"127.0.0.0/8"}, "127.0.0.1", true, "allowed by 127.0.0.0/8"},
		{"loopback last", []string{"127.0.0.0/8"}, "127.255.255.255", true, "allowed by 127.0.0.0/8"},
		{"mapped loopback allowed", []string{"127.0.0.0/8"}, "::ffff:127.0.0.1", true, "allowed by 127.0.0.0/8"},
		{"only that range: private", []string{"127.0.0.0/8"}, "10.0.0.1", false, private},
		{"only that range: v6 loopback", []string{"127.0.0.0/8"}, "::1", false, loopback},
		{"only that range: metadata", []string{"127.0.0.0/8"}, "169.254.169.254", false, metadata},
		{"only that range: nat64 of loopback", []string{"127.0.0.0/8"}, "64:ff9b::7f00:1", false, nat64},
		{"only that range: compatible loopback", []string{"127.0.0.0/8"}, "::127.0.0.1", false, compat},
		{"global unaffected", []string{"127.0.0.0/8"}, "128.0.0.1", true, global},
		{"narrow range inside", []string{"10.1.0.0/16"}, "10.1.255.255", true, "allowed by 10.1.0.0/16"},
		{"narrow range outside", []string{"10.1.0.0/16"}, "10.2.0.0", false, private},
		{"narrow range before", []string{"10.1.0.0/16"}, "10.0.255.255", false, private},
		{"unmasked prefix is masked", []string{"127.0.0.1/8"}, "127.9.9.9", true, "allowed by 127.0.0.0/8"},
		{"mapped prefix read as IPv4", []string{"::ffff:127.0.0.0/104"}, "127.0.0.1", true, "allowed by 127.0.0.0/8"},
		{"single metadata host", []string{"169.254.169.254/32"}, "169.254.169.254", true, "allowed by 169.254.169.254/32"},
		{"single host, neighbour refused", []string{"169.254.169.254/32"}, "169.254.169.253", false, linkLocal},
		{"ula range", []string{"fd00::/8"}, "fd12::1", true, "allowed by fd00::/8"},
		{"ula range, other half refused", []string{"fd00::/8"}, "fc00::1", false, ula},
		{"nat64 allowed explicitly", []string{"64:ff9b::/96"}, "64:ff9b::a00:1", true, "allowed by 64:ff9b::/96"},
		{"v6 allow does not cover mapped v4", []string{"::/0"}, "::ffff:127.0.0.1", false, loopback + mapped},
		{"second of several", []string{"10.0.0.0/8", "192.168.1.0/24"}, "192.168.1.7", true, "allowed by 192.168.1.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ps []netip.Prefix
			for _, s := range tt.allow {
				ps = append(ps, netip.MustParsePrefix(s))
			}
			got := New(WithAllow(ps...)).Decide(netip.MustParseAddr(tt.addr))
			if got.Allowed != tt.allowed || got.Reason != tt.reason {
				t.Errorf("Decide(%s) with allow %v = %+v, want {Allowed:%v Reason:%q}", tt.addr, tt.allow, got, tt.allowed, tt.reason)
			}
		})
	}
}

func TestRulesTable(t *testing.T) {
	t.Parallel()
	seen := map[netip.Prefix]bool{}
	for i, r := range rules {
		if r.prefix != r.prefix.Masked() {
			t.Errorf("rule %s is not masked", r.prefix)
		}
		if r.prefix.Addr().Is4In6() {
			t.Errorf("rule %s is IPv4-mapped; Decide never checks mapped addresses against rules", r.prefix)
		}
		if seen[r.prefix] {
			t.Errorf("rule %s listed twice", r.prefix)
		}
		seen[r.prefix] = true
		if r.reason == "" {
			t.Errorf("rule %s has no reason", r.prefix)
		}
		if i > 0 && rules[i-1].prefix.Bits() < r.prefix.Bits() {
			t.Errorf("rules not sorted most specific first at %s", r.prefix)
		}
	}
}

// TestAllowsAgreesWithDecide: the per-call check agrees with Decide on
// every kind of address, with and without an allowance (FuzzClassify checks
// it on arbitrary ones).
func TestAllowsAgreesWithDecide(t *testing.T) {
	t.Parallel()
	plain, allowing := New(), New(WithAllow(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00::/8")))
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3", "169.254.169.254", "8.8.8.8", "::1", "fd00::1", "fe80::1%eth0", "2606:4700::1111", "0.0.0.0"} {
		a := netip.MustParseAddr(s)
		for _, g := range []*Guard{plain, allowing} {
			if got, want := g.allows(a), g.Decide(a).Allowed; got != want {
				t.Errorf("allows(%s) = %v, Decide: %v", s, got, want)
			}
		}
	}
	if plain.allows(netip.Addr{}) {
		t.Error("the zero Addr is allowed")
	}
}
