package identity

import (
	"context"
	"crypto/tls"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

func TestServiceNameMatchesGeneratedCode(t *testing.T) {
	t.Parallel()
	if got := fetchdv1.FetchService_ServiceDesc.ServiceName; got != ServiceName {
		t.Fatalf("generated service name %q, identity.ServiceName %q", got, ServiceName)
	}
}

// TestBearerToken runs token calls through a real server: a valid token
// names its caller, and every bad form is UNAUTHENTICATED without echoing
// what was sent.
func TestBearerToken(t *testing.T) {
	t.Parallel()
	const (
		alice = "alice-token-ZmV0Y2hkLXRlc3Q"
		bob   = "bob-token-c2Vjb25kLWNhbGxlcg"
		wrong = "wrong-token-bm90LWEtY2FsbGVy"
	)
	a := New(Config{
		Callers: []Caller{
			{Name: "alice", Tokens: [][32]byte{HashToken(alice)}},
			{Name: "bob", Tokens: [][32]byte{HashToken(bob)}},
		},
		Anonymous: AnonymousNever,
	})
	addr, svc := startServer(t, a, nil)
	cc := dial(t, addr, nil)

	for _, tc := range []struct {
		auth string
		name string
	}{
		{"Bearer " + alice, "alice"},
		{"bearer " + alice, "alice"}, // the scheme is case-insensitive
		{"BEARER " + bob, "bob"},
	} {
		name, via, err := fetchAs(t, cc, tc.auth)
		if err != nil || name != tc.name || via != ViaToken {
			t.Errorf("%.6s...: ran as (%q, %q), err %v; want (%q, %q)", tc.auth, name, via, err, tc.name, ViaToken)
		}
	}

	refused := []struct {
		desc   string
		auth   []string
		secret string
		want   string
	}{
		{"unknown token", []string{"Bearer " + wrong}, wrong, "unknown bearer token"},
		{"other scheme", []string{"Basic " + alice}, alice, "Bearer <token>"},
		{"token without scheme", []string{alice}, alice, "Bearer <token>"},
		{"empty token", []string{"Bearer "}, "", "Bearer <token>"},
		{"scheme only", []string{"Bearer"}, "", "Bearer <token>"},
		{"space in token", []string{"Bearer  " + alice}, alice, "Bearer <token>"},
		{"two values", []string{"Bearer " + alice, "Bearer " + bob}, alice, "one authorization"},
		{"two equal values", []string{"Bearer " + alice, "Bearer " + alice}, alice, "one authorization"},
		{"no credentials", nil, "", "credentials required"},
	}
	for _, tc := range refused {
		t.Run(tc.desc, func(t *testing.T) {
			_, _, err := fetchAs(t, cc, tc.auth...)
			wantRefused(t, err, tc.secret, tc.want)
		})
	}
	if n := svc.calls.Load(); n != 3 {
		t.Errorf("handler ran %d times; want 3 (refused calls must not reach it)", n)
	}
}

// TestClientCertificate runs mTLS calls through a real TLS server that
// verifies optional client certificates against an in-test CA.
func TestClientCertificate(t *testing.T) {
	t.Parallel()
	const (
		checkoutToken = "checkout-token-0123456789abcdef"
		billingToken  = "billing-token-fedcba9876543210"
	)
	ca := newCA(t, "fetchd test CA")
	a := New(Config{
		Callers: []Caller{
			{Name: "checkout", Tokens: [][32]byte{HashToken(checkoutToken)},
				Certificates: []CertMatch{{URI: "spiffe://example.org/checkout"}}},
			{Name: "billing", Tokens: [][32]byte{HashToken(billingToken)},
				Certificates: []CertMatch{{DNS: "billing.internal.example"}}},
			{Name: "reports", Certificates: []CertMatch{{CommonName: "reports"}}},
		},
		// Anonymous calls are accepted, so a certificate that were silently
		// ignored would show up as a successful anonymous call.
		Anonymous: AnonymousAlways,
	})
	addr, svc := startServer(t, a, serverTLS(t, ca))

	checkout := ca.issue(t, leafSpec{cn: "ignored", uris: []string{"spiffe://example.org/checkout"}})
	billing := ca.issue(t, leafSpec{cn: "ignored", dns: []string{"Billing.Internal.Example"}})
	reports := ca.issue(t, leafSpec{cn: "reports"})
	stranger := ca.issue(t, leafSpec{cn: "stranger", uris: []string{"spiffe://example.org/stranger"}})

	accepted := []struct {
		desc string
		cert *tls.Certificate
		auth []string
		name string
		via  string
	}{
		{"URI SAN", &checkout, nil, "checkout", ViaCertificate},
		{"DNS SAN, other case", &billing, nil, "billing", ViaCertificate},
		{"common name", &reports, nil, "reports", ViaCertificate},
		{"certificate and token of one caller", &checkout, []string{"Bearer " + checkoutToken}, "checkout", ViaCertificate},
		{"token over TLS", nil, []string{"Bearer " + billingToken}, "billing", ViaToken},
		{"no credentials over TLS", nil, nil, AnonymousName, ViaAnonymous},
	}
	for _, tc := range accepted {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			cc := dial(t, addr, clientTLS(ca, tc.cert))
			name, via, err := fetchAs(t, cc, tc.auth...)
			if err != nil || name != tc.name || via != tc.via {
				t.Fatalf("ran as (%q, %q), err %v; want (%q, %q)", name, via, err, tc.name, tc.via)
			}
		})
	}

	refused := []struct {
		desc   string
		cert   *tls.Certificate
		auth   []string
		secret string
		want   []string
	}{
		{"verified but unknown certificate", &stranger, nil, "",
			[]string{"not a known caller", `CN="stranger"`, "spiffe://example.org/stranger"}},
		{"certificate and token of different callers", &checkout, []string{"Bearer " + billingToken}, billingToken,
			[]string{"different callers"}},
		{"good certificate, unknown token", &checkout, []string{"Bearer not-a-token-xyz"}, "not-a-token-xyz",
			[]string{"unknown bearer token"}},
		{"good token, unknown certificate", &stranger, []string{"Bearer " + checkoutToken}, checkoutToken,
			[]string{"not a known caller"}},
	}
	for _, tc := range refused {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			cc := dial(t, addr, clientTLS(ca, tc.cert))
			_, _, err := fetchAs(t, cc, tc.auth...)
			wantRefused(t, err, tc.secret, tc.want...)
		})
	}

	t.Run("certificate from another CA", func(t *testing.T) {
		t.Parallel()
		other := newCA(t, "someone else's CA")
		forged := other.issue(t, leafSpec{cn: "reports", uris: []string{"spiffe://example.org/checkout"}})
		cc := dial(t, addr, clientTLS(ca, &forged))
		name, _, err := fetchAs(t, cc)
		if err == nil {
			t.Fatalf("call with a certificate from another CA ran as %q; want it refused", name)
		}
		// The server's handshake refuses the chain; the client sees the
		// connection fail.
		if code := status.Code(err); code != codes.Unavailable {
			t.Fatalf("err = %v; want UNAVAILABLE from the failed handshake", err)
		}
	})

	t.Cleanup(func() {
		// Only the accepted calls reach the handler.
		if n := svc.calls.Load(); n != int64(len(accepted)) {
			t.Errorf("handler ran %d times; want %d", n, len(accepted))
		}
	})
}

