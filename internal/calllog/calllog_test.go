package calllog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

var fetchInfo = &grpc.UnaryServerInfo{FullMethod: "/fetchd.v1.FetchService/Fetch"}

func fetchdOnly(m string) bool { return strings.HasPrefix(m, "/fetchd.") }

// statsInterceptor drives StatsHandler(logger, log) through the events
// grpc-go emits for one unary call (TagRPC, Begin, End with the handler's
// error), around handler as an interceptor would run it, so that tests and
// benchmarks call the call log without a server in between.
func statsInterceptor(logger *slog.Logger, log func(string) bool) grpc.UnaryServerInterceptor {
	h := StatsHandler(logger, log)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx = h.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: info.FullMethod})
		begin := time.Now()
		h.HandleRPC(ctx, &stats.Begin{BeginTime: begin})
		resp, err := handler(ctx, req)
		h.HandleRPC(ctx, &stats.End{BeginTime: begin, EndTime: time.Now(), Error: err})
		return resp, err
	}
}

// callCtx is a server call's context: a peer, a deadline and a span.
func callCtx(t testing.TB) context.Context {
	ctx := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}})
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))
	ctx, cancel := context.WithDeadline(ctx, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	t.Cleanup(cancel)
	return ctx
}

// handlers make the call log's handler: slog's own, and JSONHandler, which
// must write the same lines.
var handlers = []struct {
	name string
	new  func(io.Writer, *slog.HandlerOptions) slog.Handler
}{
	{"slog", func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewJSONHandler(w, o) }},
	{"calllog", func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return NewJSONHandler(w, o) }},
}

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// TestFinishedLine: a selected call writes one line with the call's fields
// and the handler's, at the level of its code; the handler's answer passes
// through unchanged. It holds for both handlers.
func TestFinishedLine(t *testing.T) {
	t.Parallel()
	for _, h := range handlers {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			testFinishedLine(t, h.new)
		})
	}
}

func testFinishedLine(t *testing.T, newHandler func(io.Writer, *slog.HandlerOptions) slog.Handler) {
	for _, tt := range []struct {
		err   error
		code  string
		level string
	}{
		{nil, "OK", "INFO"},
		{status.Error(codes.InvalidArgument, "url: missing scheme"), "InvalidArgument", "INFO"},
		{status.Error(codes.Unavailable, "upstream unreachable"), "Unavailable", "WARN"},
		{status.Error(codes.PermissionDenied, "not allowed"), "PermissionDenied", "WARN"},
		{status.Error(codes.Internal, "internal error"), "Internal", "ERROR"},
	} {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			icpt := statsInterceptor(slog.New(newHandler(&buf, nil)), fetchdOnly)
			resp, err := icpt(callCtx(t), "req", fetchInfo, func(ctx context.Context, req any) (any, error) {
				rec := FromContext(ctx)
				rec.Add(slog.String("caller", "checkout"), slog.String("target_host", "api.example.com"))
				rec.Add(slog.Uint64("status", 201), slog.Int("attempts", 2))
				return "resp", tt.err
			})
			if resp != "resp" || err != tt.err {
				t.Fatalf("interceptor returned %v, %v", resp, err)
			}
			ls := lines(t, &buf)
			if len(ls) != 1 {
				t.Fatalf("%d lines, want 1:\n%s", len(ls), buf.String())
			}
			l := ls[0]
			want := map[string]any{
				"msg": Message, "level": tt.level, "protocol": "grpc", "grpc.component": "server",
				"grpc.service": "fetchd.v1.FetchService", "grpc.method": "Fetch", "grpc.method_type": "unary",
				"peer.address": "127.0.0.1:5555", "grpc.request.deadline": "2030-01-02T03:04:05Z",
				"grpc.code": tt.code, "trace_id": "4bf90000000000000000000000000000",
				"caller": "checkout", "target_host": "api.example.com", "status": float64(201), "attempts": float64(2),
			}
			if tt.err != nil {
				want["grpc.error"] = status.Convert(tt.err).Message()
			}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("%s = %v, want %v", k, l[k], v)
				}
			}
			if ms, ok := l["grpc.time_ms"].(float64); !ok || ms < 0 {
				t.Errorf("grpc.time_ms = %v, want a number", l["grpc.time_ms"])
			}
			if _, ok := l["grpc.error"]; ok && tt.err == nil {
				t.Errorf("grpc.error on an OK call: %v", l)
			}
		})
	}
}

// TestUnselectedAndDisabled: calls the selector leaves out are not logged
// and get no Record; a level the logger drops writes nothing. It holds for
// both handlers.
func TestUnselectedAndDisabled(t *testing.T) {
	t.Parallel()
	for _, h := range handlers {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			testUnselectedAndDisabled(t, h.new)
		})
	}
}

