package egress

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseIPv4(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host string
		want string // "" means not an IPv4 address
	}{
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"1", "0.0.0.1"},
		{"255", "0.0.0.255"},
		{"256", "0.0.1.0"},
		{"4294967295", "255.255.255.255"},
		{"4294967296", ""},
		{"0xffffffff", "255.255.255.255"},
		{"0x100000000", ""},
		{"037777777777", "255.255.255.255"},
		{"040000000000", ""},
		{"1.2", "1.0.0.2"},
		{"1.16777215", "1.255.255.255"},
		{"1.16777216", ""},
		{"1.2.3", "1.2.0.3"},
		{"1.2.65535", "1.2.255.255"},
		{"1.2.65536", ""},
		{"1.2.3.4", "1.2.3.4"},
		{"1.2.3.255", "1.2.3.255"},
		{"1.2.3.256", ""},
		{"255.0.0.0", "255.0.0.0"},
		{"256.0.0.0", ""},
		{"0x7f.0.0.1", "127.0.0.1"},
		{"0X7F.0.0.1", "127.0.0.1"},
		{"0177.0.0.01", "127.0.0.1"},
		{"00000000000000000000177.1", "127.0.0.1"},
		{"1.2.3.4.5", ""},
		{"1..2", ""},
		{".1", ""},
		{"09", ""},
		{"0x1g", ""},
		{"1e3", ""},
		{"+1", ""},
		{"-1", ""},
		{"0xffffffffffffffffffffffffff", ""},
		{"99999999999999999999999999", ""},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			got, ok := parseIPv4(tt.host)
			switch {
			case tt.want == "" && ok:
				t.Errorf("parseIPv4(%q) = %s, want not an address", tt.host, got)
			case tt.want != "" && (!ok || got != netip.MustParseAddr(tt.want)):
				t.Errorf("parseIPv4(%q) = %s, %v, want %s", tt.host, got, ok, tt.want)
			}
		})
	}
}

func TestEndsInNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host string
		want bool
	}{
		{"example.com", false},
		{"123.example.com", false},
		{"example.123", true},
		{"example.0x", true},
		{"example.0x1f", true},
		{"example.0x1g", false},
		{"example.09", true}, // all digits: numeric, then invalid as octal
		{"7f000001", false},
		{"1e100", false},
		{"127.0.0.1", true},
	}
	for _, tt := range tests {
		if got := endsInNumber(tt.host); got != tt.want {
			t.Errorf("endsInNumber(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, want string
	}{
		{"http://example.com/a", "http://example.com/a"},
		{"http://u:p@example.com/a", "http://xxxxx@example.com/a"},
		{"http://u:p@ss@example.com", "http://xxxxx@example.com"},
		{"user:pass@example.com", "xxxxx@example.com"},
		{"http://example.com/a@b", "http://example.com/a@b"},
		{"http://example.com/?a=1&b=2&flag&&c=", "http://example.com/?a=xxxxx&b=xxxxx&xxxxx&&c=xxxxx"},
		{"http://example.com/#access_token=x", "http://example.com/#xxxxx"},
		{"http://example.com/#", "http://example.com/"},
		{"http://u:p@h:abc/?k=v#f", "http://xxxxx@h:abc/?k=xxxxx#xxxxx"},
		{"http://a.example/" + string(make([]byte, 300)), ""}, // checked by length below
	}
	for _, tt := range tests {
		got := RedactURL(tt.raw)
		if tt.want == "" {
			if len(got) > maxRedacted+len("…") {
				t.Errorf("RedactURL(long) has %d bytes, want at most %d", len(got), maxRedacted+len("…"))
			}
			continue
		}
		if got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

// TestPlainASCIISkipsNothing: for the hosts normalizeHost does not map
// through IDNA, mapping them gives the same name, address and refusal.
func TestPlainASCIISkipsNothing(t *testing.T) {
	t.Parallel()
	for _, h := range []string{
		"example.com", "api.example.com.", "127.0.0.1", "127.1", "0177.0.0.1", "0x7f.1", "2130706433",
		"1.2.3.4.5", "256.0.0.1", "a..b", ".example.com", "example..", "-a.com", "a-.com", "r3---sn-abc.example.net",
		"_svc._tcp.example.com", "a_b.example", "1.2.3.a", "0x", "09.1", strings.Repeat("a", 64) + ".com",
		strings.Repeat("a.", 127) + "a", "123", "a.123", "",
	} {
		if !plainASCII(h) {
			t.Fatalf("plainASCII(%q) = false; the table holds plain hosts only", h)
		}
		checkPlain(t, h)
	}
	for _, h := range []string{"Example.com", "xn--nxasmq6b.com", "a.xn--.com", "ｅｘａｍｐｌｅ.com", "exa mple.com", "a%2e.com"} {
		if plainASCII(h) {
			t.Errorf("plainASCII(%q) = true", h)
		}
	}
}

func checkPlain(t *testing.T, h string) {
	t.Helper()
	n1, a1, r1 := normalize(h, false)
	n2, a2, r2 := normalize(h, true)
	if n1 != n2 || a1 != a2 || (r1 == "") != (r2 == "") {
		t.Errorf("host %q: without IDNA %q %v %q, with IDNA %q %v %q", h, n1, a1, r1, n2, a2, r2)
	}
}

// FuzzPlainASCII holds the IDNA shortcut of normalizeHost equal to the
// mapping it skips, for every plain host.
func FuzzPlainASCII(f *testing.F) {
	for _, s := range []string{"example.com", "127.0.0.1", "a..b", "r3---sn-abc.example.net", "0x7f.1", "_a.b", "-a.b."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if plainASCII(h) {
			checkPlain(t, h)
		}
	})
}
