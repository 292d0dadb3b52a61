package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/calllog"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/outbound"
	"github.com/fetchd/fetchd/internal/policy"
	"github.com/fetchd/fetchd/internal/service"
	"github.com/fetchd/fetchd/internal/telemetry"
)

// Defaults of the command line.
const (
	DefaultListen       = "127.0.0.1:7070"
	DefaultAdmin        = "127.0.0.1:7071"
	DefaultStore        = "file:data/fetchd.db"
	DefaultDrainTimeout = 20 * time.Second
	DefaultGCMinHeapMiB = 64
	// DefaultStreamWorkers is how many goroutines wait to run calls
	// (--stream-workers).
	DefaultStreamWorkers = 64
	// maxStreamWorkers bounds --stream-workers.
	maxStreamWorkers = 1 << 14
)

// Main is a running fetchd: build it with NewMain, set fields, Run, Close.
// End-to-end tests use it on 127.0.0.1:0.
type Main struct {
	Listen       string
	Admin        string
	Config       string
	Store        string
	AllowCIDRs   []netip.Prefix
	DrainTimeout time.Duration
	Logger       *slog.Logger
	// CallLogger writes the one line per Fetch; nil: Logger. The command
	// gives it a batching writer (see logSink).
	CallLogger *slog.Logger
	// TLS for the gRPC listener: a certificate and key (PEM files), and the
	// CA bundle that client certificates are verified against (mTLS caller
	// identity). All empty: plaintext.
	TLSCert, TLSKey, TLSClientCA string
	// ReloadInterval is how often the --config file is checked for changes;
	// zero or less turns the check off (SIGHUP still reloads).
	ReloadInterval time.Duration
	// GCMinHeapMiB is the floor of the garbage collector's heap goal (see
	// gcTuner), applied by the command (it is process-wide); 0 turns it off.
	GCMinHeapMiB int
	// DirectHTTP sends to plain-HTTP upstreams with the outbound engine's
	// direct transport (outbound.WithDirectHTTP) instead of net/http's.
	DirectHTTP bool
	// StreamWorkers is how many goroutines grpc-go keeps to run calls on
	// (grpc.NumStreamWorkers); a call arriving while all are busy gets a
	// goroutine of its own, as every call does with 0.
	StreamWorkers int

	preloaded *policy.Set // loaded by ParseFlags, which applied its server section
	policy    atomic.Pointer[policy.Set]
	reloadMu  sync.Mutex
	onReload  func(*policy.Set, error) // test hook
	// wrapService, when set by a test, wraps the FetchService handler.
	wrapService func(fetchdv1.FetchServiceServer) fetchdv1.FetchServiceServer
	stopWatch   context.CancelFunc
	watching    chan struct{} // closed when the config watcher has returned

	tel    *telemetry.Telemetry
	guard  *egress.Guard // of the running policy; changed only by Reload
	auth   *identity.Authenticator
	store  idempotency.Store
	client *outbound.Client
	// draining is cancelled when Close begins; it ends open streams (health
	// Watch, reflection) so they cannot hold the drain open.
	draining   context.Context
	endStreams context.CancelFunc
	svc        *service.Service
	health     *health.Server
	grpc       *grpc.Server
	grpcLn     net.Listener
	admin      *http.Server
	adminLn    net.Listener
	served     chan error
}

// NewMain returns a Main with the command line's defaults.
func NewMain() *Main {
	return &Main{
		Listen:         DefaultListen,
		Admin:          DefaultAdmin,
		Store:          DefaultStore,
		DrainTimeout:   DefaultDrainTimeout,
		ReloadInterval: DefaultReloadInterval,
		GCMinHeapMiB:   DefaultGCMinHeapMiB,
		DirectHTTP:     true,
		StreamWorkers:  DefaultStreamWorkers,
		Logger:         slog.Default(),
	}
}

