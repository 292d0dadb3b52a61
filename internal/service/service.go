package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/outbound"
	"github.com/fetchd/fetchd/internal/policy"
)

// fetcher sends one request upstream with retries; *outbound.Client is one.
type fetcher interface {
	Do(ctx context.Context, req *outbound.Request) (*outbound.Response, error)
}

var _ fetcher = (*outbound.Client)(nil)

// Service is the FetchService implementation. Build it with New.
type Service struct {
	fetchdv1.UnimplementedFetchServiceServer

	client        fetcher
	store         idempotency.Store
	gen           atomic.Pointer[generation]
	logger        *slog.Logger
	now           func() time.Time
	meterProvider metric.MeterProvider
	meters        meters

	draining atomic.Bool

	// Keyed sends run detached from their caller (see sendClaimed).
	mu           sync.Mutex
	closed       bool // Shutdown began: no new detached sends
	detached     sync.WaitGroup
	detachedCtx  context.Context // cancelled when Shutdown gives up waiting
	stopDetached context.CancelFunc
}

// Option configures a Service.
type Option func(*Service)

// generation is what a call runs under, read once when it starts: the
// policy and the egress guard (nil: the outbound client's own).
type generation struct {
	set   *policy.Set
	guard *egress.Guard

	// applied caches the AppliedPolicy of calls that ask for nothing, by
	// appliedKey: it is the same for every such call of one policy, target
	// rule and caller (a bounded set: all three come from the policy file),
	// and building it is a dozen allocations. Shared messages are only
	// read (marshalled), which is safe concurrently.
	applied sync.Map
}

type appliedKey struct{ policy, targetRule, caller string }

// appliedPolicy returns the AppliedPolicy of res for caller, from the cache
// when the call asked for nothing.
func (g *generation) appliedPolicy(ask *policy.Ask, res *policy.Resolved, caller string) *fetchdv1.AppliedPolicy {
	if !askedNothing(ask) {
		return appliedPB(res, caller)
	}
	key := appliedKey{res.Policy, res.TargetRule, caller}
	if p, ok := g.applied.Load(key); ok {
		return p.(*fetchdv1.AppliedPolicy)
	}
	p, _ := g.applied.LoadOrStore(key, appliedPB(res, caller))
	return p.(*fetchdv1.AppliedPolicy)
}

func askedNothing(a *policy.Ask) bool {
	return a.ConnectTimeout == 0 && a.ReadTimeout == 0 && a.AttemptTimeout == 0 && a.TotalTimeout == 0 &&
		a.MaxAttempts == 0 && a.InitialBackoff == 0 && a.MaxBackoff == 0 && a.Multiplier == 0 &&
		len(a.RetryOn) == 0 && !a.IgnoreRetryAfter
}

// WithPolicySet sets the policy the service starts with. Default:
// policy.DefaultSet(), the embedded default.
func WithPolicySet(set *policy.Set) Option {
	return func(s *Service) {
		if set != nil {
			s.gen.Store(&generation{set: set, guard: s.gen.Load().guard})
		}
	}
}

// WithGuard sets the egress guard calls run with. Default: the outbound
// client's.
func WithGuard(g *egress.Guard) Option {
	return func(s *Service) { s.gen.Store(&generation{set: s.gen.Load().set, guard: g}) }
}

// WithMeterProvider sets where the service's metrics go
// (fetchd.fetch.duration, fetchd.idempotency.outcomes). Default: none.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(s *Service) { s.meterProvider = mp }
}

// WithLogger sets the logger for what goes wrong outside a call's own
// answer (store updates, unmapped errors). The one line per Fetch is written
// by the gRPC logging interceptor from the fields the service adds.
// Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.logger = l } }

// WithNow sets the clock. Default: time.Now.
func WithNow(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns a Service that sends through client and deduplicates keyed
// requests in store. The caller keeps ownership of both and closes them after
// Wait returns.
func New(client fetcher, store idempotency.Store, opts ...Option) *Service {
	s := &Service{
		client: client,
		store:  store,
		logger: slog.Default(),
		now:    time.Now,
	}
	s.gen.Store(&generation{set: policy.DefaultSet()})
	s.detachedCtx, s.stopDetached = context.WithCancel(context.Background())
	for _, o := range opts {
		o(s)
	}
	s.meters = newMeters(s.meterProvider)
	return s
}

// SetPolicy makes set and guard the running policy (a reload): calls that
// start afterwards use them; calls in flight finish under the policy and
// guard they started with, redirect hops and retries included. A nil set is
// ignored; a nil guard means the outbound client's own.
func (s *Service) SetPolicy(set *policy.Set, guard *egress.Guard) {
	if set != nil {
		s.gen.Store(&generation{set: set, guard: guard})
	}
}

// Drain makes every later Fetch fail with UNAVAILABLE; calls already running
// go on.
func (s *Service) Drain() { s.draining.Store(true) }

// Shutdown drains the service and waits for keyed sends that run detached
// from their callers. If ctx ends first it cancels them, waits for each to
// settle its key (a cancelled send that may have reached the upstream keeps
// its key held until the lease runs out), and returns ctx's error. The store
// and client may be closed once Shutdown returns.
func (s *Service) Shutdown(ctx context.Context) error {
	s.Drain()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.detached.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-done: // finished just as ctx ended
		return nil
	default:
	}
	s.stopDetached()
	<-done
	return fmt.Errorf("keyed sends cancelled at the drain deadline: %w", ctx.Err())
}

