package calllog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fetchAttrs are the attributes observe adds to a Fetch's line, every one.
var fetchAttrs = []slog.Attr{
	slog.String("caller", "checkout"), slog.String("target_host", "api.example.com"), slog.String("outcome", "5xx"),
	slog.String("policy", "default"), slog.Uint64("status", 503), slog.Bool("replayed", false),
	slog.Int("attempts", 3), slog.String("retry_stopped", "max_attempts"),
}

// TestSameLine: through the call log, JSONHandler writes byte for byte
// the line slog.JSONHandler writes, whether it writes the line itself or
// leaves it to slog (attributes it does not format, options that change the
// line). Each pair of calls runs in one synctest bubble, so that the line's
// time and grpc.time_ms are the same.
func TestSameLine(t *testing.T) {
	t.Parallel()
	many := make([]slog.Attr, 0, inline+5)
	for i := range inline + 5 {
		many = append(many, slog.Int(fmt.Sprint("a", i), i))
	}
	for _, tt := range []struct {
		name   string
		opts   *slog.HandlerOptions
		ctx    func(testing.TB) context.Context
		method string
		attrs  []slog.Attr
		err    error
	}{
		{name: "ok", attrs: fetchAttrs},
		{name: "unavailable", attrs: fetchAttrs, err: status.Error(codes.Unavailable, "upstream unreachable")},
		{name: "internal", err: status.Error(codes.Internal, "internal error")},
		{name: "plain error", err: errors.New("not a status")},
		{name: "hostile strings", attrs: []slog.Attr{slog.String("caller", strings.Join(hostile, "|")), slog.String("target_host", "a\u2028b<&>")},
			err: status.Error(codes.InvalidArgument, "url: \"bad\"\n\xff\x00 <script>")},
		{name: "no peer, deadline or span", ctx: func(t testing.TB) context.Context { return t.Context() }, attrs: fetchAttrs},
		{name: "unknown method", method: "Fetch"},
		{name: "record grows", attrs: many},
		{name: "kinds slog writes", attrs: []slog.Attr{
			slog.String("caller", "c"), slog.Any("err", errors.New("boom")), slog.Group("g", slog.Int("a", 1)), {},
			slog.Any("key", redacted("secret")), slog.Float64("nan", math.NaN()), slog.Any("list", []string{"x"}),
		}},
		{name: "replace attr", attrs: fetchAttrs, opts: &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			a.Key = strings.ToUpper(a.Key)
			return a
		}}},
		{name: "add source", attrs: fetchAttrs, opts: &slog.HandlerOptions{AddSource: true}},
		{name: "debug level", attrs: fetchAttrs, opts: &slog.HandlerOptions{Level: slog.LevelDebug}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx := callCtx(t)
				if tt.ctx != nil {
					ctx = tt.ctx(t)
				}
				info := fetchInfo
				if tt.method != "" {
					info = &grpc.UnaryServerInfo{FullMethod: tt.method}
				}
				var out [2]bytes.Buffer
				for i, h := range handlers {
					icpt := statsInterceptor(slog.New(h.new(&out[i], tt.opts)), func(string) bool { return true })
					icpt(ctx, nil, info, func(ctx context.Context, _ any) (any, error) {
						FromContext(ctx).Add(tt.attrs...)
						return nil, tt.err
					})
				}
				if out[0].Len() == 0 || out[0].String() != out[1].String() {
					t.Errorf("lines differ\n   slog: %s\ncalllog: %s", out[0].String(), out[1].String())
				}
			})
		})
	}
}

// TestHandlerIsSlogs: used as an ordinary slog.Handler, JSONHandler writes
// what slog.JSONHandler writes, with attributes and groups added.
func TestHandlerIsSlogs(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var out [2]bytes.Buffer
		for i, h := range handlers {
			logger := slog.New(h.new(&out[i], nil))
			logger.Info("plain", "k", "v", "n", 1.5)
			logger.With("a", 1).WithGroup("g").Warn("grouped", "k", "v\n", slog.Any("err", errors.New("e")))
			logger.Debug("dropped")
			logger.LogAttrs(t.Context(), slog.LevelError, "attrs", fetchAttrs...)
			// The call log on a logger With attributes leaves the line to
			// slog.
			icpt := statsInterceptor(logger.With("node", "n1"), fetchdOnly)
			icpt(callCtx(t), nil, fetchInfo, func(ctx context.Context, _ any) (any, error) {
				FromContext(ctx).Add(fetchAttrs...)
				return nil, nil
			})
		}
		if n := strings.Count(out[0].String(), "\n"); n != 4 || out[0].String() != out[1].String() {
			t.Errorf("output differs, or is not 4 lines\n   slog: %s\ncalllog: %s", out[0].String(), out[1].String())
		}
	})
}

