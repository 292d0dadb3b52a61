package egress

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// mappedSuffix is what Decide may add to the Reason of a refused
// IPv4-mapped address; the class of the reason is the rest.
const mappedSuffix = " (IPv4-mapped IPv6)"

// FuzzClassify checks Guard.Decide on arbitrary addresses: it never panics
// and always gives a Reason; an IPv4-mapped address is judged as the IPv4
// address it carries and a zone is ignored, with and without an allow list;
// nothing loopback, private, link-local, multicast, unspecified or outside
// global unicast (by net/netip's own predicates) passes New(); an allow
// list adds exactly its ranges; Resolve of the literal agrees with Decide
// without asking the resolver; and ParseURL takes the literal as it is.
//
// raw is the address: 4 bytes IPv4, 16 bytes IPv6, anything else its first
// 16 or 4 bytes (none: the zero Addr). allow and bits make the allow range.
//
//	go test -run '^$' -fuzz '^FuzzClassify$' -fuzztime 60s ./internal/egress/
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "8.8.8.8", "255.255.255.255", "0.0.0.0",
		"::1", "::", "::ffff:127.0.0.1", "::ffff:8.8.8.8", "::127.0.0.1", "64:ff9b::a00:1", "2001::1",
		"2002:a00:1::", "fe80::1", "fd00:ec2::254", "ff02::1", "2606:4700::1111", "3fff::1", "100::1",
	} {
		a := netip.MustParseAddr(s)
		f.Add(a.AsSlice(), []byte{127, 0, 0, 0}, uint8(8))
	}
	f.Add([]byte{}, []byte{}, uint8(0))
	f.Add(netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), netip.MustParseAddr("::ffff:10.0.0.0").AsSlice(), uint8(104))
	f.Add(netip.MustParseAddr("fd12::1").AsSlice(), netip.MustParseAddr("fd00::").AsSlice(), uint8(8))
	f.Fuzz(func(t *testing.T, raw, allow []byte, bits uint8) {
		a := fuzzAddr(raw)
		prefix := netip.PrefixFrom(fuzzAddr(allow), int(bits))
		plain, allowing := New(), New(WithAllow(prefix))
		for _, g := range []*Guard{plain, allowing} {
			d := g.Decide(a)
			if d.Reason == "" {
				t.Fatalf("Decide(%v) without a Reason: %+v", a, d)
			}
			if g.allows(a) != d.Allowed {
				t.Fatalf("allows(%v) = %v, Decide says %+v", a, !d.Allowed, d)
			}
			if !a.IsValid() {
				if d.Allowed {
					t.Fatal("the zero Addr was allowed")
				}
				return
			}
			checkMapped(t, g, a)
			checkLiteral(t, g, a, d)
		}

		d := plain.Decide(a)
		u := a.Unmap()
		if d.Allowed && (u.IsLoopback() || u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsLinkLocalMulticast() ||
			u.IsInterfaceLocalMulticast() || u.IsMulticast() || u.IsUnspecified() || !u.IsGlobalUnicast() ||
			u.Is6() && !netip.MustParsePrefix("2000::/3").Contains(u)) {
			t.Fatalf("New().Decide(%v) = %+v: it is not a global unicast address", a, d)
		}

		// An allow list adds exactly its ranges, read as WithAllow says.
		if want := d.Allowed || allowedBy(prefix, u); allowing.Decide(a).Allowed != want {
			t.Fatalf("WithAllow(%v).Decide(%v) = %+v; want Allowed %v (New() says %+v)", prefix, a, allowing.Decide(a), want, d)
		}
	})
}

// fuzzAddr builds an address from raw bytes: 4 or more bytes give an IPv4
// address, 16 or more an IPv6 one, fewer the zero Addr.
func fuzzAddr(raw []byte) netip.Addr {
	switch {
	case len(raw) >= 16:
		return netip.AddrFrom16([16]byte(raw[:16]))
	case len(raw) >= 4:
		return netip.AddrFrom4([4]byte(raw[:4]))
	}
	return netip.Addr{}
}

// allowedBy is WithAllow's contract: masked, an IPv4-mapped range of /96 or
// more read as the IPv4 range it maps, matched against the unmapped address.
func allowedBy(p netip.Prefix, unmapped netip.Addr) bool {
	if !p.IsValid() {
		return false
	}
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Contains(unmapped)
}

// checkMapped checks that a, its IPv4-mapped form and its zoned forms get
// the same decision: Allowed and the class of the Reason (a refused mapped
// address may say so in its Reason).
func checkMapped(t *testing.T, g *Guard, a netip.Addr) {
	t.Helper()
	d := g.Decide(a)
	class := strings.TrimSuffix(d.Reason, mappedSuffix)
	if a.Is6() {
		if z := g.Decide(a.WithZone("eth0")); z != d {
			t.Fatalf("Decide(%v) = %+v, but with a zone %+v", a, d, z)
		}
	}
	if !a.Is4() && !a.Is4In6() {
		return
	}
	v4 := a.Unmap()
	mapped := netip.AddrFrom16(v4.As16())
	d4, dm := g.Decide(v4), g.Decide(mapped)
	switch {
	case dm.Allowed != d4.Allowed:
		t.Fatalf("Decide(%v) = %+v, but Decide(%v) = %+v", v4, d4, mapped, dm)
	case strings.TrimSuffix(dm.Reason, mappedSuffix) != d4.Reason:
		t.Fatalf("judged for different reasons: Decide(%v) = %+v, Decide(%v) = %+v", v4, d4, mapped, dm)
	case class != strings.TrimSuffix(d4.Reason, mappedSuffix):
		t.Fatalf("Decide(%v) = %+v, but Decide(%v) = %+v", a, d, v4, d4)
	}
}