// Run opens the store, listens and starts serving; it returns once fetchd is
// serving. Close stops it.
func (m *Main) Run(ctx context.Context) (err error) {
	set, err := m.loadPolicy()
	if err != nil {
		return err
	}
	m.policy.Store(set)
	creds, err := m.serverCredentials()
	if err != nil {
		return err
	}
	if m.tel, err = telemetry.Setup(ctx, telemetry.Config{Logger: m.Logger}); err != nil {
		return fmt.Errorf("telemetry (OTEL_* environment): %w", err)
	}
	store, err := idempotency.Open(ctx, m.Store, idempotency.WithTTL(set.IdempotencyTTL()))
	if err != nil {
		return fmt.Errorf("--store: %w", err)
	}
	m.store = store
	if r, ok := m.store.(*idempotency.Redis); ok {
		m.checkRedis(ctx, r)
	}
	m.guard = egress.New(egress.WithAllow(m.allowCIDRs(set)...))
	// Without an exporter, attempts get no spans of their own: nothing
	// would read them, and the trace context sent upstream is then the
	// Fetch span's, which still carries the caller's trace.
	var attemptSpans trace.TracerProvider
	if m.tel.Exporting() != "" {
		attemptSpans = m.tel.TracerProvider()
	}
	m.client = outbound.New(m.guard,
		outbound.WithTracerProvider(attemptSpans),
		outbound.WithMeterProvider(m.tel.MeterProvider()),
		// Only the trace context goes upstream: the caller's baggage may
		// hold internal data that third parties must not see.
		outbound.WithPropagator(propagation.TraceContext{}),
		outbound.WithDirectHTTP(m.DirectHTTP),
		outbound.WithRedactedQueryParams(set.RedactQueryParams()...))
	m.auth = identity.New(set.Identity())
	m.svc = service.New(m.client, m.store, service.WithLogger(m.Logger), service.WithPolicySet(set),
		service.WithGuard(m.guard), service.WithMeterProvider(m.tel.MeterProvider()))

	m.grpcLn, err = net.Listen("tcp", m.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if m.Admin != "" {
		if m.adminLn, err = net.Listen("tcp", m.Admin); err != nil {
			return fmt.Errorf("--admin: %w", err)
		}
	}

	m.draining, m.endStreams = context.WithCancel(context.Background())
	recover := recovery.WithRecoveryHandlerContext(m.recovered)
	// The call log is a stats handler, so it also records calls refused by
	// authentication or the message size limit, and panics turned into
	// INTERNAL by recovery.
	callLogger := m.CallLogger
	if callLogger == nil {
		callLogger = m.Logger
	}
	opts := []grpc.ServerOption{
		// First: each Fetch's goroutine gets the stack it will need while
		// it is still shallow (stack.go).
		grpc.StatsHandler(stackGrower{}),
		// The server span of each call, continuing the caller's W3C trace
		// context; health checks and reflection are not traced. Its
		// rpc.server.call.duration also counts the calls that never reach
		// the Fetch handler (refused by authentication, a message over
		// the size limit, a panic), which fetchd.fetch.duration misses.
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(m.tel.TracerProvider()),
			otelgrpc.WithMeterProvider(m.tel.MeterProvider()),
			otelgrpc.WithPropagators(m.tel.Propagator()),
			otelgrpc.WithFilter(filters.ServicePrefix("fetchd.")))),
		// The call log: one line per call, written once the answer is on
		// its way, including calls refused before any interceptor.
		grpc.StatsHandler(calllog.StatsHandler(callLogger, fetchdMethod)),
		grpc.MaxRecvMsgSize(service.MaxRequestMessageBytes),
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(recover), m.auth.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(recover), m.endOnDrain, m.auth.StreamServerInterceptor()),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	if m.StreamWorkers > 0 {
		// Calls run on goroutines that are kept, not on a new one each:
		// a kept goroutine's stack has already grown to what a Fetch needs
		// (stack.go) and is warm in the cache (`benchcompare ab`: README,
		// "What the performance work bought"). grpc-go marks the option
		// experimental; TestStreamWorkers fails if it stops taking effect.
		opts = append(opts, grpc.NumStreamWorkers(uint32(m.StreamWorkers)))
	}
	m.grpc = grpc.NewServer(opts...)
	var fetchSvc fetchdv1.FetchServiceServer = m.svc
	if m.wrapService != nil {
		fetchSvc = m.wrapService(fetchSvc)
	}
	fetchdv1.RegisterFetchServiceServer(m.grpc, fetchSvc)
	m.health = health.NewServer()
	m.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	m.health.SetServingStatus(fetchdv1.FetchService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(m.grpc, m.health)
	reflection.Register(m.grpc)

	m.served = make(chan error, 2)
	go func() {
		if err := m.grpc.Serve(m.grpcLn); err != nil { // nil after Stop/GracefulStop
			m.served <- err
		}
	}()
	if m.adminLn != nil {
		m.admin = &http.Server{Handler: m.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := m.admin.Serve(m.adminLn); !errors.Is(err, http.ErrServerClosed) {
				m.served <- err
			}
		}()
	}
	if m.Config != "" && m.ReloadInterval > 0 {
		watchCtx, stop := context.WithCancel(context.Background())
		m.stopWatch, m.watching = stop, make(chan struct{})
		go func() {
			defer close(m.watching)
			m.watchConfig(watchCtx, m.ReloadInterval)
		}()
	}
	cidrs := cidrList(m.allowCIDRs(set))
	m.Logger.Info("fetchd: serving", "grpc", m.GRPCAddr(), "admin", m.AdminAddr(), "tls", creds != nil, "traces", exporting(m.tel),
		"store", storeKind(m.Store), "allow_cidr", cidrs.String(), "policy", policySource(m.Config), "digest", short(set.Digest()),
		"direct_http", m.DirectHTTP, "stream_workers", m.StreamWorkers)
	return nil
}

func exporting(t *telemetry.Telemetry) string {
	if e := t.Exporting(); e != "" {
		return e
	}
	return "not exported (no OTEL_* exporter set)"
}

