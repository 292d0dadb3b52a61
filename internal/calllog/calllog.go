// Package calllog writes fetchd's call log: one JSON line per call of a
// selected gRPC method, written when the call finishes, with the method, the
// gRPC code, the duration, the trace ID and whatever the handler added to
// its Record (caller, target host, outcome, attempts, ...).
//
// It replaces go-grpc-middleware's logging interceptor on the hot path: that
// interceptor builds, copies and de-duplicates its field lists several times
// per call (about 100 allocations and 8 KB per Fetch, a tenth of the
// daemon's CPU per call). Here a call costs one Record, whose attributes live
// in an array inside it, and the line: written by JSONHandler straight from
// that array, or by slog.Logger.LogAttrs on any other handler, which costs
// twice as much per call. The line has that interceptor's finish-line keys
// and levels, except grpc.start_time (the line's time and grpc.time_ms tell
// it) and grpc.error, which is the status message.
package calllog

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Message is the msg of every call log line.
const Message = "finished call"

// inline is how many attributes a Record holds without allocating.
const inline = 10

// Record collects the attributes a handler adds to its call's log line. It
// is not safe for concurrent use: the handler's goroutine adds to it before
// the handler returns.
type Record struct {
	attrs []slog.Attr
	buf   [inline]slog.Attr
	// method is the call's full method and methodType its kind, for
	// StatsHandler's line.
	method, methodType string
}

type recordKey struct{}

// FromContext returns the Record of the logged call ctx belongs to, or nil
// (whose Add does nothing) outside one.
func FromContext(ctx context.Context) *Record {
	r, _ := ctx.Value(recordKey{}).(*Record)
	return r
}

// Add appends attrs to the call's log line. A nil Record ignores them.
func (r *Record) Add(attrs ...slog.Attr) {
	if r == nil {
		return
	}
	if r.attrs == nil {
		r.attrs = r.buf[:0]
	}
	r.attrs = append(r.attrs, attrs...)
}

// Level is the level of a call's line by its code: the mapping of
// go-grpc-middleware's DefaultServerCodeToLevel, so that callers' own
// mistakes are INFO, refusals and upstream trouble WARN, and fetchd's own
// faults ERROR.
func Level(code codes.Code) slog.Level {
	switch code {
	case codes.OK, codes.NotFound, codes.Canceled, codes.AlreadyExists, codes.InvalidArgument, codes.Unauthenticated:
		return slog.LevelInfo
	case codes.DeadlineExceeded, codes.PermissionDenied, codes.ResourceExhausted, codes.FailedPrecondition, codes.Aborted,
		codes.OutOfRange, codes.Unavailable:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// StatsHandler returns a gRPC stats handler that logs each call whose
// full method log selects, on logger, when it finishes: protocol,
// grpc.component, grpc.service, grpc.method, grpc.method_type ("unary",
// "client_stream", "server_stream" or "bidi_stream"), peer.address,
// grpc.request.deadline (when the call has one), grpc.code, grpc.error (the
// status message, when not OK), grpc.time_ms (a number: the call as gRPC
// sees it, from its headers to its status), trace_id (when the call has a
// span), then the handler's Record.
//
// The line is written at the stats End event, which grpc-go emits once the
// status has been handed to the transport, so it is off the path of every
// answer. Every call that reaches one of the server's methods has one,
// including calls refused before any interceptor runs (a message over the
// size limit) and by interceptors (authentication, a panic turned into
// INTERNAL). A call to a method the server does not have gets none: grpc-go
// answers it without an End event.
//
// When logger's handler is a *JSONHandler, the line is written through it
// directly (see JSONHandler); the line is the same.
func StatsHandler(logger *slog.Logger, log func(fullMethod string) bool) stats.Handler {
	direct, _ := logger.Handler().(*JSONHandler)
	return &statsHandler{logger: logger, direct: direct, log: log}
}

type statsHandler struct {
	logger *slog.Logger
	direct *JSONHandler
	log    func(string) bool
}

func (h *statsHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if !h.log(info.FullMethodName) {
		return ctx
	}
	return context.WithValue(ctx, recordKey{}, &Record{method: info.FullMethodName, methodType: "unary"})
}

func (h *statsHandler) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	switch rs := rs.(type) {
	case *stats.Begin:
		if rec := FromContext(ctx); rec != nil {
			switch {
			case rs.IsClientStream && rs.IsServerStream:
				rec.methodType = "bidi_stream"
			case rs.IsClientStream:
				rec.methodType = "client_stream"
			case rs.IsServerStream:
				rec.methodType = "server_stream"
			}
		}
	case *stats.End:
		if rec := FromContext(ctx); rec != nil {
			write(ctx, h.logger, h.direct, rec.method, rec.methodType, rec, rs.Error, rs.EndTime.Sub(rs.BeginTime))
		}
	}
}

func (h *statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (h *statsHandler) HandleConn(context.Context, stats.ConnStats) {}

// write writes one call's line. It is a function of its own so that its
// attribute array is on the stack only while the line is written, not
// under the whole handler (a deeper stack is copied as it grows). direct,
// when not nil, is logger's handler.
func write(ctx context.Context, logger *slog.Logger, direct *JSONHandler, fullMethod, methodType string, rec *Record, err error, took time.Duration) {
	code := status.Code(err)
	level := Level(code)
	if !logger.Enabled(ctx, level) {
		return
	}
	service, method := splitMethod(fullMethod)
	var buf [12 + inline]slog.Attr
	attrs := append(buf[:0],
		slog.String("protocol", "grpc"),
		slog.String("grpc.component", "server"),
		slog.String("grpc.service", service),
		slog.String("grpc.method", method),
		slog.String("grpc.method_type", methodType))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer.address", p.Addr.String()))
	}
	if d, ok := ctx.Deadline(); ok {
		attrs = append(attrs, slog.Time("grpc.request.deadline", d))
	}
	attrs = append(attrs, slog.String("grpc.code", code.String()))
	if err != nil {
		attrs = append(attrs, slog.String("grpc.error", status.Convert(err).Message()))
	}
	attrs = append(attrs, slog.Float64("grpc.time_ms", float64(took.Microseconds())/1000))
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	attrs = append(attrs, rec.attrs...)
	if direct != nil && direct.writeLine(time.Now(), level, Message, attrs) {
		return
	}
	logger.LogAttrs(ctx, level, Message, attrs...)
}

// splitMethod splits "/fetchd.v1.FetchService/Fetch" into its service and
// method.
func splitMethod(full string) (string, string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}
