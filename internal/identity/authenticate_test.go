package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callCtx is an incoming call's context: peer address addr, optional TLS
// state, and the given authorization values.
func callCtx(t *testing.T, addr net.Addr, state *tls.ConnectionState, authorization ...string) context.Context {
	t.Helper()
	p := &peer.Peer{Addr: addr}
	if state != nil {
		p.AuthInfo = credentials.TLSInfo{State: *state}
	}
	ctx := peer.NewContext(t.Context(), p)
	if len(authorization) > 0 {
		md := metadata.MD{}
		for _, v := range authorization {
			md.Append("authorization", v)
		}
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	return ctx
}

func tcpAddr(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }

var remote = tcpAddr("203.0.113.7")

// verified is the TLS state of a handshake that verified leaf.
func verified(leaf *x509.Certificate) *tls.ConnectionState {
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
}

// authenticate runs a.Authenticate and returns the Identity it put in the
// context.
func authenticate(t *testing.T, a *Authenticator, ctx context.Context) (*Identity, error) {
	t.Helper()
	out, err := a.Authenticate(ctx)
	if err != nil {
		if out != nil {
			t.Errorf("Authenticate returned a context with error %v", err)
		}
		return nil, err
	}
	id, ok := FromContext(out)
	if !ok {
		t.Fatal("Authenticate succeeded without an Identity in the context")
	}
	return id, nil
}

// wantSentinel fails t unless err is an *Error wrapping sentinel whose gRPC
// status is UNAUTHENTICATED.
func wantSentinel(t *testing.T, err, sentinel error) {
	t.Helper()
	var e *Error
	switch {
	case !errors.Is(err, sentinel):
		t.Fatalf("err = %v; want %v", err, sentinel)
	case !errors.As(err, &e):
		t.Fatalf("err = %T; want *identity.Error", err)
	case status.Code(err) != codes.Unauthenticated:
		t.Fatalf("status code %v; want UNAUTHENTICATED", status.Code(err))
	}
}

func TestAnonymousModes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode     Anonymous
		addr     net.Addr
		accepted bool
		want     string // in the refusal
	}{
		{AnonymousAlways, remote, true, ""},
		{AnonymousAlways, nil, true, ""},
		{AnonymousLoopback, tcpAddr("127.0.0.1"), true, ""},
		{AnonymousLoopback, tcpAddr("127.200.0.9"), true, ""},
		{AnonymousLoopback, tcpAddr("::1"), true, ""},
		{AnonymousLoopback, fakeAddr("[::ffff:127.0.0.1]:40000"), true, ""},
		{AnonymousLoopback, remote, false, "only from loopback"},
		{AnonymousLoopback, tcpAddr("10.0.0.1"), false, "only from loopback"},
		{AnonymousLoopback, &net.UnixAddr{Name: "/run/fetchd.sock", Net: "unix"}, false, "only from loopback"},
		{AnonymousLoopback, nil, false, "only from loopback"},
		{AnonymousNever, tcpAddr("127.0.0.1"), false, "credentials required"},
		{Anonymous(42), tcpAddr("127.0.0.1"), false, "credentials required"}, // unknown = never
	} {
		a := New(Config{Anonymous: tc.mode})
		id, err := authenticate(t, a, callCtx(t, tc.addr, nil))
		if !tc.accepted {
			wantSentinel(t, err, ErrCredentialsRequired)
			wantRefused(t, err, "", tc.want, "Bearer <token>", "client certificate")
			continue
		}
		if err != nil {
			t.Fatalf("mode %d from %v: %v", tc.mode, tc.addr, err)
		}
		if id.Name != AnonymousName || !id.Anonymous || id.Via != ViaAnonymous {
			t.Fatalf("mode %d from %v: identity %+v; want anonymous", tc.mode, tc.addr, id)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{tcpAddr("127.0.0.1"), true},
		{tcpAddr("127.255.255.254"), true},
		{tcpAddr("::1"), true},
		{fakeAddr("[::ffff:127.0.0.2]:7070"), true}, // IPv4-mapped
		{fakeAddr("[::ffff:10.0.0.1]:7070"), false},
		{fakeAddr("127.0.0.1"), true}, // no port
		{fakeAddr("[::1%lo]:7070"), true},
		{tcpAddr("128.0.0.1"), false},
		{tcpAddr("126.255.255.255"), false},
		{tcpAddr("::2"), false},
		{tcpAddr("::127.0.0.1"), false}, // IPv4-compatible, not mapped
		{tcpAddr("0.0.0.0"), false},
		{fakeAddr("localhost:7070"), false}, // a name is not an address
		{fakeAddr(""), false},
		{&net.UnixAddr{Name: "@fetchd", Net: "unix"}, false},
		{nil, false},
	} {
		if got := isLoopback(tc.addr); got != tc.want {
			t.Errorf("isLoopback(%v) = %v; want %v", tc.addr, got, tc.want)
		}
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// TestTokenRules covers the token rules with a non-loopback peer and
// anonymous calls accepted, so a credential that were ignored would show up
// as an anonymous identity.
func TestTokenRules(t *testing.T) {
	t.Parallel()
	const tok, shared = "tok-a-0123456789", "tok-shared-0123456789"
	a := New(Config{
		Callers: []Caller{
			{Name: "a", Tokens: [][32]byte{HashToken(tok), HashToken(shared)}},
			{Name: "b", Tokens: [][32]byte{HashToken(shared)}},
		},
		Anonymous: AnonymousAlways,
	})
	id, err := authenticate(t, a, callCtx(t, remote, nil, "Bearer "+tok))
	if err != nil || id.Name != "a" || id.Anonymous || id.Via != ViaToken {
		t.Fatalf("got %+v, %v; want caller a via token", id, err)
	}
	for _, tc := range []struct {
		auth     []string
		sentinel error
	}{
		{[]string{"Bearer nope"}, ErrUnknownToken},
		{[]string{"Basic " + tok}, ErrMalformedAuthorization},
		{[]string{"Bearer "}, ErrMalformedAuthorization},
		{[]string{"Bearer"}, ErrMalformedAuthorization},
		{[]string{""}, ErrMalformedAuthorization},
		{[]string{"Bearer " + tok + " extra"}, ErrMalformedAuthorization},
		{[]string{"Bearer " + tok + "\t"}, ErrMalformedAuthorization},
		{[]string{"Bearer " + tok, "Bearer " + tok}, ErrMalformedAuthorization},
		{[]string{"Bearer " + shared}, ErrAmbiguous},
	} {
		_, err := authenticate(t, a, callCtx(t, remote, nil, tc.auth...))
		wantSentinel(t, err, tc.sentinel)
		wantRefused(t, err, tok)
		wantRefused(t, err, shared)
	}
}

// TestCertificateRules covers certificate matching with hand-built TLS
// states (the handshake itself is exercised in TestClientCertificate).
func TestCertificateRules(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "unit CA")
	leaf := func(spec leafSpec) *x509.Certificate { c := ca.issue(t, spec); return c.Leaf }
	a := New(Config{
		Callers: []Caller{
			{Name: "uri", Certificates: []CertMatch{{URI: "spiffe://example.org/uri"}}},
			{Name: "dns", Certificates: []CertMatch{{DNS: "dns.example"}, {DNS: "alt.example"}}},
			{Name: "cn", Certificates: []CertMatch{{CommonName: "cn-caller"}}},
			{Name: "both", Certificates: []CertMatch{{URI: "spiffe://example.org/both", CommonName: "both"}}},
			{Name: "empty", Certificates: []CertMatch{{}}},
			// "overlap" claims a CN that "uri"'s certificate below also has.
			{Name: "overlap", Certificates: []CertMatch{{CommonName: "shared-cn"}}},
		},
		Anonymous: AnonymousAlways,
	})
	for _, tc := range []struct {
		desc string
		cert *x509.Certificate
		want string
	}{
		{"URI SAN", leaf(leafSpec{uris: []string{"spiffe://example.org/uri"}}), "uri"},
		{"DNS SAN in upper case", leaf(leafSpec{dns: []string{"other.example", "DNS.EXAMPLE"}}), "dns"},
		{"second DNS match of one caller", leaf(leafSpec{dns: []string{"dns.example", "alt.example"}}), "dns"},
		{"common name", leaf(leafSpec{cn: "cn-caller"}), "cn"},
		{"all fields of a multi-field match", leaf(leafSpec{cn: "both", uris: []string{"spiffe://example.org/both"}}), "both"},
	} {
		id, err := authenticate(t, a, callCtx(t, remote, verified(tc.cert)))
		if err != nil || id.Name != tc.want || id.Via != ViaCertificate {
			t.Errorf("%s: got %+v, %v; want %q via certificate", tc.desc, id, err, tc.want)
		}
	}
	for _, tc := range []struct {
		desc     string
		state    *tls.ConnectionState
		sentinel error
	}{
		{"URI differs in case", verified(leaf(leafSpec{uris: []string{"spiffe://example.org/URI"}})), ErrUnknownCertificate},
		{"URI with a suffix", verified(leaf(leafSpec{uris: []string{"spiffe://example.org/uri/x"}})), ErrUnknownCertificate},
		{"common name differs in case", verified(leaf(leafSpec{cn: "CN-caller"})), ErrUnknownCertificate},
		{"DNS name as common name", verified(leaf(leafSpec{cn: "dns.example"})), ErrUnknownCertificate},
		{"only one field of a multi-field match", verified(leaf(leafSpec{uris: []string{"spiffe://example.org/both"}})), ErrUnknownCertificate},
		{"certificate with no names (empty match)", verified(leaf(leafSpec{})), ErrUnknownCertificate},
		{"two callers", verified(leaf(leafSpec{cn: "shared-cn", uris: []string{"spiffe://example.org/uri"}})), ErrAmbiguous},
		{"presented, not verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf(leafSpec{cn: "cn-caller"})}}, ErrUnverifiedCertificate},
	} {
		_, err := authenticate(t, a, callCtx(t, remote, tc.state))
		if !errors.Is(err, tc.sentinel) {
			t.Errorf("%s: err = %v; want %v", tc.desc, err, tc.sentinel)
			continue
		}
		wantSentinel(t, err, tc.sentinel)
	}
}

func TestUnknownCertificateMessageIsShort(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "unit CA")
	long := make([]byte, 500)
	for i := range long {
		long[i] = 'x'
	}
	c := ca.issue(t, leafSpec{
		cn:   string(long),
		dns:  []string{"a.example", "b.example", "c.example", "d.example", "e.example"},
		uris: []string{"spiffe://example.org/one"},
	})
	_, err := authenticate(t, New(Config{}), callCtx(t, remote, verified(c.Leaf)))
	wantSentinel(t, err, ErrUnknownCertificate)
	msg := err.Error()
	wantRefused(t, err, "d.example", "not a known caller", "a.example", "c.example", "and 2 more", "spiffe://example.org/one")
	if len(msg) > 400 {
		t.Fatalf("message is %d bytes; want a short one: %s", len(msg), msg)
	}
}

func TestTokenAndCertificate(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "unit CA")
	const tokA, tokB = "token-of-a-000000", "token-of-b-000000"
	a := New(Config{
		Callers: []Caller{
			{Name: "a", Tokens: [][32]byte{HashToken(tokA)}, Certificates: []CertMatch{{CommonName: "a"}}},
			{Name: "b", Tokens: [][32]byte{HashToken(tokB)}},
		},
		Anonymous: AnonymousAlways,
	})
	certA, certX := ca.issue(t, leafSpec{cn: "a"}), ca.issue(t, leafSpec{cn: "x"})

	id, err := authenticate(t, a, callCtx(t, remote, verified(certA.Leaf), "Bearer "+tokA))
	if err != nil || id.Name != "a" || id.Via != ViaCertificate {
		t.Fatalf("token and certificate of a: got %+v, %v", id, err)
	}
	_, err = authenticate(t, a, callCtx(t, remote, verified(certA.Leaf), "Bearer "+tokB))
	wantSentinel(t, err, ErrMismatch)
	wantRefused(t, err, tokB)
	_, err = authenticate(t, a, callCtx(t, remote, verified(certA.Leaf), "Basic xyz"))
	wantSentinel(t, err, ErrMalformedAuthorization)
	_, err = authenticate(t, a, callCtx(t, remote, verified(certX.Leaf), "Bearer "+tokA))
	wantSentinel(t, err, ErrUnknownCertificate)
	_, err = authenticate(t, a, callCtx(t, remote, verified(certA.Leaf), "Bearer unknown"))
	wantSentinel(t, err, ErrUnknownToken)
}

