package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/policy"
)

// writePolicy writes a policy file into a temporary directory.
func writePolicy(t testing.TB, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceFile swaps path's content the way editors and ConfigMaps do: a new
// file renamed over the old one.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startWithPolicy runs a real fetchd on 127.0.0.1:0 under the policy file
// at path (its egress allow list, not the command line's), and returns it
// with a plaintext gRPC connection.
func startWithPolicy(t *testing.T, path string, edit func(*Main)) (*Main, *grpc.ClientConn) {
	t.Helper()
	return startWith(t, true, func(m *Main) {
		m.Config = path
		m.AllowCIDRs = nil
		if edit != nil {
			edit(m)
		}
	})
}

func bearer(t testing.TB, token string) context.Context {
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("err = %v, want %v containing %q", err, code, msg)
	}
}

func hashLine(token string) string {
	return identity.FormatTokenHash(identity.HashToken(token))
}

// TestCallersAuthenticateThroughTheServer: with a policy file that names
// callers and refuses anonymous calls, a call needs a known token; the
// caller's allowance and scope apply; health needs no credentials.
func TestCallersAuthenticateThroughTheServer(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer up.Close()
	path := writePolicy(t, fmt.Sprintf(`
version: 1
egress: {allow_cidrs: [127.0.0.0/8]}
callers:
  - name: checkout
    tokens: [%q]
  - name: search
    tokens: [%q]
    allow_targets: ["*.example.com"]
`, hashLine("checkout-token"), hashLine("search-token")))
	_, conn := startWithPolicy(t, path, nil)
	client := fetchdv1.NewFetchServiceClient(conn)
	req := &fetchdv1.FetchRequest{Url: up.URL}

	_, err := client.Fetch(t.Context(), req)
	wantCode(t, err, codes.Unauthenticated, "credentials required")
	_, err = client.Fetch(bearer(t, "wrong-token"), req)
	wantCode(t, err, codes.Unauthenticated, "unknown bearer token")
	if strings.Contains(status.Convert(err).Message(), "wrong-token") {
		t.Fatal("the message echoes the token")
	}

	resp, err := client.Fetch(bearer(t, "checkout-token"), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPolicy().GetCaller() != "checkout" || string(resp.GetBody()) != "ok" {
		t.Fatalf("caller %q body %q", resp.GetPolicy().GetCaller(), resp.GetBody())
	}
	_, err = client.Fetch(bearer(t, "search-token"), req)
	wantCode(t, err, codes.PermissionDenied, `"search" may not reach 127.0.0.1`)

	h, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without credentials = %v, %v", h, err)
	}
}

// TestEmbeddedPolicyAcceptsAnonymousLoopback: the zero-config quick start
// keeps working: no file, no credentials, a call from loopback.
func TestEmbeddedPolicyAcceptsAnonymousLoopback(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer up.Close()
	m, conn := startMain(t)
	defer m.Close()
	resp, err := fetchdv1.NewFetchServiceClient(conn).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPolicy().GetCaller() != identity.AnonymousName {
		t.Fatalf("caller = %q", resp.GetPolicy().GetCaller())
	}
}

