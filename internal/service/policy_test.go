package service

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/outbound"
	"github.com/fetchd/fetchd/internal/policy"
)

// TestFetchReportsTheAppliedPolicy: the response says what ran after
// precedence and caps, including which cap lowered an ask.
func TestFetchReportsTheAppliedPolicy(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("fine"))
	client := serve(t, newService(t, nil, withPolicy(t, `
version: 1
policies:
  payments:
    timeouts: {total: 20s}
targets:
  - host: "127.0.0.1"
    retry: {max_attempts: 2}
    caps: {max_attempts: 4}
`)))
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{
		Url:    up.URL,
		Policy: "payments",
		Retry:  &fetchdv1.RetryPolicy{MaxAttempts: 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := resp.GetPolicy()
	if p.GetName() != "payments" || p.GetTargetRule() != "127.0.0.1" || p.GetCaller() != identity.AnonymousName {
		t.Fatalf("applied = %v", p)
	}
	if p.GetRetry().GetMaxAttempts() != 4 || p.GetTimeouts().GetTotal().AsDuration().String() != "20s" {
		t.Fatalf("applied retry/timeouts = %v / %v", p.GetRetry(), p.GetTimeouts())
	}
	if len(p.GetClamped()) != 1 || !strings.Contains(p.GetClamped()[0], "max_attempts") {
		t.Fatalf("clamped = %q, want one line about max_attempts", p.GetClamped())
	}

	// Without asks, the target rule's value applies.
	resp, err = client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetPolicy().GetRetry().GetMaxAttempts(); got != 2 || resp.GetPolicy().GetName() != policy.DefaultName || len(resp.GetPolicy().GetClamped()) != 0 {
		t.Fatalf("applied = %v", resp.GetPolicy())
	}

	// The applied policy of calls that ask for nothing is cached per policy,
	// rule and caller: a call asking for something in between, or with
	// another policy, gets its own, and the cached one is unchanged.
	for _, tt := range []struct {
		req      *fetchdv1.FetchRequest
		attempts uint32
		total    string
	}{
		{&fetchdv1.FetchRequest{Url: up.URL, Retry: &fetchdv1.RetryPolicy{MaxAttempts: 3}}, 3, "30s"},
		{&fetchdv1.FetchRequest{Url: up.URL}, 2, "30s"},
		{&fetchdv1.FetchRequest{Url: up.URL, Policy: "payments"}, 2, "20s"},
		{&fetchdv1.FetchRequest{Url: up.URL}, 2, "30s"},
	} {
		resp, err := client.Fetch(t.Context(), tt.req)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.GetPolicy()
		if p.GetRetry().GetMaxAttempts() != tt.attempts || p.GetTimeouts().GetTotal().AsDuration().String() != tt.total {
			t.Fatalf("%v: applied = %v, want %d attempts, total %s", tt.req, p, tt.attempts, tt.total)
		}
	}
}

func TestFetchUnknownPolicyIsInvalidArgument(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("fine"))
	client := serve(t, newService(t, nil, withPolicy(t, "version: 1\npolicies:\n  payments: {retry: {max_attempts: 2}}\n")))
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Policy: "paymnets"})
	wantCode(t, err, codes.InvalidArgument, `"paymnets"`)
	if up.hits.Load() != 0 {
		t.Fatal("a call under an unknown policy reached the upstream")
	}
}

// TestFetchStopReasonAndPolicyInFailureDetails: a failure's details carry
// the applied policy and why retrying stopped.
func TestFetchStopReasonIsReported(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	client := serve(t, newService(t, nil, withPolicy(t, "version: 1\ndefaults: {retry: {max_attempts: 2, initial_backoff: 1ms, max_backoff: 1ms}}\n")))
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != 503 || len(resp.GetAttempts()) != 2 || resp.GetRetryStopped() != "max_attempts" {
		t.Fatalf("status %d, %d attempts, stopped %q", resp.GetStatus(), len(resp.GetAttempts()), resp.GetRetryStopped())
	}
}

