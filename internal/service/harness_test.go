package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/outbound"
	"github.com/fetchd/fetchd/internal/policy"
)

var (
	loopback = netip.MustParsePrefix("127.0.0.0/8")
	discard  = slog.New(slog.DiscardHandler)
)

// serve starts svc behind a real gRPC server on 127.0.0.1:0 and returns a
// real client connected to it.
func serve(t testing.TB, svc *Service) fetchdv1.FetchServiceClient {
	t.Helper()
	client, _ := serveConn(t, svc)
	return client
}

// serveConn is serve that also returns the connection, for other services
// registered on the same server.
func serveConn(t testing.TB, svc *Service) (fetchdv1.FetchServiceClient, *grpc.ClientConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(MaxRequestMessageBytes))
	fetchdv1.RegisterFetchServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer()) // a no-op RPC for benchmark baselines
	go srv.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Shutdown(ctx); err != nil {
			t.Errorf("detached sends still running: %v", err)
		}
	})
	return fetchdv1.NewFetchServiceClient(conn), conn
}

// withPolicy returns an option that runs the service under the policy file
// text yaml.
func withPolicy(t testing.TB, yaml string) Option {
	t.Helper()
	set, err := policy.Load("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return WithPolicySet(set)
}

// inFlightWait returns an option setting the policy's in-flight wait.
func inFlightWait(t testing.TB, d time.Duration) Option {
	t.Helper()
	return withPolicy(t, fmt.Sprintf("version: 1\nidempotency: {in_flight_wait: %s}\n", d))
}

// newClient returns an outbound client whose guard lets loopback through.
func newClient(t testing.TB, opts ...outbound.Option) *outbound.Client {
	t.Helper()
	return newClientWithGuard(t, egress.New(egress.WithAllow(loopback)), opts...)
}

// newGuardedClient returns an outbound client with the default guard, which
// refuses loopback.
func newGuardedClient(t testing.TB) *outbound.Client {
	return newClientWithGuard(t, egress.New())
}

func newClientWithGuard(t testing.TB, g *egress.Guard, opts ...outbound.Option) *outbound.Client {
	t.Helper()
	c := outbound.New(g, opts...)
	t.Cleanup(c.Close)
	return c
}

// newService builds a Service over a loopback-allowed client and store.
func newService(t testing.TB, store idempotency.Store, opts ...Option) *Service {
	t.Helper()
	if store == nil {
		store = idempotency.NewMemory()
		t.Cleanup(func() { store.Close() })
	}
	return New(newClient(t), store, append([]Option{WithLogger(discard)}, opts...)...)
}

// upstream is a scripted httptest server that counts the requests it gets
// and records the last one.
type upstream struct {
	*httptest.Server
	hits atomic.Int64

	mu   sync.Mutex
	last *http.Request
	body []byte
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.last, u.body = r.Clone(context.Background()), b
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) lastRequest() (*http.Request, []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last, u.body
}

func ok(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	}
}

// wantCode fails t unless err is a gRPC status with code and, when msg is
// not empty, a message containing msg.
func wantCode(t testing.TB, err error, code codes.Code, msg string) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), code)
	}
	if msg != "" && !strings.Contains(st.Message(), msg) {
		t.Fatalf("message %q does not contain %q", st.Message(), msg)
	}
	return st
}