// Fetch implements fetchdv1.FetchServiceServer.
//
// The call runs as the caller the authentication interceptor put in ctx
// (identity.FromContext); without one it runs as an anonymous caller with no
// allowance or rate limit, which is how the service behaves when hosted
// without the interceptors (tests).
func (s *Service) Fetch(ctx context.Context, req *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	start := s.now()
	id := caller(ctx)
	var info callInfo
	resp, err := s.fetch(ctx, id, req, &info)
	raw := err
	trace := traceID(ctx)
	if err != nil {
		st := toStatus(err, info.applied, trace)
		if status.Code(st) == codes.Internal {
			s.logger.ErrorContext(ctx, "fetch: unmapped error", "error", err)
		}
		err = st
	} else {
		resp.TraceId = trace
	}
	s.observe(ctx, id, &info, resp, err, raw, s.now().Sub(start))
	return resp, err
}

// anonymous is the caller of a call that reached the service without the
// authentication interceptor.
var anonymous = &identity.Identity{Name: identity.AnonymousName, Anonymous: true, Via: identity.ViaAnonymous}

func caller(ctx context.Context) *identity.Identity {
	if id, ok := identity.FromContext(ctx); ok {
		return id
	}
	return anonymous
}

// fetch runs one call. The policy is read once, at the start: a reload
// while the call runs does not change what it runs with. info is filled as
// the call learns its target and policy, for telemetry and failure details.
func (s *Service) fetch(ctx context.Context, id *identity.Identity, req *fetchdv1.FetchRequest, info *callInfo) (*fetchdv1.FetchResponse, error) {
	if s.draining.Load() {
		return nil, errDraining
	}
	if !id.Allow() {
		return nil, &rateLimitedError{caller: id.Name, rate: id.RateLimit()}
	}
	c, err := validate(req)
	if err != nil {
		return nil, err
	}
	host := c.u.Hostname()
	info.host = host
	gen := s.gen.Load()
	res, err := gen.set.Resolve(c.ask, req.GetPolicy(), host)
	if err != nil {
		return nil, err
	}
	applied := gen.appliedPolicy(&c.ask, &res, id.Name)
	info.applied = applied
	if !id.Permits(host) {
		return nil, &notPermittedError{caller: id.Name, host: host}
	}
	info.permitted = true
	if err := c.complete(&res); err != nil {
		return nil, err
	}
	oreq := &outbound.Request{
		Method: c.method,
		URL:    c.u,
		Header: c.header,
		Body:   c.body,
		Keyed:  c.key != "",
		Policy: res.Outbound,
		Guard:  gen.guard,
		CheckRedirect: func(u *url.URL) error {
			if !id.Permits(u.Hostname()) {
				return &notPermittedError{caller: id.Name, host: u.Hostname(), redirect: true}
			}
			return nil
		},
		// A hop runs under its own target's rule (pool, budget, breaker,
		// limits), resolved from the same policy generation.
		HopPolicy: func(u *url.URL) (outbound.Policy, error) {
			hop, err := gen.set.Resolve(c.ask, req.GetPolicy(), u.Hostname())
			return hop.Outbound, err
		},
	}
	var resp *fetchdv1.FetchResponse
	if c.key == "" {
		var r *outbound.Response
		if r, err = s.client.Do(ctx, oreq); err == nil {
			resp = responsePB(r)
		}
	} else {
		key := idempotency.Key{Scope: id.Name, ID: c.key}
		resp, err = s.fetchKeyed(ctx, key, c, oreq, res.InFlightWait)
	}
	if err != nil {
		return nil, err
	}
	if !resp.GetReplayed() {
		resp.Policy = applied
	}
	return resp, nil
}

func responsePB(r *outbound.Response) *fetchdv1.FetchResponse {
	return &fetchdv1.FetchResponse{
		Status:       uint32(r.Status),
		Headers:      headersPB(r.Header),
		Body:         r.Body,
		Attempts:     attemptsPB(r.Attempts),
		RetryStopped: r.Stopped,
	}
}

// appliedPB reports the resolved policy: what the call runs with.
func appliedPB(r *policy.Resolved, caller string) *fetchdv1.AppliedPolicy {
	p := &r.Outbound
	retryOn := make([]uint32, len(p.RetryOn))
	for i, s := range p.RetryOn {
		retryOn[i] = uint32(s)
	}
	return &fetchdv1.AppliedPolicy{
		Name:       r.Policy,
		TargetRule: r.TargetRule,
		Caller:     caller,
		Timeouts: &fetchdv1.Timeouts{
			Connect: durationpb.New(p.ConnectTimeout),
			Read:    durationpb.New(p.ReadTimeout),
			Attempt: durationpb.New(p.AttemptTimeout),
			Total:   durationpb.New(p.TotalTimeout),
		},
		Retry: &fetchdv1.RetryPolicy{
			MaxAttempts:      uint32(p.MaxAttempts),
			InitialBackoff:   durationpb.New(p.InitialBackoff),
			MaxBackoff:       durationpb.New(p.MaxBackoff),
			Multiplier:       p.Multiplier,
			RetryOnStatus:    retryOn,
			IgnoreRetryAfter: p.IgnoreRetryAfter,
		},
		MaxRetryAfter:    durationpb.New(p.MaxRetryAfter),
		MaxResponseBytes: uint64(max(p.MaxResponseBytes, 0)),
		Clamped:          r.Clamped,
	}
}

func headersPB(h http.Header) []*fetchdv1.Header {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	// One array holds every header message.
	hs := make([]fetchdv1.Header, n)
	out := make([]*fetchdv1.Header, 0, n)
	eachHeader(h, func(name, value string) {
		m := &hs[len(out)]
		m.Name, m.Value = name, value
		out = append(out, m)
	})
	return out
}

// eachHeader calls f for every value of h, names in sorted order, so that
// responses and stored records list headers the same way every time.
func eachHeader(h http.Header, f func(name, value string)) {
	var buf [16]string // most responses have fewer names: no allocation
	names := buf[:0]
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range h[name] {
			f(name, v)
		}
	}
}