// TestFetchTargetIdempotencyHeader: a target rule names the header its
// upstream deduplicates on; the key travels in it, and a caller may not set
// that header by hand.
func TestFetchTargetIdempotencyHeader(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("created"))
	client := serve(t, newService(t, nil, withPolicy(t, `
version: 1
targets:
  - host: "127.0.0.1"
    idempotency_header: X-Request-Key
`)))
	key := uniqueKey(t)
	if _, err := client.Fetch(t.Context(), keyedPost(up.URL, key, "x")); err != nil {
		t.Fatal(err)
	}
	r, _ := up.lastRequest()
	if got := r.Header.Get("X-Request-Key"); got != key {
		t.Fatalf("X-Request-Key = %q, want the key %q", got, key)
	}
	if got := r.Header.Get("Idempotency-Key"); got != "" {
		t.Fatalf("Idempotency-Key = %q, want none: the target takes X-Request-Key", got)
	}

	req := keyedPost(up.URL, uniqueKey(t), "y")
	req.Headers = []*fetchdv1.Header{{Name: "x-request-key", Value: "mine"}}
	_, err := client.Fetch(t.Context(), req)
	wantCode(t, err, codes.InvalidArgument, "X-Request-Key")
}

// TestFetchRequestBodyLimitComesFromThePolicy: the body limit of the named
// policy applies, and the message names the limit.
func TestFetchRequestBodyLimitComesFromThePolicy(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("fine"))
	client := serve(t, newService(t, nil, withPolicy(t, "version: 1\npolicies:\n  small: {max_request_bytes: 16}\n")))
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Method: "PUT", Body: make([]byte, 17), Policy: "small"})
	wantCode(t, err, codes.InvalidArgument, "16-byte limit")
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Method: "PUT", Body: make([]byte, 17)}); err != nil {
		t.Fatalf("the default policy's limit is larger: %v", err)
	}
}

// TestSetPolicyInFlightCallsKeepTheirPolicy: a reload applies to calls that
// start after it; a call in flight finishes under the policy it started with.
func TestSetPolicyInFlightCallsKeepTheirPolicy(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	var once sync.Once
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			once.Do(func() { arrived <- struct{}{}; <-release })
		}
		w.WriteHeader(503)
	})
	oldSet := mustLoad(t, "version: 1\ndefaults: {retry: {max_attempts: 1}}\n")
	newSet := mustLoad(t, "version: 1\ndefaults: {retry: {max_attempts: 3, initial_backoff: 1ms, max_backoff: 1ms}}\n")
	svc := newService(t, nil, WithPolicySet(oldSet))
	client := serve(t, svc)

	type result struct {
		resp *fetchdv1.FetchResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL + "/slow"})
		done <- result{resp, err}
	}()
	<-arrived
	svc.SetPolicy(newSet, nil)
	close(release)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if n := len(r.resp.GetAttempts()); n != 1 {
		t.Fatalf("in-flight call made %d attempts, want 1 (the policy it started with)", n)
	}
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL + "/fast"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetAttempts()); n != 3 {
		t.Fatalf("call after the reload made %d attempts, want 3", n)
	}
}

// TestFetchCallerScopesAndAllowance: the idempotency scope is the caller, a
// target outside its allowance is PERMISSION_DENIED, a caller over its rate
// is RESOURCE_EXHAUSTED. The identity normally comes from the
// authentication interceptor; here it is put in the context directly.
func TestFetchCallerScopesAndAllowance(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("created"))
	store := idempotency.NewMemory()
	t.Cleanup(func() { store.Close() })
	svc := newService(t, store)
	auth := identity.New(identity.Config{Callers: []identity.Caller{
		{Name: "billing", Tokens: [][32]byte{identity.HashToken("b")}},
		{Name: "search", Tokens: [][32]byte{identity.HashToken("s")}, AllowTargets: []egress.HostPattern{egress.MustParseHostPattern("*.example.com")}},
		{Name: "batch", Tokens: [][32]byte{identity.HashToken("x")}, Rate: identity.Rate{PerSecond: 0.001, Burst: 1}},
	}})
	billing := authenticated(t, auth, "b")
	search := authenticated(t, auth, "s")
	batch := authenticated(t, auth, "x")

	key := uniqueKey(t)
	ctxA := identity.NewContext(t.Context(), anonymous)
	if _, err := svc.Fetch(ctxA, keyedPost(up.URL, key, "a")); err != nil {
		t.Fatal(err)
	}
	// The same key from another caller is another record: no conflict.
	resp, err := svc.Fetch(identity.NewContext(t.Context(), billing), keyedPost(up.URL, key, "b"))
	if err != nil || resp.GetReplayed() {
		t.Fatalf("billing's first use of the key: replayed=%v err=%v", resp.GetReplayed(), err)
	}
	if up.hits.Load() != 2 {
		t.Fatalf("upstream saw %d requests, want 2 (one per caller scope)", up.hits.Load())
	}

	_, err = svc.Fetch(identity.NewContext(t.Context(), search), &fetchdv1.FetchRequest{Url: up.URL})
	wantCode(t, err, codes.PermissionDenied, `"search" may not reach 127.0.0.1`)

	ctxBatch := identity.NewContext(t.Context(), batch)
	if _, err := svc.Fetch(ctxBatch, &fetchdv1.FetchRequest{Url: up.URL}); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Fetch(ctxBatch, &fetchdv1.FetchRequest{Url: up.URL})
	wantCode(t, err, codes.ResourceExhausted, "rate limit")
}