// TestMutualTLSCaller: a caller identified by its client certificate's URI
// SAN, over fetchd's TLS listener.
func TestMutualTLSCaller(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer up.Close()
	pki := newPKI(t)
	path := writePolicy(t, `
version: 1
egress: {allow_cidrs: [127.0.0.0/8]}
callers:
  - name: ledger
    certificates: [{uri: "spiffe://example.test/ledger"}]
`)
	m, _ := startWithPolicy(t, path, func(m *Main) {
		m.TLSCert, m.TLSKey, m.TLSClientCA = pki.serverCert, pki.serverKey, pki.caFile
	})
	dial := func(cert *tls.Certificate) fetchdv1.FetchServiceClient {
		cfg := &tls.Config{RootCAs: pki.pool, ServerName: "localhost"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return fetchdv1.NewFetchServiceClient(conn)
	}
	resp, err := dial(pki.client("spiffe://example.test/ledger")).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPolicy().GetCaller() != "ledger" {
		t.Fatalf("caller = %q, want ledger", resp.GetPolicy().GetCaller())
	}
	_, err = dial(pki.client("spiffe://example.test/intruder")).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	wantCode(t, err, codes.Unauthenticated, "not a known caller")
	_, err = dial(nil).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	wantCode(t, err, codes.Unauthenticated, "credentials required")
}

// TestRateLimitedCaller: a caller over its rate gets RESOURCE_EXHAUSTED and
// nothing is sent for it.
func TestRateLimitedCaller(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer up.Close()
	path := writePolicy(t, fmt.Sprintf(`
version: 1
egress: {allow_cidrs: [127.0.0.0/8]}
callers:
  - name: batch
    tokens: [%q]
    rate_limit: {per_second: 0.01, burst: 2}
`, hashLine("batch-token")))
	_, conn := startWithPolicy(t, path, nil)
	client := fetchdv1.NewFetchServiceClient(conn)
	for range 2 {
		if _, err := client.Fetch(bearer(t, "batch-token"), &fetchdv1.FetchRequest{Url: up.URL}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := client.Fetch(bearer(t, "batch-token"), &fetchdv1.FetchRequest{Url: up.URL})
	wantCode(t, err, codes.ResourceExhausted, "rate limit")
	if hits.Load() != 2 {
		t.Fatalf("upstream saw %d requests, want 2", hits.Load())
	}
}

// TestPolicyReloadsWhenTheFileChanges: a valid new file becomes the running
// policy; a bad one is refused and the running policy stays.
func TestPolicyReloadsWhenTheFileChanges(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer up.Close()
	const base = "version: 1\negress: {allow_cidrs: [127.0.0.0/8]}\nanonymous: {allow: loopback}\n"
	path := writePolicy(t, base)
	type reload struct {
		set *policy.Set
		err error
	}
	reloads := make(chan reload, 10)
	_, conn := startWithPolicy(t, path, func(m *Main) {
		m.ReloadInterval = 5 * time.Millisecond
		m.onReload = func(set *policy.Set, err error) { reloads <- reload{set, err} }
	})
	client := fetchdv1.NewFetchServiceClient(conn)
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Policy: "fast"})
	wantCode(t, err, codes.InvalidArgument, `"fast"`)

	next := func() reload {
		t.Helper()
		select {
		case r := <-reloads:
			return r
		case <-time.After(time.Minute): // a bound on a hang, not a wait for time to pass
			t.Fatal("no reload within a minute")
			return reload{}
		}
	}
	replaceFile(t, path, base+"policies:\n  fast: {retry: {max_attempts: 1}}\n")
	if r := next(); r.err != nil {
		t.Fatalf("reload of a valid file: %v", r.err)
	}
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Policy: "fast"}); err != nil {
		t.Fatalf("policy added by the reload: %v", err)
	}

	replaceFile(t, path, base+"policies:\n  fast: {retry: {max_atempts: 1}}\n")
	r := next()
	if r.err == nil || !strings.Contains(r.err.Error(), "max_atempts") {
		t.Fatalf("reload of a bad file = %v, want an error naming the key", r.err)
	}
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Policy: "fast"}); err != nil {
		t.Fatalf("the running policy must stay after a bad file: %v", err)
	}
}

// TestSIGHUPReloadsThePolicy runs the real binary: SIGHUP makes it read the
// file again; a bad file is refused with a log line and the process keeps
// serving under the policy it had.
func TestSIGHUPReloadsThePolicy(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer up.Close()
	const base = "version: 1\negress: {allow_cidrs: [127.0.0.0/8]}\nanonymous: {allow: loopback}\n"
	path := writePolicy(t, base)
	// The file is checked for changes only every hour: the signal does it.
	p := startProcess(t, "--store", "memory:", "--config", path, "--reload-interval", "1h")
	client := p.client(t)
	awaitMsg := func(want string) {
		t.Helper()
		for msg := range p.msgs {
			if msg == want {
				return
			}
		}
		t.Fatalf("fetchd exited before logging %q", want)
	}

	replaceFile(t, path, base+"policies:\n  fast: {retry: {max_attempts: 1}}\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	awaitMsg("fetchd: policy reloaded")
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Policy: "fast"}); err != nil {
		t.Fatalf("policy added by SIGHUP: %v", err)
	}

	replaceFile(t, path, "version: 1\ntargets: [{host: \"*.*\"}]\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	awaitMsg("fetchd: policy reload refused; the running policy stays")
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Policy: "fast"}); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
}