// panicResolver fails the test if Resolve asks it anything.
type panicResolver struct{ t *testing.T }

func (r panicResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.t.Fatalf("an IP literal was looked up: %q", host)
	return nil, nil
}

// checkLiteral checks that Resolve of a's literal agrees with Decide
// without a lookup, and that ParseURL takes the literal as written.
func checkLiteral(t *testing.T, g *Guard, a netip.Addr, d Decision) {
	t.Helper()
	r := *g
	r.resolver = panicResolver{t}
	addrs, err := r.Resolve(t.Context(), a.String())
	var denied *DeniedError
	switch {
	case d.Allowed && (err != nil || len(addrs) != 1 || addrs[0] != a):
		t.Fatalf("Resolve(%q) = %v, %v; Decide says %+v", a, addrs, err, d)
	case !d.Allowed && (!errors.As(err, &denied) || denied.Reason != d.Reason || denied.Addr != a):
		t.Fatalf("Resolve(%q) = %v, %v; Decide says %+v", a, addrs, err, d)
	}

	if a.Zone() != "" {
		return
	}
	host := a.String()
	if a.Is6() {
		host = "[" + host + "]"
	}
	u, err := ParseURL("http://" + host + ":443/")
	if err != nil || u.Hostname() != a.String() || u.Port() != "443" {
		t.Fatalf("ParseURL of the literal %s = %v, %v", host, u, err)
	}
}

// FuzzParseURL checks ParseURL on arbitrary text: it never panics; every
// refusal is a *URLError (ErrMalformed); a URL it takes is http or https,
// has a normalised host (a lower-case name of valid labels, a dotted quad,
// or a canonical bracketed IPv6 address without zone), no userinfo, no
// fragment, a port in 1-65535 without leading zeros if any; and taking its
// String() again gives the same URL (normalising is idempotent).
//
//	go test -run '^$' -fuzz '^FuzzParseURL$' -fuzztime 60s ./internal/egress/
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a/b?q=1#frag", "HTTP://Example.COM:080/", "http://example.com.:8080", "http://127.1/",
		"http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://[::ffff:7f00:1]/",
		"http://[fe80::1%25eth0]/", "http://ｅｘａｍｐｌｅ．ｃｏｍ/", "http://xn--nxasmq6b.com/", "http://user:pw@example.com/",
		"http://example.com:0/", "http://example.com:65536/", "http://example.com:/", "ftp://example.com/",
		"http:example.com", "//example.com/", "http://1.2.3.4.5/", "http://a..b/", "http://_svc.example.com/",
		"http://r3---sn-abc.example.net/", "http://example.com/%zz", "http://exa mple.com/", "http://[::1]:99999/",
		"https://example.com/p%20q;x=1?a=%2F&b#", "http://example.com?",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseURL(raw)
		if err != nil {
			var ue *URLError
			if !errors.As(err, &ue) || !errors.Is(err, ErrMalformed) || ue.Reason == "" {
				t.Fatalf("ParseURL(%q): refusal is not a *URLError with a reason: %v", raw, err)
			}
			if u != nil {
				t.Fatalf("ParseURL(%q) returned a URL with its error", raw)
			}
			return
		}
		checkParsed(t, raw, u.String(), u.Scheme, u.Host, u.Hostname(), u.Port(), u.User != nil, u.Opaque, u.Fragment)

		s := u.String()
		again, err := ParseURL(s)
		if err != nil {
			t.Fatalf("ParseURL(%q) = %q, which ParseURL refuses: %v", raw, s, err)
		}
		if again.String() != s {
			t.Fatalf("ParseURL(%q) = %q, but ParseURL(%q) = %q: normalising is not idempotent", raw, s, s, again)
		}
	})
}

func checkParsed(t *testing.T, raw, s, scheme, host, hostname, port string, user bool, opaque, fragment string) {
	t.Helper()
	fail := func(what string) { t.Fatalf("ParseURL(%q) = %q: %s", raw, s, what) }
	switch {
	case scheme != "http" && scheme != "https":
		fail("scheme " + scheme)
	case hostname == "":
		fail("no host")
	case user:
		fail("userinfo")
	case opaque != "":
		fail("opaque")
	case fragment != "":
		fail("fragment")
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			fail("port " + port)
		}
	}
	if a, err := netip.ParseAddr(hostname); err == nil {
		switch {
		case a.Zone() != "":
			fail("zone")
		case a.String() != hostname:
			fail("address not canonical")
		case a.Is6() && !strings.HasPrefix(host, "["):
			fail("IPv6 address without brackets")
		}
		return
	}
	if len(hostname) > maxHost || strings.HasSuffix(hostname, ".") {
		fail("host too long or with a trailing dot")
	}
	for label := range strings.SplitSeq(hostname, ".") {
		if label == "" || len(label) > maxLabel || !ldh(label) || label[0] == '-' || label[len(label)-1] == '-' {
			fail("host label " + strconv.Quote(label))
		}
	}
	if endsInNumber(hostname) {
		fail("numeric host not rewritten to a dotted quad")
	}
}