// authenticated returns the identity auth gives a call bearing token.
func authenticated(t *testing.T, auth *identity.Authenticator, token string) *identity.Identity {
	t.Helper()
	ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs("authorization", "Bearer "+token))
	ctx, err := auth.Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := identity.FromContext(ctx)
	if !ok {
		t.Fatal("Authenticate put no identity in the context")
	}
	return id
}

func mustLoad(t *testing.T, yaml string) *policy.Set {
	t.Helper()
	set, err := policy.Load("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestFetchRetryBudgetBoundsAmplification: against an upstream that fails
// every request, 200 calls asking for 5 attempts each send at most 1.3 x 200
// requests upstream; the budget, not max_attempts, stops them. The breaker is
// off so that the budget alone is measured; the floor is 1 retry/s so that
// the bound does not depend on how long the run takes.
func TestFetchRetryBudgetBoundsAmplification(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	client := serve(t, newService(t, nil, withPolicy(t, `
version: 1
defaults:
  retry: {max_attempts: 5, initial_backoff: 1ms, max_backoff: 2ms}
protection:
  retry_budget: {ratio: 0.2, min_retries_per_second: 1, window: 10s}
  breaker: {enabled: false}
`)))
	const calls = 200
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		stopped  = map[string]int{}
		failures int
	)
	work := make(chan struct{})
	for range 20 {
		wg.Go(func() {
			for range work {
				resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
				mu.Lock()
				if err != nil || resp.GetStatus() != 503 {
					failures++
				} else {
					stopped[resp.GetRetryStopped()]++
				}
				mu.Unlock()
			}
		})
	}
	for range calls {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	hits := up.hits.Load()
	t.Logf("%d calls, %d upstream requests (%.2fx); stopped: %v", calls, hits, float64(hits)/calls, stopped)
	if failures != 0 {
		t.Fatalf("%d calls did not come back with the upstream's 503", failures)
	}
	if hits > calls*13/10 {
		t.Fatalf("upstream saw %d requests for %d calls: over 1.3x", hits, calls)
	}
	if hits <= calls {
		t.Fatalf("upstream saw %d requests: the budget allowed no retries at all", hits)
	}
	if stopped["retry_budget"] < calls/2 {
		t.Fatalf("stopped = %v, want most calls stopped by the retry budget", stopped)
	}
}

// TestFetchBreakerOpenFailsFast: once a target's breaker opens, calls to it
// fail at once with UNAVAILABLE and a message saying so, and nothing is sent.
func TestFetchBreakerOpenFailsFast(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) })
	client := serve(t, newService(t, nil, withPolicy(t, `
version: 1
defaults:
  retry: {max_attempts: 3, initial_backoff: 1ms, max_backoff: 1ms}
protection:
  breaker: {consecutive_failures: 3, open_for: 1h}
`)))
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	if err != nil || resp.GetStatus() != 502 || len(resp.GetAttempts()) != 3 {
		t.Fatalf("first call: %v %v", resp, err)
	}
	_, err = client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	st := wantCode(t, err, codes.Unavailable, "circuit breaker")
	if !strings.Contains(st.Message(), "is open after 3 consecutive failures") {
		t.Fatalf("message %q does not say why the breaker is open", st.Message())
	}
	if up.hits.Load() != 3 {
		t.Fatalf("upstream saw %d requests, want 3 (none while the breaker is open)", up.hits.Load())
	}
}