// TestFlagsWinOverTheFile: the file's server section fills what the command
// line left unset.
func TestFlagsWinOverTheFile(t *testing.T) {
	t.Parallel()
	path := writePolicy(t, "version: 1\nserver: {listen: 127.0.0.1:7170, admin: 127.0.0.1:7171, store: \"memory:\", drain_timeout: 5s}\n")
	m := NewMain()
	if err := m.ParseFlags([]string{"--config", path, "--listen", "127.0.0.1:0"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if m.Listen != "127.0.0.1:0" || m.Admin != "127.0.0.1:7171" || m.Store != "memory:" || m.DrainTimeout != 5*time.Second {
		t.Fatalf("listen %q admin %q store %q drain %v", m.Listen, m.Admin, m.Store, m.DrainTimeout)
	}
}

func TestTokenCommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := tokenCommand(nil, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var token, line string
	for l := range strings.Lines(out.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "token: "); ok {
			token = v
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "policy: "); ok {
			line = v
		}
	}
	if len(token) < 40 || line != hashLine(token) {
		t.Fatalf("token %q, policy line %q", token, line)
	}
	out.Reset()
	if err := tokenCommand([]string{"--hash"}, strings.NewReader(token+"\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != line {
		t.Fatalf("--hash printed %q, want %q", out.String(), line)
	}
	if err := tokenCommand([]string{"--hash"}, strings.NewReader(""), &out, io.Discard); err == nil {
		t.Fatal("--hash with empty stdin must fail")
	}
}

// pki is an in-test CA with a server certificate for localhost.
type pki struct {
	pool                          *x509.CertPool
	caFile, serverCert, serverKey string
	ca                            *x509.Certificate
	caKey                         *ecdsa.PrivateKey
	serial                        atomic.Int64
	mu                            sync.Mutex
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{pool: x509.NewCertPool()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fetchd test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.pool.AddCert(p.ca)
	p.caFile = filepath.Join(dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)

	cert, keyDER := p.issue(t, &x509.Certificate{DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	p.serverCert, p.serverKey = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	writePEM(t, p.serverCert, "CERTIFICATE", cert)
	writePEM(t, p.serverKey, "PRIVATE KEY", keyDER)
	return p
}

// client issues a client certificate whose URI SAN is uri.
func (p *pki) client(uri string) *tls.Certificate {
	u, _ := url.Parse(uri)
	der, keyDER := p.issue(nil, &x509.Certificate{URIs: []*url.URL{u}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	key, _ := x509.ParsePKCS8PrivateKey(keyDER)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (p *pki) issue(_ *testing.T, tmpl *x509.Certificate) (certDER, keyDER []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl.SerialNumber = big.NewInt(p.serial.Add(1) + 1)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	p.mu.Lock()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	p.mu.Unlock()
	if err != nil {
		panic(err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return der, keyDER
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReloadNarrowsTheEgressGuard: a reload that drops egress.allow_cidrs
// refuses the range for calls that start afterwards, although a pooled
// connection to it was idle.
func TestReloadNarrowsTheEgressGuard(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer up.Close()
	path := writePolicy(t, "version: 1\negress: {allow_cidrs: [127.0.0.0/8]}\nanonymous: {allow: loopback}\n")
	m, conn := startWithPolicy(t, path, func(m *Main) { m.ReloadInterval = 0 })
	client := fetchdv1.NewFetchServiceClient(conn)
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL}); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, "version: 1\nanonymous: {allow: loopback}\n")
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	wantCode(t, err, codes.PermissionDenied, "egress guard refused")
}
