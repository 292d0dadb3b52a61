package egress

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string // the normalised URL
		host string // u.Host; checked when set
	}{
		{"http", "http://example.com/a?b=c", "http://example.com/a?b=c", "example.com"},
		{"https with port", "https://example.com:8443/x", "https://example.com:8443/x", "example.com:8443"},
		{"uppercase scheme and host", "HTTPS://EXAMPLE.COM/Path", "https://example.com/Path", "example.com"},
		{"mixed case scheme", "HtTp://Example.com", "http://example.com", "example.com"},
		{"fragment dropped", "http://example.com/a#frag", "http://example.com/a", "example.com"},
		{"space in the query escaped", "http://example.com/a?q=a b&r= &s", "http://example.com/a?q=a%20b&r=%20&s", "example.com"},
		{"space before a fragment", "http://0? #", "http://0.0.0.0?%20", "0.0.0.0"},
		{"fragment after host with at sign", "http://127.0.0.1#@example.com", "http://127.0.0.1", "127.0.0.1"},
		{"path kept as written", "http://example.com/a%2Fb/c", "http://example.com/a%2Fb/c", "example.com"},
		{"empty port removed", "http://example.com:/x", "http://example.com/x", "example.com"},
		{"port 1", "http://example.com:1", "http://example.com:1", "example.com:1"},
		{"port 65535", "http://example.com:65535", "http://example.com:65535", "example.com:65535"},
		{"port leading zeros", "http://example.com:0080", "http://example.com:80", "example.com:80"},
		{"trailing dot", "http://localhost./", "http://localhost/", "localhost"},
		{"underscore label", "https://tenant_a.example.com/", "https://tenant_a.example.com/", "tenant_a.example.com"},
		{"double hyphen in positions 3-4", "https://r3---sn-abc.example.net/v", "https://r3---sn-abc.example.net/v", "r3---sn-abc.example.net"},
		{"trailing dot with port", "http://example.com.:8080/", "http://example.com:8080/", "example.com:8080"},

		// Numeric IPv4 spellings become the address they reach.
		{"dotted quad", "http://127.0.0.1/", "http://127.0.0.1/", "127.0.0.1"},
		{"decimal", "http://2130706433/", "http://127.0.0.1/", "127.0.0.1"},
		{"hex", "http://0x7f000001/", "http://127.0.0.1/", "127.0.0.1"},
		{"hex upper", "http://0X7F000001/", "http://127.0.0.1/", "127.0.0.1"},
		{"octal", "http://0177.0.0.1/", "http://127.0.0.1/", "127.0.0.1"},
		{"octal whole", "http://017700000001/", "http://127.0.0.1/", "127.0.0.1"},
		{"short two parts", "http://127.1/", "http://127.0.0.1/", "127.0.0.1"},
		{"short three parts", "http://127.0.1/", "http://127.0.0.1/", "127.0.0.1"},
		{"mixed hex short", "http://0x7f.1/", "http://127.0.0.1/", "127.0.0.1"},
		{"hex every part", "http://0x7f.0x0.0x0.0x1", "http://127.0.0.1", "127.0.0.1"},
		{"leading zeros are octal", "http://010.0.0.1/", "http://8.0.0.1/", "8.0.0.1"},
		{"zero", "http://0/", "http://0.0.0.0/", "0.0.0.0"},
		{"numeric with port", "http://2130706433:8080/", "http://127.0.0.1:8080/", "127.0.0.1:8080"},
		{"numeric trailing dot", "http://127.0.0.1./", "http://127.0.0.1/", "127.0.0.1"},
		{"metadata decimal", "http://2852039166/latest", "http://169.254.169.254/latest", "169.254.169.254"},
		{"max", "http://4294967295/", "http://255.255.255.255/", "255.255.255.255"},

		// IPv6 literals in canonical form.
		{"ipv6 loopback", "http://[::1]/", "http://[::1]/", "[::1]"},
		{"ipv6 with port", "http://[::1]:8080/", "http://[::1]:8080/", "[::1]:8080"},
		{"ipv6 canonical", "http://[2001:DB8:0:0::1]/", "http://[2001:db8::1]/", "[2001:db8::1]"},
		{"mapped dotted", "http://[::ffff:127.0.0.1]", "http://[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]"},
		{"mapped hex", "http://[::ffff:7f00:1]", "http://[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]"},

		// IDN: mapped to what the resolver would be asked.
		{"fullwidth digits and dots", "http://１２７．０．０．１/", "http://127.0.0.1/", "127.0.0.1"},
		{"ideographic full stop", "http://127。0。0。1/", "http://127.0.0.1/", "127.0.0.1"},
		{"halfwidth ideographic full stop", "http://127｡0｡0｡1/", "http://127.0.0.1/", "127.0.0.1"},
		{"circled letters", "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", "http://localhost/", "localhost"},
		{"fullwidth letters", "http://ｅｘａｍｐｌｅ.com/", "http://example.com/", "example.com"},
		{"unicode name", "http://bücher.example/", "http://xn--bcher-kva.example/", "xn--bcher-kva.example"},
		{"percent-encoded unicode name", "http://b%C3%BCcher.example/", "http://xn--bcher-kva.example/", "xn--bcher-kva.example"},
		{"valid punycode", "http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/", "xn--bcher-kva.example"},
		{"uppercase punycode", "http://XN--BCHER-KVA.example/", "http://xn--bcher-kva.example/", "xn--bcher-kva.example"},
		{"ignored soft hyphen", "http://exa\u00admple.com/", "http://example.com/", "example.com"},
		{"ideographic trailing dot", "http://localhost。/", "http://localhost/", "localhost"},

		{"63-character label", "http://" + strings.Repeat("a", 63) + ".example/", "http://" + strings.Repeat("a", 63) + ".example/", ""},
		{"253-character host", "http://" + longHost(253) + "/", "http://" + longHost(253) + "/", ""},
		{"253 plus trailing dot", "http://" + longHost(253) + "./", "http://" + longHost(253) + "/", ""},
		{"name with digits", "http://123.example.com/", "http://123.example.com/", "123.example.com"},
		{"hex-looking name", "http://7f000001/", "http://7f000001/", "7f000001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := ParseURL(tt.raw)
			if err != nil {
				t.Fatalf("ParseURL(%q) error: %v", tt.raw, err)
			}
			if got := u.String(); got != tt.want {
				t.Errorf("ParseURL(%q) = %q, want %q", tt.raw, got, tt.want)
			}
			if tt.host != "" && u.Host != tt.host {
				t.Errorf("ParseURL(%q).Host = %q, want %q", tt.raw, u.Host, tt.host)
			}
			if u.Fragment != "" || u.RawFragment != "" || u.User != nil {
				t.Errorf("ParseURL(%q) kept fragment or userinfo: %#v", tt.raw, u)
			}
		})
	}
}