// stackWriter records whether each Write came from JSONHandler.writeLine.
type stackWriter struct {
	bytes.Buffer
	direct []bool
}

func (w *stackWriter) Write(p []byte) (int, error) {
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	direct := false
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, ".(*JSONHandler).writeLine") {
			direct = true
		}
		if !more {
			break
		}
	}
	w.direct = append(w.direct, direct)
	return w.Buffer.Write(p)
}

// TestDirectWrite: the call log writes a Fetch's line through
// JSONHandler itself, and leaves to slog the lines it must: attributes it
// does not format, options that change the line, a logger With attributes.
func TestDirectWrite(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		opts   *slog.HandlerOptions
		with   bool
		attrs  []slog.Attr
		direct bool
	}{
		{name: "fetch", attrs: fetchAttrs, direct: true},
		{name: "level", opts: &slog.HandlerOptions{Level: slog.LevelWarn}, attrs: fetchAttrs, direct: true},
		{name: "any", attrs: []slog.Attr{slog.Any("err", errors.New("boom"))}},
		{name: "replace attr", opts: &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return a }}, attrs: fetchAttrs},
		{name: "add source", opts: &slog.HandlerOptions{AddSource: true}, attrs: fetchAttrs},
		{name: "with", with: true, attrs: fetchAttrs},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var w stackWriter
			logger := slog.New(NewJSONHandler(&w, tt.opts))
			if tt.with {
				logger = logger.With("node", "n1")
			}
			icpt := statsInterceptor(logger, fetchdOnly)
			icpt(callCtx(t), nil, fetchInfo, func(ctx context.Context, _ any) (any, error) {
				FromContext(ctx).Add(tt.attrs...)
				return nil, status.Error(codes.Unavailable, "down")
			})
			if len(w.direct) != 1 || w.direct[0] != tt.direct {
				t.Fatalf("writes from writeLine: %v, want [%v]", w.direct, tt.direct)
			}
		})
	}
}

// lineWriter takes lines from many goroutines: it checks that each Write is
// one whole line and that its bytes do not change while Write holds them.
type lineWriter struct {
	mu    sync.Mutex
	lines []string
	bad   []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	held := string(p)
	runtime.Gosched() // let other lines be written meanwhile
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case string(p) != held:
		w.bad = append(w.bad, fmt.Sprintf("line changed during Write: %q became %q", held, p))
	case strings.Count(held, "\n") != 1 || !strings.HasSuffix(held, "\n"):
		w.bad = append(w.bad, fmt.Sprintf("not one line: %q", held))
	}
	w.lines = append(w.lines, held)
	return len(p), nil
}

// TestConcurrentLines: calls finishing at once through one JSONHandler
// each get their own whole line, in one Write each, with their own fields.
func TestConcurrentLines(t *testing.T) {
	t.Parallel()
	const goroutines, calls = 8, 100
	var w lineWriter
	icpt := statsInterceptor(slog.New(NewJSONHandler(&w, nil)), fetchdOnly)
	ctx := callCtx(t)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				icpt(ctx, nil, fetchInfo, func(ctx context.Context, _ any) (any, error) {
					// Lines of different lengths, some past a pooled buffer's size.
					FromContext(ctx).Add(slog.String("caller", fmt.Sprintf("c%d-%d", g, i)),
						slog.String("pad", strings.Repeat("x\n", i*i)))
					return nil, nil
				})
			}
		})
	}
	wg.Wait()
	if len(w.bad) > 0 {
		t.Fatalf("%d bad writes, first: %s", len(w.bad), w.bad[0])
	}
	seen := map[string]bool{}
	for _, l := range w.lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		c, _ := m["caller"].(string)
		var g, i int
		if _, err := fmt.Sscanf(c, "c%d-%d", &g, &i); err != nil || m["pad"] != strings.Repeat("x\n", i*i) || seen[c] {
			t.Fatalf("line has another call's fields, or repeats one: %q", l)
		}
		seen[c] = true
	}
	if len(seen) != goroutines*calls {
		t.Fatalf("%d lines, want %d", len(seen), goroutines*calls)
	}
}