// TestFetchFollowsRedirectsByPolicy: a target rule that follows redirects
// makes fetchd follow a 302 to another server, logging the hop's URL; a
// caller may not be redirected outside its allowance.
func TestFetchFollowsRedirectsByPolicy(t *testing.T) {
	t.Parallel()
	final := newUpstream(t, ok("moved here"))
	_, port, _ := strings.Cut(strings.TrimPrefix(final.URL, "http://127.0.0.1"), ":")
	start := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		host := "127.0.0.1"
		if r.URL.Path == "/elsewhere" {
			host = "localhost" // the same server under a name the caller may not reach
		}
		http.Redirect(w, r, "http://"+host+":"+port+"/final?sig=secret", http.StatusFound)
	})
	svc := newService(t, nil, withPolicy(t, `
version: 1
targets:
  - host: "127.0.0.1"
    follow_redirects: true
    max_redirects: 2
`))
	auth := identity.New(identity.Config{Callers: []identity.Caller{
		{Name: "local", Tokens: [][32]byte{identity.HashToken("l")}, AllowTargets: []egress.HostPattern{egress.MustParseHostPattern("127.0.0.1")}},
	}})
	ctx := identity.NewContext(t.Context(), authenticated(t, auth, "l"))

	resp, err := svc.Fetch(ctx, &fetchdv1.FetchRequest{Url: start.URL + "/here"})
	if err != nil {
		t.Fatal(err)
	}
	atts := resp.GetAttempts()
	if resp.GetStatus() != 200 || string(resp.GetBody()) != "moved here" || len(atts) != 2 {
		t.Fatalf("status %d body %q attempts %v", resp.GetStatus(), resp.GetBody(), atts)
	}
	if atts[0].GetStatus() != 302 || atts[0].GetUrl() != "" || !strings.Contains(atts[1].GetUrl(), "/final") || strings.Contains(atts[1].GetUrl(), "secret") {
		t.Fatalf("attempt log = %v, want the 302 then the hop with its redacted URL", atts)
	}

	_, err = svc.Fetch(ctx, &fetchdv1.FetchRequest{Url: start.URL + "/elsewhere"})
	wantCode(t, err, codes.PermissionDenied, `redirect to localhost refused: caller "local" may not reach it`)
	if final.hits.Load() != 1 {
		t.Fatalf("the refused hop reached the upstream (%d requests)", final.hits.Load())
	}
}

// TestFetchRedirectsAreAnswersByDefault: without follow_redirects a 3xx is
// the answer.
func TestFetchRedirectsAreAnswersByDefault(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/other", http.StatusMovedPermanently)
	})
	resp, err := serve(t, newService(t, nil)).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != 301 || up.hits.Load() != 1 {
		t.Fatalf("status %d, %d upstream requests", resp.GetStatus(), up.hits.Load())
	}
}

// TestFetchShortCallerTimeoutsDoNotOpenTheBreaker: a caller that asks for a
// read timeout shorter than the policy's cannot open the target's breaker for
// everyone else with it.
func TestFetchShortCallerTimeoutsDoNotOpenTheBreaker(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-r.Context().Done()
			return
		}
		w.Write([]byte("fine"))
	})
	client := serve(t, newService(t, nil, withPolicy(t, "version: 1\nprotection:\n  breaker: {consecutive_failures: 3, open_for: 1h}\n")))
	for range 5 {
		_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{
			Url:      up.URL + "/hang",
			Timeouts: &fetchdv1.Timeouts{Read: durationpb.New(time.Millisecond)},
			Retry:    &fetchdv1.RetryPolicy{MaxAttempts: 1},
		})
		wantCode(t, err, codes.Unavailable, "read_timeout")
	}
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL + "/ok"})
	if err != nil || resp.GetStatus() != 200 {
		t.Fatalf("a normal call after another caller's short timeouts: %v %v", resp, err)
	}
}

