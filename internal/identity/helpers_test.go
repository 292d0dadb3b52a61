package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
)

// whoami is a FetchService whose Fetch answers with the Identity it ran as:
// the name in Body and Via in a "via" header.
type whoami struct {
	fetchdv1.UnimplementedFetchServiceServer
	calls atomic.Int64
}

func (s *whoami) Fetch(ctx context.Context, _ *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	s.calls.Add(1)
	id, ok := FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "handler ran without an identity")
	}
	return &fetchdv1.FetchResponse{
		Status:  200,
		Body:    []byte(id.Name),
		Headers: []*fetchdv1.Header{{Name: "via", Value: id.Via}},
	}, nil
}

// startServer runs a real gRPC server on 127.0.0.1:0 with a's interceptors,
// the whoami FetchService, the health service and reflection. creds nil
// means plaintext.
func startServer(t *testing.T, a *Authenticator, creds credentials.TransportCredentials) (string, *whoami) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	svc := &whoami{}
	fetchdv1.RegisterFetchServiceServer(s, svc)
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String(), svc
}

// dial returns a client connection to addr; creds nil means plaintext.
func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// fetchAs calls Fetch with the given authorization values (none: no
// metadata) and returns the name and Via the server ran the call as.
func fetchAs(t *testing.T, cc *grpc.ClientConn, authorization ...string) (name, via string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, v := range authorization {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
	}
	resp, err := fetchdv1.NewFetchServiceClient(cc).Fetch(ctx, &fetchdv1.FetchRequest{Url: "https://api.example.com/"})
	if err != nil {
		return "", "", err
	}
	for _, h := range resp.GetHeaders() {
		if h.GetName() == "via" {
			via = h.GetValue()
		}
	}
	return string(resp.GetBody()), via, nil
}

// wantRefused fails t unless err is UNAUTHENTICATED, its message mentions
// every string in want, and it does not contain secret.
func wantRefused(t *testing.T, err error, secret string, want ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	switch {
	case err == nil:
		t.Fatal("call succeeded; want UNAUTHENTICATED")
	case !ok || st.Code() != codes.Unauthenticated:
		t.Fatalf("err = %v; want UNAUTHENTICATED", err)
	case secret != "" && containsFoldStr(st.Message(), secret):
		t.Fatalf("message %q contains the secret %q", st.Message(), secret)
	}
	for _, w := range want {
		if !containsFoldStr(st.Message(), w) {
			t.Errorf("message %q does not mention %q", st.Message(), w)
		}
	}
}

// containsFoldStr reports whether sub occurs in s, ignoring case.
func containsFoldStr(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func patterns(t *testing.T, ss ...string) []egress.HostPattern {
	t.Helper()
	ps := make([]egress.HostPattern, 0, len(ss))
	for _, s := range ss {
		p, err := egress.ParseHostPattern(s)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// testCA is an in-test certificate authority (ECDSA P-256).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leafSpec names a leaf certificate's identities.
type leafSpec struct {
	cn   string
	uris []string
	dns  []string
	ips  []net.IP
}

// issue returns a leaf certificate signed by ca, usable for both client and
// server authentication.
func (ca *testCA) issue(t *testing.T, spec leafSpec) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: spec.cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:     spec.dns,
		IPAddresses:  spec.ips,
	}
	for _, s := range spec.uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// serverTLS is the server side of mTLS as fetchd runs it: client
// certificates are optional, and verified against ca when given.
func serverTLS(t *testing.T, ca *testCA) credentials.TransportCredentials {
	t.Helper()
	cert := ca.issue(t, leafSpec{cn: "fetchd", ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.pool,
		MinVersion:   tls.VersionTLS12,
	})
}

// clientTLS trusts serverCA and, when cert is non-nil, always presents it,
// even when the server's acceptable CAs do not include its issuer (so a
// certificate from another CA really reaches the server).
func clientTLS(serverCA *testCA, cert *tls.Certificate) credentials.TransportCredentials {
	cfg := &tls.Config{RootCAs: serverCA.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return credentials.NewTLS(cfg)
}
