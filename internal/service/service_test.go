package service

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/nettest"
)

func TestFetchReturnsUpstreamAnswer(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("made"))
	})
	client := serve(t, newService(t, nil))
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{
		Url:     up.URL + "/things?q=1",
		Method:  "POST",
		Headers: []*fetchdv1.Header{{Name: "X-Caller", Value: "yes"}},
		Body:    []byte("payload"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != 201 || string(resp.GetBody()) != "made" || resp.GetReplayed() {
		t.Fatalf("resp = %v", resp)
	}
	var multi []string
	for _, h := range resp.GetHeaders() {
		if h.GetName() == "X-Multi" {
			multi = append(multi, h.GetValue())
		}
	}
	if strings.Join(multi, ",") != "a,b" {
		t.Fatalf("X-Multi = %v", multi)
	}
	names := make([]string, len(resp.GetHeaders()))
	for i, h := range resp.GetHeaders() {
		names[i] = h.GetName()
	}
	if !slices.IsSorted(names) {
		t.Fatalf("headers are not in a stable (sorted) order: %v", names)
	}
	if n := len(resp.GetAttempts()); n != 1 || resp.GetAttempts()[0].GetStatus() != 201 {
		t.Fatalf("attempts = %v", resp.GetAttempts())
	}
	r, body := up.lastRequest()
	if r.Method != "POST" || r.URL.RequestURI() != "/things?q=1" || string(body) != "payload" || r.Header.Get("X-Caller") != "yes" {
		t.Fatalf("upstream saw %s %s %q %v", r.Method, r.URL, body, r.Header)
	}
}

func TestFetchEmptyMethodIsGET(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("x"))
	client := serve(t, newService(t, nil))
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL}); err != nil {
		t.Fatal(err)
	}
	if r, _ := up.lastRequest(); r.Method != "GET" {
		t.Fatalf("method = %s", r.Method)
	}
}

func TestFetchNon2xxIsASuccessfulRPC(t *testing.T) {
	t.Parallel()
	notFound := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	unavailable := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	client := serve(t, newService(t, nil))
	fast := &fetchdv1.RetryPolicy{InitialBackoff: durationpb.New(time.Millisecond), MaxBackoff: durationpb.New(time.Millisecond)}

	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: notFound.URL, Retry: fast})
	if err != nil || resp.GetStatus() != 404 || len(resp.GetAttempts()) != 1 {
		t.Fatalf("404: resp=%v err=%v", resp, err)
	}
	resp, err = client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: unavailable.URL, Retry: fast})
	if err != nil || resp.GetStatus() != 503 || len(resp.GetAttempts()) != 3 {
		t.Fatalf("503: resp=%v err=%v", resp, err)
	}
	if unavailable.hits.Load() != 3 {
		t.Fatalf("upstream hits = %d, want 3", unavailable.hits.Load())
	}
}

func TestFetchAttemptsAreClampedToTheOrgCap(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	client := serve(t, newService(t, nil))
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Retry: &fetchdv1.RetryPolicy{
		MaxAttempts: 100, InitialBackoff: durationpb.New(time.Millisecond), MaxBackoff: durationpb.New(time.Millisecond),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetAttempts()); n != 5 || up.hits.Load() != 5 {
		t.Fatalf("attempts = %d, hits = %d, want 5 (org cap)", n, up.hits.Load())
	}
}