// TestNonTLSAuthInfoIsNoCertificate: a transport without TLS carries no
// certificate; the call is judged by its token alone.
func TestNonTLSAuthInfoIsNoCertificate(t *testing.T) {
	t.Parallel()
	a := New(Config{Callers: []Caller{{Name: "a", Tokens: [][32]byte{HashToken("t-000000000")}}}})
	ctx := peer.NewContext(t.Context(), &peer.Peer{Addr: remote, AuthInfo: otherAuthInfo{}})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer t-000000000"))
	id, err := authenticate(t, a, ctx)
	if err != nil || id.Name != "a" || id.Via != ViaToken {
		t.Fatalf("got %+v, %v; want a via token", id, err)
	}
	if _, err := a.Authenticate(peer.NewContext(t.Context(), &peer.Peer{Addr: remote, AuthInfo: otherAuthInfo{}})); !errors.Is(err, ErrCredentialsRequired) {
		t.Fatalf("no credentials: err = %v; want ErrCredentialsRequired", err)
	}
}

type otherAuthInfo struct{}

func (otherAuthInfo) AuthType() string { return "other" }

func TestErrorStatus(t *testing.T) {
	t.Parallel()
	err := error(refuse(ErrUnknownToken, "unknown bearer token: x"))
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated || st.Message() != "unknown bearer token: x" {
		t.Fatalf("status = %v, %v; want UNAUTHENTICATED with the message", st, ok)
	}
	if !errors.Is(err, ErrUnknownToken) || errors.Is(err, ErrUnknownCertificate) {
		t.Fatal("errors.Is does not tell the sentinels apart")
	}
}