// TestFetchKeyedRedirectRefusedHoldsTheKey: a keyed POST whose redirect hop
// the caller may not follow reached the upstream, so its key is held, not
// released for a re-send.
func TestFetchKeyedRedirectRefusedHoldsTheKey(t *testing.T) {
	t.Parallel()
	_, port, _ := strings.Cut(strings.TrimPrefix(newUpstream(t, ok("elsewhere")).URL, "http://127.0.0.1"), ":")
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:"+port+"/", http.StatusTemporaryRedirect)
	})
	svc := newService(t, nil, withPolicy(t, `
version: 1
idempotency: {in_flight_wait: 10ms}
targets:
  - host: "127.0.0.1"
    follow_redirects: true
`))
	auth := identity.New(identity.Config{Callers: []identity.Caller{
		{Name: "local", Tokens: [][32]byte{identity.HashToken("l")}, AllowTargets: []egress.HostPattern{egress.MustParseHostPattern("127.0.0.1")}},
	}})
	ctx := identity.NewContext(t.Context(), authenticated(t, auth, "l"))
	req := keyedPost(up.URL, uniqueKey(t), "pay")
	_, err := svc.Fetch(ctx, req)
	wantCode(t, err, codes.PermissionDenied, "redirect to localhost refused")
	_, err = svc.Fetch(ctx, req)
	wantCode(t, err, codes.Aborted, "")
	if up.hits.Load() != 1 {
		t.Fatalf("upstream saw %d requests, want 1: the key must be held, not re-sent", up.hits.Load())
	}
}

// TestFetchSpanShowsWhatRan: the Fetch span carries the applied policy
// (name, target rule, attempts, clamps), the caller and the idempotency
// outcome as events, and the response names its trace.
func TestFetchSpanShowsWhatRan(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("created"))
	svc := newService(t, nil, withPolicy(t, "version: 1\ntargets:\n  - host: \"127.0.0.1\"\n    caps: {max_attempts: 2}\n"))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("test").Start(t.Context(), "fetchd.v1.FetchService/Fetch")
	req := keyedPost(up.URL, uniqueKey(t), "x")
	req.Retry = &fetchdv1.RetryPolicy{MaxAttempts: 4}
	resp, err := svc.Fetch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Fetch(ctx, req); err != nil {
		t.Fatal(err)
	}
	span.End()
	if resp.GetTraceId() != span.SpanContext().TraceID().String() {
		t.Fatalf("trace_id = %q, want %q", resp.GetTraceId(), span.SpanContext().TraceID())
	}
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	got := map[string]string{}
	for _, kv := range ended[0].Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	for k, want := range map[string]string{
		"fetchd.caller": "anonymous", "fetchd.policy": "default", "fetchd.policy.target_rule": "127.0.0.1",
		"fetchd.policy.max_attempts": "2", "fetchd.target.host": "127.0.0.1", "fetchd.replayed": "true",
	} {
		if got[k] != want {
			t.Errorf("span attribute %s = %q, want %q", k, got[k], want)
		}
	}
	if !strings.Contains(got["fetchd.policy.clamped"], "max_attempts") {
		t.Errorf("span attribute fetchd.policy.clamped = %q", got["fetchd.policy.clamped"])
	}
	var events []string
	for _, e := range ended[0].Events() {
		events = append(events, e.Name)
	}
	if strings.Join(events, ",") != "idempotency.claimed,idempotency.replayed" {
		t.Errorf("span events = %v", events)
	}
}

// panicky is a fetcher that panics.
type panicky struct{}

func (panicky) Do(context.Context, *outbound.Request) (*outbound.Response, error) {
	panic("engine bug")
}

// TestKeyedSendPanicDoesNotEndTheDaemon: a keyed send runs on its own
// goroutine, out of reach of the server's recovery; a panic there answers
// INTERNAL, holds the key, and the service keeps serving.
func TestKeyedSendPanicDoesNotEndTheDaemon(t *testing.T) {
	t.Parallel()
	store := idempotency.NewMemory()
	t.Cleanup(func() { store.Close() })
	svc := New(panicky{}, store, WithLogger(discard), inFlightWait(t, time.Millisecond))
	client := serve(t, svc)
	req := keyedPost("https://example.com/pay", uniqueKey(t), "x")
	_, err := client.Fetch(t.Context(), req)
	wantCode(t, err, codes.Internal, "internal error")
	_, err = client.Fetch(t.Context(), req)
	wantCode(t, err, codes.Aborted, "") // held, never blindly re-sent
}
