package main

import (
	"context"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

// otlpReceiver is an OTLP/gRPC trace collector that hands over every span it
// receives.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	spans chan *tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans <- s
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startOTLPReceiver(t *testing.T) (addr string, spans <-chan *tracepb.Span) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{spans: make(chan *tracepb.Span, 100)}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), r.spans
}

// TestSpansLeaveOverOTLP runs the real binary with the standard OTEL_*
// variables pointing at an OTLP receiver: a Fetch that retries a 503 leaves
// a server span and one CLIENT span per attempt, in the caller's trace, and
// SIGTERM flushes them. The upstream got the attempt's traceparent.
func TestSpansLeaveOverOTLP(t *testing.T) {
	t.Parallel()
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceparents := make(chan string, 10)
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceparents <- r.Header.Get("traceparent")
		if calls.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	addr, spans := startOTLPReceiver(t)
	p := startProcessEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr,
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_SERVICE_NAME=fetchd-test",
	}, "--store", "memory:", "--allow-cidr", "127.0.0.0/8")
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := p.client(t).Fetch(ctx, &fetchdv1.FetchRequest{Url: up.URL + "/?sig=secret-signature"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != 200 || resp.GetTraceId() != traceID {
		t.Fatalf("status %d trace %q", resp.GetStatus(), resp.GetTraceId())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("exit: %v", err)
	}

	var server *tracepb.Span
	var clients []*tracepb.Span
	for len(clients) < 2 || server == nil {
		var s *tracepb.Span
		select {
		case s = <-spans:
		case <-time.After(time.Minute): // a bound on a hang, not a wait for time to pass
			t.Fatalf("spans received: server %v, %d CLIENT; want the server span and 2 CLIENT spans", server != nil, len(clients))
		}
		if hex.EncodeToString(s.GetTraceId()) != traceID {
			t.Fatalf("span %q is in trace %x, want the caller's", s.GetName(), s.GetTraceId())
		}
		switch s.GetKind() {
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		case tracepb.Span_SPAN_KIND_CLIENT:
			clients = append(clients, s)
		}
	}
	if server.GetName() != "fetchd.v1.FetchService/Fetch" {
		t.Fatalf("server span %q", server.GetName())
	}
	for i, c := range clients {
		if c.GetName() != "GET" || string(c.GetParentSpanId()) != string(server.GetSpanId()) {
			t.Fatalf("client span %d: %q parent %x, want GET under %x", i, c.GetName(), c.GetParentSpanId(), server.GetSpanId())
		}
		for _, kv := range c.GetAttributes() {
			if kv.GetKey() == "url.full" && kv.GetValue().GetStringValue() != up.URL+"/?sig=REDACTED" {
				t.Fatalf("url.full = %q", kv.GetValue().GetStringValue())
			}
		}
		want := "00-" + traceID + "-" + hex.EncodeToString(c.GetSpanId()) + "-01"
		if got := <-traceparents; got != want {
			t.Fatalf("upstream traceparent %q, want %q (the attempt's span)", got, want)
		}
	}
}

// startProcessEnv is startProcess with extra environment variables.
func startProcessEnv(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	return startProcessWith(t, func(cmd *exec.Cmd) {
		// The developer's own OTEL_* settings must not steer the test.
		for _, kv := range cmd.Environ() {
			if !strings.HasPrefix(kv, "OTEL_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, env...)
	}, args...)
}