func policySource(config string) string {
	if config == "" {
		return "embedded default"
	}
	return config
}

// serverCredentials builds the gRPC listener's TLS from the TLS fields, or
// returns nil for plaintext. Client certificates are asked for and verified
// against TLSClientCA when it is set, but not required: a caller may
// authenticate with a bearer token instead.
func (m *Main) serverCredentials() (credentials.TransportCredentials, error) {
	if m.TLSCert == "" && m.TLSKey == "" {
		if m.TLSClientCA != "" {
			return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	if m.TLSCert == "" || m.TLSKey == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(m.TLSCert, m.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if m.TLSClientCA != "" {
		pem, err := os.ReadFile(m.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca: %s holds no PEM certificate", m.TLSClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return credentials.NewTLS(cfg), nil
}

// Err reports a server that stopped serving on its own (a listener failed).
func (m *Main) Err() <-chan error { return m.served }

// GRPCAddr is the address the gRPC server listens on.
func (m *Main) GRPCAddr() string { return addr(m.grpcLn) }

// AdminAddr is the admin HTTP address, or "" when disabled.
func (m *Main) AdminAddr() string { return addr(m.adminLn) }

// Close shuts fetchd down gracefully: new calls are refused, health turns
// NOT_SERVING and open streams end, calls in flight get DrainTimeout to
// finish (then they are cancelled), keyed sends detached from their callers
// are awaited within the same bound (then cancelled and settled), and the
// store is closed. Reaching the drain timeout is logged, not an error: the
// error is for resources that failed to close.
func (m *Main) Close() error {
	deadline := time.Now().Add(m.DrainTimeout)
	if m.stopWatch != nil {
		m.stopWatch()
		<-m.watching // no reload may run against a closing client and store
	}
	if m.svc != nil {
		m.svc.Drain() // before health turns, so whoever sees NOT_SERVING is also refused
	}
	if m.health != nil {
		m.health.Shutdown()
	}
	if m.endStreams != nil {
		m.endStreams()
	}
	if m.grpc != nil {
		stopped := make(chan struct{})
		go func() { m.grpc.GracefulStop(); close(stopped) }()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-stopped:
			t.Stop()
		case <-t.C:
			m.Logger.Warn("fetchd: drain timeout reached; cancelling calls still in flight", "drain_timeout", m.DrainTimeout)
			m.grpc.Stop()
			<-stopped
		}
	}
	if m.svc != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := m.svc.Shutdown(ctx); err != nil {
			m.Logger.Warn("fetchd: drain timeout reached", "error", err)
		}
		cancel()
	}
	var errs []error
	if m.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		errs = append(errs, m.admin.Shutdown(ctx))
		cancel()
	} else if m.adminLn != nil {
		errs = append(errs, m.adminLn.Close())
	}
	if m.client != nil {
		m.client.Close()
	}
	if m.tel != nil {
		// Flush the spans of the calls that just finished.
		// An export that fails here (a collector down) is logged, not an
		// error of the shutdown: the calls themselves all finished.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.tel.Shutdown(ctx); err != nil {
			m.Logger.Warn("fetchd: flushing spans at shutdown failed", "error", err)
		}
		cancel()
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	if m.grpc == nil && m.grpcLn != nil {
		errs = append(errs, m.grpcLn.Close())
	}
	return errors.Join(errs...)
}

// endOnDrain ends a stream when Close begins. Health Watch streams would
// otherwise stay open and hold GracefulStop until the drain timeout.
func (m *Main) endOnDrain(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	defer context.AfterFunc(m.draining, cancel)()
	wrapped := middleware.WrapServerStream(ss)
	wrapped.WrappedContext = ctx
	return handler(srv, wrapped)
}

// checkRedis warns when the shared Redis would evict idempotency records,
// which would let a key be sent twice. fetchd still starts: Redis may be
// down now and fixed later, and keyed calls fail closed meanwhile.
func (m *Main) checkRedis(ctx context.Context, r *idempotency.Redis) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := r.CheckConfig(ctx); err != nil {
		m.Logger.Warn("fetchd: idempotency store check failed", "error", err)
	}
}

// fetchdMethod selects the calls of fetchd's own services for the call log;
// health checks and reflection are not logged.
func fetchdMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/fetchd.")
}

// recovered turns a panic in a handler into INTERNAL with a generic message;
// the stack goes to the log, never to the caller.
func (m *Main) recovered(ctx context.Context, p any) error {
	m.Logger.ErrorContext(ctx, "fetchd: panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

func (m *Main) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.tel.MetricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		resp, err := m.health.Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			http.Error(w, "NOT_SERVING", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "SERVING")
	})
	return mux
}

func addr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// storeKind names the store for the log without credentials a redis URL may carry.
func storeKind(raw string) string {
	for i := 0; i < len(raw); i++ {
		if raw[i] == ':' {
			return raw[:i]
		}
	}
	return raw
}
