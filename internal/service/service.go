package service

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
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

	client   fetcher
	store    idempotency.Store
	policies map[string]policy.Policy
	logger   *slog.Logger
	now      func() time.Time

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

// WithPolicy adds or replaces a named policy; the one named
// policy.DefaultName is used when a request names none. Default: policy.Default().
func WithPolicy(p policy.Policy) Option {
	return func(s *Service) { s.policies[p.Name] = p }
}

// WithLogger sets the logger for the one line logged per Fetch. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.logger = l } }

// WithNow sets the clock. Default: time.Now.
func WithNow(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns a Service that sends through client and deduplicates keyed
// requests in store. The caller keeps ownership of both and closes them after
// Wait returns.
func New(client fetcher, store idempotency.Store, opts ...Option) *Service {
	s := &Service{
		client:   client,
		store:    store,
		policies: map[string]policy.Policy{policy.DefaultName: policy.Default()},
		logger:   slog.Default(),
		now:      time.Now,
	}
	s.detachedCtx, s.stopDetached = context.WithCancel(context.Background())
	for _, o := range opts {
		o(s)
	}
	return s
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
func (s *Service) Fetch(ctx context.Context, req *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	start := s.now()
	resp, err := s.fetch(ctx, req)
	if err != nil {
		st := toStatus(err)
		if status.Code(st) == codes.Internal {
			s.logger.ErrorContext(ctx, "fetch: unmapped error", "error", err)
		}
		err = st
	}
	s.log(ctx, req, resp, err, s.now().Sub(start))
	return resp, err
}

func (s *Service) fetch(ctx context.Context, req *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	if s.draining.Load() {
		return nil, errDraining
	}
	pol, err := s.policy(req.GetPolicy())
	if err != nil {
		return nil, err
	}
	c, err := validate(req, pol)
	if err != nil {
		return nil, err
	}
	oreq := &outbound.Request{
		Method: c.method,
		URL:    c.u,
		Header: c.header,
		Body:   c.body,
		Keyed:  c.key != "",
		Policy: pol.Resolve(c.ask),
	}
	if c.key == "" {
		resp, err := s.client.Do(ctx, oreq)
		if err != nil {
			return nil, err
		}
		return responsePB(resp), nil
	}
	return s.fetchKeyed(ctx, c, oreq, pol)
}

func (s *Service) policy(name string) (policy.Policy, error) {
	if name == "" {
		name = policy.DefaultName
	}
	p, ok := s.policies[name]
	if !ok {
		return p, invalidf("policy %q is not defined", truncate(name, 64))
	}
	return p, nil
}

func responsePB(r *outbound.Response) *fetchdv1.FetchResponse {
	return &fetchdv1.FetchResponse{
		Status:   uint32(r.Status),
		Headers:  headersPB(r.Header),
		Body:     r.Body,
		Attempts: attemptsPB(r.Attempts),
	}
}

func headersPB(h http.Header) []*fetchdv1.Header {
	out := make([]*fetchdv1.Header, 0, len(h))
	eachHeader(h, func(name, value string) {
		out = append(out, &fetchdv1.Header{Name: name, Value: value})
	})
	return out
}

// eachHeader calls f for every value of h, names in sorted order, so that
// responses and stored records list headers the same way every time.
func eachHeader(h http.Header, f func(name, value string)) {
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			f(name, v)
		}
	}
}

// log writes the one structured line per Fetch. It never logs bodies, header
// values or the URL's query.
func (s *Service) log(ctx context.Context, req *fetchdv1.FetchRequest, resp *fetchdv1.FetchResponse, err error, took time.Duration) {
	if !s.logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", truncate(req.GetMethod(), 32)),
		slog.String("url", egress.RedactURL(req.GetUrl())),
		slog.Duration("duration", took),
		slog.Bool("keyed", req.GetIdempotencyKey() != ""),
	}
	if resp != nil {
		attrs = append(attrs, slog.Int("status", int(resp.GetStatus())), slog.Int("attempts", len(resp.GetAttempts())), slog.Bool("replayed", resp.GetReplayed()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "fetch", attrs...)
}
