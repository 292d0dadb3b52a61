package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeResolver answers from a map and records every name it is asked.
type fakeResolver struct {
	addrs map[string][]string
	errs  map[string]error

	mu    sync.Mutex
	asked []string
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	r.asked = append(r.asked, network+" "+host)
	r.mu.Unlock()
	if err, ok := r.errs[host]; ok {
		return nil, err
	}
	ss, ok := r.addrs[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.0.0.53:53", IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func (r *fakeResolver) questions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{
		addrs: map[string][]string{
			"public.example":   {"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"},
			"mixed.example":    {"93.184.215.14", "10.0.0.5"},
			"mapped.example":   {"::ffff:127.0.0.1"},
			"metadata.example": {"169.254.169.254"},
			"localhost":        {"127.0.0.1", "::1"},
			"dup.example":      {"1.1.1.1", "1.1.1.1", "2606:4700:4700::1111"},
			"empty.example":    {},
			"v6only.example":   {"::1"},
			"loop4.example":    {"127.0.0.1"},
		},
		errs: map[string]error{
			"servfail.example": &net.DNSError{Err: "server misbehaving", Name: "servfail.example", Server: "10.0.0.53:53", IsTemporary: true},
		},
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		allow []string
		host  string
		want  []string // allowed addresses, in order
		asked string   // the name the resolver was asked; "" means no lookup
	}{
		{"public only", nil, "public.example", []string{"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"}, "public.example"},
		{"duplicates removed", nil, "dup.example", []string{"1.1.1.1", "2606:4700:4700::1111"}, "dup.example"},
		{"case and trailing dot normalised", nil, "PUBLIC.example.", []string{"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"}, "public.example"},
		{"public literal", nil, "8.8.8.8", []string{"8.8.8.8"}, ""},
		{"public v6 literal", nil, "2606:4700:4700::1111", []string{"2606:4700:4700::1111"}, ""},
		{"bracketed v6 literal", nil, "[2606:4700:4700::1111]", []string{"2606:4700:4700::1111"}, ""},
		{"allowed loopback name", []string{"127.0.0.0/8"}, "loop4.example", []string{"127.0.0.1"}, "loop4.example"},
		{"allowed mapped loopback", []string{"127.0.0.0/8"}, "mapped.example", []string{"::ffff:127.0.0.1"}, "mapped.example"},
		{"allowed numeric spelling", []string{"127.0.0.0/8"}, "2130706433", []string{"127.0.0.1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newFakeResolver()
			g := New(WithResolver(r), WithAllow(prefixes(t, tt.allow)...))
			got, err := g.Resolve(t.Context(), tt.host)
			if err != nil {
				t.Fatalf("Resolve(%q) error: %v", tt.host, err)
			}
			if !slices.Equal(addrStrings(got), tt.want) {
				t.Errorf("Resolve(%q) = %v, want %v", tt.host, got, tt.want)
			}
			checkAsked(t, r, tt.asked)
		})
	}
}

func TestResolveDenied(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		allow  []string
		host   string
		dHost  string // DeniedError.Host
		addr   string // DeniedError.Addr
		reason string
		asked  string
	}{
		{"public and private", nil, "mixed.example", "mixed.example", "10.0.0.5", private, "mixed.example"},
		{"mapped loopback", nil, "mapped.example", "mapped.example", "::ffff:127.0.0.1", loopback + mapped, "mapped.example"},
		{"metadata", nil, "metadata.example", "metadata.example", "169.254.169.254", metadata, "metadata.example"},
		{"localhost", nil, "localhost", "localhost", "127.0.0.1", loopback, "localhost"},
		{"localhost trailing dot", nil, "localhost.", "localhost", "127.0.0.1", loopback, "localhost"},
		{"circled localhost", nil, "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ", "localhost", "127.0.0.1", loopback, "localhost"},
		{"localhost, v4 allowed but not v6", []string{"127.0.0.0/8"}, "localhost", "localhost", "::1", loopback, "localhost"},
		{"v6 loopback name", nil, "v6only.example", "v6only.example", "::1", loopback, "v6only.example"},
		{"loopback literal", nil, "127.0.0.1", "127.0.0.1", "127.0.0.1", loopback, ""},
		{"decimal literal", nil, "2130706433", "127.0.0.1", "127.0.0.1", loopback, ""},
		{"fullwidth literal", nil, "１２７．０．０．１", "127.0.0.1", "127.0.0.1", loopback, ""},
		{"v6 loopback literal", nil, "::1", "::1", "::1", loopback, ""},
		{"bracketed v6 literal", nil, "[::1]", "::1", "::1", loopback, ""},
		{"mapped literal", nil, "::ffff:169.254.169.254", "::ffff:169.254.169.254", "::ffff:169.254.169.254", metadata + mapped, ""},
		{"zoned link-local literal", nil, "fe80::1%eth0", "fe80::1%eth0", "fe80::1%eth0", linkLocal, ""},
		{"metadata v6 literal", nil, "fd00:ec2::254", "fd00:ec2::254", "fd00:ec2::254", metadata, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newFakeResolver()
			g := New(WithResolver(r), WithAllow(prefixes(t, tt.allow)...))
			got, err := g.Resolve(t.Context(), tt.host)
			if err == nil {
				t.Fatalf("Resolve(%q) = %v, want refused", tt.host, got)
			}
			if !errors.Is(err, ErrDenied) {
				t.Errorf("Resolve(%q) error %v is not ErrDenied", tt.host, err)
			}
			var de *DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("Resolve(%q) error %T is not *DeniedError", tt.host, err)
			}
			if de.Host != tt.dHost || de.Addr != netip.MustParseAddr(tt.addr) || de.Reason != tt.reason {
				t.Errorf("Resolve(%q) = %+v, want {Host:%s Addr:%s Reason:%q}", tt.host, de, tt.dHost, tt.addr, tt.reason)
			}
			checkAsked(t, r, tt.asked)
		})
	}
}

func TestResolveDNSFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host    string
		message string
	}{
		{"missing.example", `egress: cannot resolve "missing.example": no such host`},
		{"servfail.example", `egress: cannot resolve "servfail.example": server misbehaving`},
		{"empty.example", `egress: cannot resolve "empty.example": no addresses`},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			t.Parallel()
			g := New(WithResolver(newFakeResolver()))
			_, err := g.Resolve(t.Context(), tt.host)
			if !IsDNSError(err) {
				t.Fatalf("Resolve(%q) error %v: IsDNSError = false", tt.host, err)
			}
			if errors.Is(err, ErrDenied) || errors.Is(err, ErrMalformed) {
				t.Errorf("Resolve(%q) error %v is also ErrDenied or ErrMalformed", tt.host, err)
			}
			if err.Error() != tt.message {
				t.Errorf("Resolve(%q) error = %q, want %q", tt.host, err, tt.message)
			}
			if strings.Contains(err.Error(), "10.0.0.53") {
				t.Errorf("error %q names the DNS server", err)
			}
		})
	}
}

func TestResolveDNSErrorCarriesContext(t *testing.T) {
	t.Parallel()
	r := newFakeResolver()
	r.errs["slow.example"] = errors.New("read udp: i/o timeout")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := New(WithResolver(r)).Resolve(ctx, "slow.example")
	if !IsDNSError(err) || !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with cancelled context = %v; want a DNS error that is context.Canceled", err)
	}
}

func TestResolveMalformed(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"", "a*b.example", "1.2.3.4.5", "example.123", "a..b", "::1::2", "[127.0.0.1]", "xn--zz"} {
		t.Run(host, func(t *testing.T) {
			t.Parallel()
			r := newFakeResolver()
			_, err := New(WithResolver(r)).Resolve(t.Context(), host)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Resolve(%q) = %v, want ErrMalformed", host, err)
			}
			checkAsked(t, r, "")
		})
	}
}

func TestIsDNSError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("x"), false},
		{ErrDenied, false},
		{&DNSError{Host: "h", Err: errNoAddresses}, true},
		{&net.DNSError{Err: "no such host"}, true},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host"}}, true},
	}
	for _, tt := range tests {
		if got := IsDNSError(tt.err); got != tt.want {
			t.Errorf("IsDNSError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func checkAsked(t *testing.T, r *fakeResolver, name string) {
	t.Helper()
	var want []string
	if name != "" {
		want = []string{"ip " + name}
	}
	if got := r.questions(); !slices.Equal(got, want) {
		t.Errorf("resolver asked %q, want %q", got, want)
	}
}

func prefixes(t *testing.T, ss []string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func addrStrings(as []netip.Addr) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

// TestParseThenResolve runs the pipeline the outbound client runs: every
// spelling of loopback in a URL ends as a refusal naming the loopback
// address, never as a name handed to the resolver unnormalised.
func TestParseThenResolve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw   string
		addr  string
		asked string
	}{
		{"http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", "127.0.0.1", "localhost"},
		{"http://LOCALHOST./", "127.0.0.1", "localhost"},
		{"http://１２７．０．０．１/", "127.0.0.1", ""},
		{"http://127。0。0。1/", "127.0.0.1", ""},
		{"http://0x7f.1/", "127.0.0.1", ""},
		{"http://2130706433/", "127.0.0.1", ""},
		{"http://0177.0.0.1/", "127.0.0.1", ""},
		{"http://[::ffff:7f00:1]/", "::ffff:127.0.0.1", ""},
		{"http://[::1]:8080/", "::1", ""},
		{"http://127.0.0.1#@example.com", "127.0.0.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			t.Parallel()
			u, err := ParseURL(tt.raw)
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.raw, err)
			}
			r := newFakeResolver()
			_, err = New(WithResolver(r)).Resolve(t.Context(), u.Hostname())
			var de *DeniedError
			if !errors.As(err, &de) || de.Addr != netip.MustParseAddr(tt.addr) || !strings.HasPrefix(de.Reason, loopback) {
				t.Errorf("Resolve(%q) from %q = %v, want loopback %s refused", u.Hostname(), tt.raw, err, tt.addr)
			}
			checkAsked(t, r, tt.asked)
		})
	}
}

// TestDeniedErrorHidesResolvedAddress: the text reaches callers, so a denied
// name must not reveal what it resolved to.
func TestDeniedErrorHidesResolvedAddress(t *testing.T) {
	t.Parallel()
	g := New(WithResolver(newFakeResolver()))
	_, err := g.Resolve(t.Context(), "mixed.example")
	var de *DeniedError
	if !errors.As(err, &de) || de.Addr != netip.MustParseAddr("10.0.0.5") {
		t.Fatalf("err = %v, want a DeniedError for 10.0.0.5", err)
	}
	if msg := err.Error(); strings.Contains(msg, "10.0.0.5") || !strings.Contains(msg, "mixed.example") || !strings.Contains(msg, de.Reason) {
		t.Fatalf("message %q must name the host and reason but not the resolved address", msg)
	}
}