func TestParseURLMalformed(t *testing.T) {
	t.Parallel()
	const (
		absolute = "url must be absolute (http:// or https://)"
		noHost   = "url has no host"
		creds    = "credentials in the url are not allowed; send an Authorization header"
		zone     = "IPv6 zones are not allowed in a url host"
	)
	tests := []struct {
		name   string
		raw    string
		reason string // exact Reason, or a prefix when it ends in "(…"
	}{
		{"empty", "", "url is empty"},
		{"relative path", "/path", absolute},
		{"relative name", "example.com/x", absolute},
		{"scheme-relative", "//example.com/x", absolute},
		{"ftp", "ftp://example.com/file", `scheme "ftp" is not allowed: only http and https`},
		{"file", "file:///etc/passwd", `scheme "file" is not allowed: only http and https`},
		{"gopher", "gopher://127.0.0.1:70/_x", `scheme "gopher" is not allowed: only http and https`},
		{"javascript", "javascript:alert(1)", `scheme "javascript" is not allowed: only http and https`},
		{"ws", "ws://example.com/", `scheme "ws" is not allowed: only http and https`},
		{"host:port without scheme", "localhost:8080", `scheme "localhost" is not allowed: only http and https`},
		{"http opaque", "http:example.com", absolute},
		{"http no host", "http://", noHost},
		{"http no host with path", "http:///path", noHost},
		{"http single slash", "http:/path", noHost},
		{"only a port", "http://:80/", noHost},
		{"userinfo", "http://user:pass@example.com/", creds},
		// Found by FuzzParseURL: IDNA mapped bytes that are never UTF-8 to
		// U+FFFD and punycoded them into a name nobody wrote.
		{"host not UTF-8", "http://\xf7000", `host "\xf7000" is not valid UTF-8`},
		{"escaped host not UTF-8", "http://%F7000/", `host "\xf7000" is not valid UTF-8`},
		{"label not UTF-8", "http://a\xffb.example.com/", `host "a\xffb.example.com" is not valid UTF-8`},
		{"user only", "http://user@example.com/", creds},
		{"empty userinfo", "http://@example.com/", creds},
		{"name then at", "http://example.com@127.0.0.1/", creds},
		{"port 0", "http://example.com:0/", "port 0 is out of range 1-65535"},
		{"port 65536", "http://example.com:65536/", "port 65536 is out of range 1-65535"},
		{"port 70000", "http://example.com:70000/", "port 70000 is out of range 1-65535"},
		{"huge port", "http://example.com:99999999999999999999999/", "port 9999999999999999… is out of range 1-65535"},
		{"negative port", "http://example.com:-1/", `port "-1" is not a number`},
		{"port letters", "http://example.com:abc/", `port "abc" is not a number`},
		{"ipv6 port letters", "http://[::1]:abc/", `port "abc" is not a number`},
		{"zone", "http://[fe80::1%25eth0]/", zone},
		{"zone global", "http://[2606:4700::1%25eth0]/", zone},
		{"ipv4 in brackets", "http://[127.0.0.1]/", "url cannot be parsed: invalid IP-literal"},
		{"unclosed bracket", "http://[::1/", "url cannot be parsed: missing ']' in host"},
		{"space in host", "http://exa mple.com/", `host contains " ", which is not allowed in a host`},
		{"leading space", " http://example.com/", "url has leading or trailing spaces"},
		{"trailing newline", "http://example.com/\n", "url contains a control character"},
		{"tab in host", "http://exa\tmple.com/", "url contains a control character"},
		{"nul in host", "http://example.com\x00.evil/", "url contains a control character"},
		{"del in host", "http://example\x7f.com/", "url contains a control character"},
		{"ascii escape in host", "http://%31%32%37.0.0.1/", `url contains an invalid escape "%31"`},
		{"escaped percent in host", "http://a%25b.com/", `host "a%b.com" contains a %`},
		{"asterisk", "http://a*b.example/", `host "a*b.example" is not a valid domain name`},
		{"exclamation", "http://a!b.example/", `host "a!b.example" is not a valid domain name`},
		{"fullwidth colon", "http://example.com：80/", `host "example.com：80" is not a valid domain name`},
		{"fullwidth solidus", "http://example.com／evil/", `host "example.com／evil" is not a valid domain name`},
		{"invalid punycode", "http://xn--zz.example/", `host "xn--zz.example" is not a valid domain name (…`},
		{"punycode of ascii", "http://xn--abc-.example/", `host "xn--abc-.example" is not a valid domain name (…`},
		{"empty punycode", "http://xn--/", `host "xn--" is not a valid domain name`},
		{"trailing hyphen", "http://a-.example/", `host "a-.example" is not a valid domain name`},
		{"leading hyphen", "http://-a.example/", `host "-a.example" is not a valid domain name`},
		{"empty label", "http://a..example/", `host "a..example" has an empty label`},
		{"two trailing dots", "http://localhost../", `host "localhost.." has an empty label`},
		{"dot only", "http://./", `host "." is not a valid domain name`},
		{"label too long", "http://" + strings.Repeat("a", 64) + ".example/", `host label "aaaaaaaaaaaaaaaa…" is longer than 63 characters`},
		{"host too long", "http://" + longHost(254) + "/", "host is longer than 253 characters"},
		{"raw host very long", "http://" + strings.Repeat("a", 5000) + "/", "host is longer than 253 characters"},
		{"five parts", "http://1.2.3.4.5/", `host "1.2.3.4.5" looks like an IPv4 address but is not a valid one`},
		{"part over 255", "http://256.0.0.1/", `host "256.0.0.1" looks like an IPv4 address but is not a valid one`},
		{"last part over range", "http://127.0.0.256/", `host "127.0.0.256" looks like an IPv4 address but is not a valid one`},
		{"decimal overflow", "http://4294967296/", `host "4294967296" looks like an IPv4 address but is not a valid one`},
		{"short form overflow", "http://127.16777216/", `host "127.16777216" looks like an IPv4 address but is not a valid one`},
		{"bad octal digit", "http://08.0.0.1/", `host "08.0.0.1" looks like an IPv4 address but is not a valid one`},
		{"bad hex digit in middle", "http://0x7g.0.0.1/", `host "0x7g.0.0.1" looks like an IPv4 address but is not a valid one`},
		{"huge hex", "http://0xffffffffffffffffffffffff/", `host "0xffffffffffffffffffffffff" looks like an IPv4 address but is not a valid one`},
		{"name ending in number", "http://example.123/", `host "example.123" looks like an IPv4 address but is not a valid one`},
		{"name ending in hex", "http://example.0x1/", `host "example.0x1" looks like an IPv4 address but is not a valid one`},
		{"fullwidth overflow", "http://２５６．０．０．１/", `host "２５６．０．０．１" looks like an IPv4 address but is not a valid one`},
		{"ideographic five parts", "http://1。2。3。4。5/", `host "1。2。3。4。5" looks like an IPv4 address but is not a valid one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := ParseURL(tt.raw)
			if err == nil {
				t.Fatalf("ParseURL(%q) = %q, want error %q", tt.raw, u, tt.reason)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseURL(%q) error %v is not ErrMalformed", tt.raw, err)
			}
			var ue *URLError
			if !errors.As(err, &ue) {
				t.Fatalf("ParseURL(%q) error %T is not *URLError", tt.raw, err)
			}
			if prefix, ok := strings.CutSuffix(tt.reason, "…"); ok && strings.HasSuffix(prefix, "(") {
				if !strings.HasPrefix(ue.Reason, prefix) {
					t.Errorf("ParseURL(%q) reason = %q, want prefix %q", tt.raw, ue.Reason, prefix)
				}
			} else if ue.Reason != tt.reason {
				t.Errorf("ParseURL(%q) reason = %q, want %q", tt.raw, ue.Reason, tt.reason)
			}
		})
	}
}

func TestParseURLErrorRedacts(t *testing.T) {
	t.Parallel()
	_, err := ParseURL("ftp://alice:s3cret@example.com/x?token=abc#frag")
	if err == nil {
		t.Fatal("ParseURL accepted ftp")
	}
	for _, secret := range []string{"alice", "s3cret", "abc", "frag"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q leaks %q", err, secret)
		}
	}
	want := `egress: invalid url "ftp://xxxxx@example.com/x?token=xxxxx#xxxxx": scheme "ftp" is not allowed: only http and https`
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

// longHost returns a valid host name of exactly n characters.
func longHost(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		label := min(63, n-b.Len())
		b.WriteString(strings.Repeat("a", label))
	}
	s := b.String()
	return s[:n-1] + "b" // never ends in a dot
}