func testUnselectedAndDisabled(t *testing.T, newHandler func(io.Writer, *slog.HandlerOptions) slog.Handler) {
	var buf bytes.Buffer
	icpt := statsInterceptor(slog.New(newHandler(&buf, nil)), fetchdOnly)
	health := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	_, err := icpt(callCtx(t), nil, health, func(ctx context.Context, _ any) (any, error) {
		if FromContext(ctx) != nil {
			t.Error("an unselected call has a Record")
		}
		FromContext(ctx).Add(slog.String("k", "v")) // a nil Record ignores it
		return nil, nil
	})
	if err != nil || buf.Len() != 0 {
		t.Fatalf("unselected call: err %v, log %q", err, buf.String())
	}

	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	warnOnly := statsInterceptor(slog.New(newHandler(&buf, &slog.HandlerOptions{Level: level})), fetchdOnly)
	warnOnly(callCtx(t), nil, fetchInfo, func(context.Context, any) (any, error) { return nil, nil })
	if buf.Len() != 0 {
		t.Fatalf("an OK call logged at INFO through a WARN logger: %q", buf.String())
	}
	warnOnly(callCtx(t), nil, fetchInfo, func(context.Context, any) (any, error) {
		return nil, status.Error(codes.Unavailable, "down")
	})
	if ls := lines(t, &buf); len(ls) != 1 || ls[0]["grpc.code"] != "Unavailable" {
		t.Fatalf("UNAVAILABLE through a WARN logger: %q", buf.String())
	}

	buf.Reset()
	level.Set(slog.LevelError)
	warnOnly(callCtx(t), nil, fetchInfo, func(context.Context, any) (any, error) {
		return nil, status.Error(codes.Unavailable, "down")
	})
	if buf.Len() != 0 {
		t.Fatalf("UNAVAILABLE through a logger raised to ERROR: %q", buf.String())
	}
}

// TestRecordGrows: a Record takes more attributes than it holds inline.
func TestRecordGrows(t *testing.T) {
	t.Parallel()
	for _, h := range handlers {
		var buf bytes.Buffer
		icpt := statsInterceptor(slog.New(h.new(&buf, nil)), fetchdOnly)
		icpt(t.Context(), nil, fetchInfo, func(ctx context.Context, _ any) (any, error) {
			for i := range inline + 5 {
				FromContext(ctx).Add(slog.Int("a"+strings.Repeat("x", i), i))
			}
			return nil, nil
		})
		l := lines(t, &buf)[0]
		for i := range inline + 5 {
			if l["a"+strings.Repeat("x", i)] != float64(i) {
				t.Fatalf("%s: attribute %d lost: %v", h.name, i, l)
			}
		}
		if _, ok := l["trace_id"]; ok {
			t.Errorf("%s: trace_id without a span: %v", h.name, l)
		}
	}
}

func TestSplitMethod(t *testing.T) {
	t.Parallel()
	for full, want := range map[string][2]string{
		"/fetchd.v1.FetchService/Fetch": {"fetchd.v1.FetchService", "Fetch"},
		"Fetch":                         {"unknown", "Fetch"},
	} {
		if s, m := splitMethod(full); s != want[0] || m != want[1] {
			t.Errorf("splitMethod(%q) = %q, %q, want %q", full, s, m, want)
		}
	}
}

// BenchmarkInterceptor measures the call log's cost per call, writing JSON
// lines to io.Discard: through slog's JSONHandler, through JSONHandler
// (which writes the line itself), and, for comparison, go-grpc-middleware's
// logging interceptor on slog's JSONHandler (finish events only, the same
// fields):
//
//	go test -run '^$' -bench BenchmarkInterceptor -benchmem -count 6 ./internal/calllog/
func BenchmarkInterceptor(b *testing.B) {
	handler := func(ctx context.Context, _ any) (any, error) {
		FromContext(ctx).Add(slog.String("caller", "checkout"), slog.String("target_host", "api.example.com"),
			slog.String("outcome", "2xx"), slog.String("policy", "default"), slog.Uint64("status", 200),
			slog.Bool("replayed", false), slog.Int("attempts", 1))
		logging.AddFields(ctx, logging.Fields{"caller", "checkout", "target_host", "api.example.com",
			"outcome", "2xx", "policy", "default", "status", uint32(200), "replayed", false, "attempts", 1})
		return nil, nil
	}
	ctx := callCtx(b)
	for _, h := range handlers {
		b.Run(h.name, func(b *testing.B) {
			icpt := statsInterceptor(slog.New(h.new(io.Discard, nil)), fetchdOnly)
			b.ReportAllocs()
			for b.Loop() {
				icpt(ctx, nil, fetchInfo, handler)
			}
		})
	}
	b.Run("go-grpc-middleware", func(b *testing.B) {
		logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
		icpt := logging.UnaryServerInterceptor(logging.LoggerFunc(func(ctx context.Context, level logging.Level, msg string, fields ...any) {
			logger.Log(ctx, slog.Level(level), msg, fields...)
		}), logging.WithLogOnEvents(logging.FinishCall), logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
			return logging.Fields{"trace_id", trace.SpanContextFromContext(ctx).TraceID().String()}
		}))
		b.ReportAllocs()
		for b.Loop() {
			icpt(ctx, nil, fetchInfo, handler)
		}
	})
}