func TestFetchBadInput(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("x"))
	client := serve(t, newService(t, nil))
	long := strings.Repeat("k", MaxKeyLength+1)
	tests := []struct {
		name string
		req  *fetchdv1.FetchRequest
		msg  string
	}{
		{"empty url", &fetchdv1.FetchRequest{}, "url is required"},
		{"relative url", &fetchdv1.FetchRequest{Url: "/just/a/path"}, "url"},
		{"ftp scheme", &fetchdv1.FetchRequest{Url: "ftp://example.com/x"}, "ftp"},
		{"no host", &fetchdv1.FetchRequest{Url: "http:///path"}, "host"},
		{"userinfo", &fetchdv1.FetchRequest{Url: "http://user:secret@example.com/"}, "credentials"},
		{"bad port", &fetchdv1.FetchRequest{Url: "http://example.com:70000/"}, "port"},
		{"method with space", &fetchdv1.FetchRequest{Url: up.URL, Method: "GET /x"}, "not a valid HTTP method"},
		{"method with CRLF", &fetchdv1.FetchRequest{Url: up.URL, Method: "GET\r\nX: y"}, "not a valid HTTP method"},
		{"header name with colon", &fetchdv1.FetchRequest{Url: up.URL, Headers: []*fetchdv1.Header{{Name: "X:Y", Value: "v"}}}, "not a valid HTTP header name"},
		{"empty header name", &fetchdv1.FetchRequest{Url: up.URL, Headers: []*fetchdv1.Header{{Name: "", Value: "v"}}}, "not a valid HTTP header name"},
		{"header value with CRLF", &fetchdv1.FetchRequest{Url: up.URL, Headers: []*fetchdv1.Header{{Name: "X-A", Value: "v\r\nInjected: 1"}}}, "control characters"},
		{"idempotency header", &fetchdv1.FetchRequest{Url: up.URL, Headers: []*fetchdv1.Header{{Name: "idempotency-key", Value: "k"}}}, "idempotency_key field"},
		{"x-idempotency header", &fetchdv1.FetchRequest{Url: up.URL, Headers: []*fetchdv1.Header{{Name: "X-Idempotency-Key", Value: "k"}}}, "idempotency_key field"},
		{"key too long", &fetchdv1.FetchRequest{Url: up.URL, IdempotencyKey: long}, "over the 255-byte limit"},
		{"key with newline", &fetchdv1.FetchRequest{Url: up.URL, IdempotencyKey: "a\nb"}, "control or non-ASCII"},
		{"key with NUL", &fetchdv1.FetchRequest{Url: up.URL, IdempotencyKey: "a\x00b"}, "control or non-ASCII"},
		{"key non-ascii", &fetchdv1.FetchRequest{Url: up.URL, IdempotencyKey: "ключ"}, "control or non-ASCII"},
		{"key blank", &fetchdv1.FetchRequest{Url: up.URL, IdempotencyKey: "   "}, "blank"},
		{"body over limit", &fetchdv1.FetchRequest{Url: up.URL, Method: "POST", Body: make([]byte, 4<<20+1)}, "over the 4194304-byte limit"},
		{"negative timeout", &fetchdv1.FetchRequest{Url: up.URL, Timeouts: &fetchdv1.Timeouts{Total: durationpb.New(-time.Second)}}, "timeouts.total must not be negative"},
		{"invalid duration", &fetchdv1.FetchRequest{Url: up.URL, Timeouts: &fetchdv1.Timeouts{Read: &durationpb.Duration{Seconds: 1, Nanos: -5}}}, "timeouts.read is not a valid duration"},
		{"multiplier below one", &fetchdv1.FetchRequest{Url: up.URL, Retry: &fetchdv1.RetryPolicy{Multiplier: 0.5}}, "retry.multiplier"},
		{"retry on 200", &fetchdv1.FetchRequest{Url: up.URL, Retry: &fetchdv1.RetryPolicy{RetryOnStatus: []uint32{200}}}, "retry_on_status"},
		{"unknown policy", &fetchdv1.FetchRequest{Url: up.URL, Policy: "gold"}, `policy "gold" is not defined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := client.Fetch(t.Context(), tt.req)
			st := wantCode(t, err, codes.InvalidArgument, tt.msg)
			if strings.Contains(st.Message(), "secret") || strings.Contains(st.Message(), "Injected") {
				t.Fatalf("message leaks caller data: %q", st.Message())
			}
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("bad input reached the upstream %d times", n)
	}
	// The daemon keeps serving after all of that.
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL}); err != nil {
		t.Fatal(err)
	}
}

func TestFetchEgressGuardRefusesBeforeConnecting(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("x"))
	store := idempotency.NewMemory()
	t.Cleanup(func() { store.Close() })
	guarded := New(newGuardedClient(t), store, WithLogger(discard)) // no allowed ranges: loopback is refused
	client := serve(t, guarded)
	for _, u := range []string{up.URL, "http://169.254.169.254/latest/meta-data/", "http://2130706433/", "http://[::ffff:127.0.0.1]/"} {
		_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: u})
		wantCode(t, err, codes.PermissionDenied, "egress guard refused")
	}
	if up.hits.Load() != 0 {
		t.Fatal("a refused destination was reached")
	}
}

func TestFetchRefusedPortIsUnavailableWithAttempts(t *testing.T) {
	t.Parallel()
	addr := nettest.RefusedAddr(t)
	client := serve(t, newService(t, nil))
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: "http://" + addr + "/", Retry: &fetchdv1.RetryPolicy{
		InitialBackoff: durationpb.New(time.Millisecond), MaxBackoff: durationpb.New(time.Millisecond),
	}})
	st := wantCode(t, err, codes.Unavailable, "no upstream answer after 3 attempt(s)")
	var failure *fetchdv1.FetchFailure
	for _, d := range st.Details() {
		if f, ok := d.(*fetchdv1.FetchFailure); ok {
			failure = f
		}
	}
	if failure == nil || len(failure.GetAttempts()) != 3 {
		t.Fatalf("details = %v, want a FetchFailure with 3 attempts", st.Details())
	}
	for _, a := range failure.GetAttempts() {
		if a.GetError() != "connect_refused" || a.GetStatus() != 0 {
			t.Fatalf("attempt = %v", a)
		}
	}
}

func TestFetchResponseTooLargeKeepsServing(t *testing.T) {
	t.Parallel()
	big := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for range 5 << 20 / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	small := newUpstream(t, ok("fine"))
	client := serve(t, newService(t, nil))
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: big.URL})
	wantCode(t, err, codes.ResourceExhausted, "size limit")
	if big.hits.Load() != 1 {
		t.Fatalf("an over-limit body was retried: %d hits", big.hits.Load())
	}
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: small.URL})
	if err != nil || string(resp.GetBody()) != "fine" {
		t.Fatalf("after a huge body: resp=%v err=%v", resp, err)
	}
}

func TestFetchCallerDeadlineBoundsEverything(t *testing.T) {
	t.Parallel()
	gone := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(gone)
	})
	client := serve(t, newService(t, nil))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := client.Fetch(ctx, &fetchdv1.FetchRequest{Url: up.URL})
	wantCode(t, err, codes.DeadlineExceeded, "")
	<-gone // the upstream request was cancelled, not left hanging
}

func TestFetchCancelledCallerCancelsUpstream(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	gone := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
		close(gone)
	})
	client := serve(t, newService(t, nil))
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := client.Fetch(ctx, &fetchdv1.FetchRequest{Url: up.URL})
		errc <- err
	}()
	<-arrived
	cancel()
	wantCode(t, <-errc, codes.Canceled, "")
	<-gone
	if up.hits.Load() != 1 {
		t.Fatalf("hits = %d", up.hits.Load())
	}
}

func TestFetchDoesNotForwardHopByHopHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("x"))
	client := serve(t, newService(t, nil))
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Headers: []*fetchdv1.Header{
		{Name: "Connection", Value: "X-Secret-Hop"},
		{Name: "X-Secret-Hop", Value: "1"},
		{Name: "Proxy-Authorization", Value: "Basic c2VjcmV0"},
		{Name: "Keep-Alive", Value: "timeout=5"},
		{Name: "Upgrade", Value: "websocket"},
		{Name: "Host", Value: "evil.example"},
		{Name: "X-Kept", Value: "1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := up.lastRequest()
	for _, h := range []string{"X-Secret-Hop", "Proxy-Authorization", "Keep-Alive", "Upgrade"} {
		if r.Header.Get(h) != "" {
			t.Errorf("%s was forwarded", h)
		}
	}
	if r.Host == "evil.example" {
		t.Error("Host was overridden by the caller")
	}
	if r.Header.Get("X-Kept") != "1" {
		t.Error("an end-to-end header was dropped")
	}
}

func TestFetchAfterDrainIsUnavailable(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("x"))
	svc := newService(t, nil)
	client := serve(t, svc)
	svc.Drain()
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	wantCode(t, err, codes.Unavailable, "shutting down")
	if up.hits.Load() != 0 {
		t.Fatal("a call after Drain was sent")
	}
}

func TestOutcomeOf(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		resp *fetchdv1.FetchResponse
		err  error
		want string
	}{
		{&fetchdv1.FetchResponse{Status: 201}, nil, "2xx"},
		{&fetchdv1.FetchResponse{Status: 503}, nil, "5xx"},
		{&fetchdv1.FetchResponse{Status: 101}, nil, "1xx"},
		{&fetchdv1.FetchResponse{Status: 600}, nil, "other"},
		{nil, status.Error(codes.Unavailable, "x"), "unavailable"},
		{nil, status.Error(codes.DeadlineExceeded, "x"), "deadline_exceeded"},
		{nil, status.Error(codes.Unauthenticated, "x"), "unauthenticated"},
		{nil, status.Error(codes.Code(99), "x"), "code(99)"},
	} {
		if got := outcomeOf(tt.resp, tt.err); got != tt.want {
			t.Errorf("outcomeOf(%v, %v) = %q, want %q", tt.resp, tt.err, got, tt.want)
		}
	}
}