// TestAnonymousFromLoopback: with AnonymousLoopback, a plaintext client on
// 127.0.0.1 runs as anonymous.
func TestAnonymousFromLoopback(t *testing.T) {
	t.Parallel()
	a := New(Config{Anonymous: AnonymousLoopback})
	addr, _ := startServer(t, a, nil)
	name, via, err := fetchAs(t, dial(t, addr, nil))
	if err != nil || name != AnonymousName || via != ViaAnonymous {
		t.Fatalf("ran as (%q, %q), err %v; want (%q, %q)", name, via, err, AnonymousName, ViaAnonymous)
	}
}

// TestHealthAndReflectionNeedNoCredentials: with anonymous calls refused,
// Fetch is UNAUTHENTICATED while health checks and a reflection stream work
// without credentials.
func TestHealthAndReflectionNeedNoCredentials(t *testing.T) {
	t.Parallel()
	a := New(Config{Anonymous: AnonymousNever})
	addr, _ := startServer(t, a, nil)
	cc := dial(t, addr, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	_, _, err := fetchAs(t, cc)
	wantRefused(t, err, "", "credentials required")

	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Check = %v, %v; want SERVING", resp.GetStatus(), err)
	}

	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	}); err != nil {
		t.Fatal(err)
	}
	reply, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection stream: %v", err)
	}
	var names []string
	for _, s := range reply.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, ServiceName) {
		t.Fatalf("reflection listed %v; want %s among them", names, ServiceName)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateSwapsCallers: after Update, the old token is refused and the new
// one accepted on the same connection.
func TestUpdateSwapsCallers(t *testing.T) {
	t.Parallel()
	const oldToken, newToken = "old-token-aaaaaaaaaaaaaaaa", "new-token-bbbbbbbbbbbbbbbb"
	a := New(Config{Callers: []Caller{{Name: "svc", Tokens: [][32]byte{HashToken(oldToken)}}}})
	addr, _ := startServer(t, a, nil)
	cc := dial(t, addr, nil)

	if name, _, err := fetchAs(t, cc, "Bearer "+oldToken); err != nil || name != "svc" {
		t.Fatalf("before Update: ran as %q, err %v; want svc", name, err)
	}
	_, _, err := fetchAs(t, cc, "Bearer "+newToken)
	wantRefused(t, err, newToken, "unknown bearer token")

	a.Update(Config{Callers: []Caller{{Name: "svc2", Tokens: [][32]byte{HashToken(newToken)}}}})

	_, _, err = fetchAs(t, cc, "Bearer "+oldToken)
	wantRefused(t, err, oldToken, "unknown bearer token")
	if name, _, err := fetchAs(t, cc, "Bearer "+newToken); err != nil || name != "svc2" {
		t.Fatalf("after Update: ran as %q, err %v; want svc2", name, err)
	}
}
