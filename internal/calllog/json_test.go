package calllog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"
	"unicode/utf8"
)

// lineTime is the time of the lines compared here.
var lineTime = time.Date(2026, 3, 4, 5, 6, 7, 890123400, time.UTC)

// slogLine is the line slog.JSONHandler writes for a record of t, level,
// msg and attrs.
func slogLine(t testing.TB, tm time.Time, level slog.Level, msg string, attrs []slog.Attr) string {
	t.Helper()
	var buf bytes.Buffer
	r := slog.NewRecord(tm, level, msg, 0)
	r.AddAttrs(attrs...)
	if err := slog.NewJSONHandler(&buf, nil).Handle(context.Background(), r); err != nil {
		t.Fatalf("slog: %v", err)
	}
	return buf.String()
}

// directLine is the line JSONHandler.writeLine writes for the same record,
// and whether it wrote it; one that declines must write nothing.
func directLine(t testing.TB, tm time.Time, level slog.Level, msg string, attrs []slog.Attr) (string, bool) {
	t.Helper()
	var w countingWriter
	ok := NewJSONHandler(&w, nil).writeLine(tm, level, msg, attrs)
	if !ok && w.buf.Len() != 0 {
		t.Fatalf("writeLine declined the line but wrote %q", w.buf.String())
	}
	if ok && w.writes != 1 {
		t.Fatalf("writeLine wrote its line in %d Writes, want 1", w.writes)
	}
	return w.buf.String(), ok
}

// redacted is a LogValuer.
type redacted string

func (redacted) LogValue() slog.Value { return slog.StringValue("***") }

type countingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

// hostile are strings whose quoting has a rule of its own in slog's JSON.
var hostile = []string{
	"", `"quoted"`, `back\slash\`, "\x00\x01\x08\x0b\x0c\x1b\x1f", "\x7f", "line\nfeed\rreturn\ttab",
	"\xff", "\xfe\xff tail", "cut \xc3", "\xed\xa0\x80 (a surrogate)", "\xf4\x90\x80\x80 (past U+10FFFF)",
	"\u2028 and \u2029", "\u2027\u202a", "<script>a && b</script>", "héllo ✓ 😀", "\ufffd", `\u0041`,
	"ends in a backslash\\", "{\"json\":[1,2]}",
}

// lineCase is a line TestJSONLine writes through both handlers; direct
// says whether JSONHandler formats it itself.
type lineCase struct {
	name   string
	time   time.Time
	level  slog.Level
	msg    string
	attrs  []slog.Attr
	direct bool
}

// TestJSONLine: JSONHandler writes every line of the kinds it formats
// itself exactly as slog.JSONHandler does, in one Write, and declines (so
// that slog writes it) every line it does not.
func TestJSONLine(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	india := time.FixedZone("IST", 5*3600+30*60)
	tests := []lineCase{
		{"call line", lineTime, slog.LevelWarn, Message, []slog.Attr{
			slog.String("protocol", "grpc"), slog.String("grpc.component", "server"),
			slog.String("grpc.service", "fetchd.v1.FetchService"), slog.String("grpc.method", "Fetch"),
			slog.String("grpc.method_type", "unary"), slog.String("peer.address", "[::1]:5555"),
			slog.Time("grpc.request.deadline", deadline), slog.String("grpc.code", "Unavailable"),
			slog.String("grpc.error", `upstream "api" unreachable`), slog.Float64("grpc.time_ms", 12.345),
			slog.String("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), slog.String("caller", "checkout"),
			slog.String("target_host", "api.example.com"), slog.String("outcome", "5xx"), slog.String("policy", "default"),
			slog.Uint64("status", 503), slog.Bool("replayed", true), slog.Int("attempts", 3),
			slog.String("retry_stopped", "budget"),
		}, true},
		{"no attributes", lineTime, slog.LevelInfo, Message, nil, true},
		{"zero time is left out", time.Time{}, slog.LevelInfo, "m", []slog.Attr{slog.Int("a", 1)}, true},
		{"local monotonic time", time.Now(), slog.LevelInfo, "m", nil, true},
		{"time in a zone", lineTime.In(india), slog.LevelInfo, "m", []slog.Attr{slog.Time("t", deadline.In(india))}, true},
		{"debug level", lineTime, slog.LevelDebug, "m", nil, true},
		{"level between levels", lineTime, slog.LevelInfo + 2, "m", nil, true},
		{"level below debug", lineTime, slog.LevelDebug - 3, "m", nil, true},
		{"level above error", lineTime, slog.LevelError + 4, "m", nil, true},
		{"integers", lineTime, slog.LevelInfo, "m", []slog.Attr{
			slog.Int64("min", math.MinInt64), slog.Int64("max", math.MaxInt64), slog.Int("zero", 0), slog.Int("neg", -1),
			slog.Uint64("umax", math.MaxUint64), slog.Uint64("uzero", 0),
		}, true},
		{"floats", lineTime, slog.LevelInfo, "m", []slog.Attr{
			slog.Float64("zero", 0), slog.Float64("negzero", math.Copysign(0, -1)), slog.Float64("ms", 0.001),
			slog.Float64("third", 1.0/3), slog.Float64("cutoff", 1e-6), slog.Float64("below", 9.99e-7),
			slog.Float64("tiny", 1e-7), slog.Float64("big", 1e20), slog.Float64("huge", 1e21), slog.Float64("neghuge", -1.5e300),
			slog.Float64("max", math.MaxFloat64), slog.Float64("denormal", math.SmallestNonzeroFloat64),
			slog.Float64("whole", 200), slog.Float64("e-10", 1.5e-10),
		}, true},
		{"bools and durations", lineTime, slog.LevelInfo, "m", []slog.Attr{
			slog.Bool("t", true), slog.Bool("f", false), slog.Duration("d", 1500*time.Millisecond),
			slog.Duration("neg", -time.Nanosecond), slog.Duration("max", math.MaxInt64),
		}, true},
		{"times", lineTime, slog.LevelInfo, "m", []slog.Attr{
			slog.Time("zero", time.Time{}), slog.Time("nanos", lineTime), slog.Time("year0", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)),
			slog.Time("year9999", time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)), slog.Time("now", time.Now()),
			slog.Time("before 1678", time.Date(1000, 6, 1, 0, 0, 0, 1, time.UTC)),
		}, true},
		{"empty key", lineTime, slog.LevelInfo, "", []slog.Attr{slog.String("", ""), slog.Int("", 0)}, true},
		{"duplicate keys", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Int("a", 1), slog.Int("a", 2)}, true},

		{"NaN", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Float64("f", math.NaN())}, false},
		{"+Inf", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Float64("f", math.Inf(1))}, false},
		{"-Inf", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Float64("f", math.Inf(-1))}, false},
		{"time past 9999", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Time("t", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}, false},
		{"time before 0", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Time("t", time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC))}, false},
		{"line time past 9999", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m", nil, false},
		{"error", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Any("err", errors.New("boom"))}, false},
		{"any", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Any("v", []int{1, 2})}, false},
		{"nil", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Any("v", nil)}, false},
		{"empty attr", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Int("a", 1), {}, slog.Int("b", 2)}, false},
		{"group", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Group("g", slog.Int("a", 1))}, false},
		{"empty group", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Group("g")}, false},
		{"log valuer", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.Any("v", redacted("key"))}, false},
		{"declined after direct ones", lineTime, slog.LevelInfo, "m", []slog.Attr{slog.String("a", "b"), slog.Any("c", struct{}{})}, false},
	}
	for _, s := range hostile {
		tests = append(tests, lineCase{"string " + s, lineTime, slog.LevelError, s, []slog.Attr{slog.String(s, s), slog.String("k", s), slog.String(s, "v")}, true})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := directLine(t, tt.time, tt.level, tt.msg, tt.attrs)
			if ok != tt.direct {
				t.Fatalf("writeLine wrote the line: %v, want %v", ok, tt.direct)
			}
			if !ok {
				return
			}
			if want := slogLine(t, tt.time, tt.level, tt.msg, tt.attrs); got != want {
				t.Errorf("line differs from slog.JSONHandler's\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

// TestJSONLineOptions: options that change slog's line (ReplaceAttr,
// AddSource) leave every line to slog; a level does not.
func TestJSONLineOptions(t *testing.T) {
	t.Parallel()
	attrs := []slog.Attr{slog.String("k", "v")}
	for _, tt := range []struct {
		name   string
		opts   *slog.HandlerOptions
		direct bool
	}{
		{"nil", nil, true},
		{"zero", &slog.HandlerOptions{}, true},
		{"level", &slog.HandlerOptions{Level: slog.LevelWarn}, true},
		{"replace attr", &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return a }}, false},
		{"add source", &slog.HandlerOptions{AddSource: true}, false},
	} {
		var buf bytes.Buffer
		if ok := NewJSONHandler(&buf, tt.opts).writeLine(lineTime, slog.LevelError, "m", attrs); ok != tt.direct || (buf.Len() > 0) != ok {
			t.Errorf("%s: writeLine = %v and wrote %q, want %v", tt.name, ok, buf.String(), tt.direct)
		}
	}
}

// FuzzJSONLine checks that JSONHandler writes the line slog.JSONHandler
// writes for arbitrary strings (as message, keys and values), numbers,
// durations and times, and that it declines only a non-finite float or a
// time outside the years 0 to 9999.
//
//	go test -run '^$' -fuzz '^FuzzJSONLine$' -fuzztime 60s ./internal/calllog/
func FuzzJSONLine(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, s, int64(-1), uint64(math.MaxUint64), 12.345, true, int64(time.Second), lineTime.Unix(), int64(lineTime.Nanosecond()), int16(0))
	}
	f.Fuzz(func(t *testing.T, key, s string, i int64, u uint64, fl float64, b bool, d int64, sec, nsec int64, zoneMin int16) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("z", int(zoneMin)*60))
		attrs := []slog.Attr{
			slog.String(key, s), slog.String("k", key), slog.Int64(s, i), slog.Uint64("u", u), slog.Float64("f", fl),
			slog.Bool("b", b), slog.Duration("d", time.Duration(d)), slog.Time("t", tm),
		}
		lineAt := tm
		if !timeInRange(tm) {
			lineAt = lineTime
		}
		got, ok := directLine(t, lineAt, slog.Level(zoneMin), s, attrs)
		wantOK := !math.IsNaN(fl) && !math.IsInf(fl, 0) && tm.Year() >= 0 && tm.Year() <= 9999
		if ok != wantOK {
			t.Fatalf("writeLine wrote the line: %v, want %v (float %v, time %v)", ok, wantOK, fl, tm)
		}
		if !ok {
			return
		}
		if want := slogLine(t, lineAt, slog.Level(zoneMin), s, attrs); got != want {
			t.Fatalf("line differs from slog.JSONHandler's\n got: %s\nwant: %s", got, want)
		}
	})
}

// TestPlain8: plain8 says true of 8 bytes exactly when appendString copies
// each of them as it is, for every byte value at every position.
func TestPlain8(t *testing.T) {
	t.Parallel()
	for c := range 256 {
		for pos := range 8 {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			want := c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\'
			if got := plain8(string(w)); got != want {
				t.Errorf("plain8(%q) = %v, want %v", w, got, want)
			}
		}
	}
}

// BenchmarkJSONLine measures the line alone, a Fetch's with every field,
// as slog.JSONHandler writes it from a Record and as JSONHandler writes it
// from the attributes:
//
//	go test -run '^$' -bench BenchmarkJSONLine -benchmem -count 6 ./internal/calllog/
func BenchmarkJSONLine(b *testing.B) {
	attrs := append([]slog.Attr{
		slog.String("protocol", "grpc"), slog.String("grpc.component", "server"),
		slog.String("grpc.service", "fetchd.v1.FetchService"), slog.String("grpc.method", "Fetch"),
		slog.String("grpc.method_type", "unary"), slog.String("peer.address", "127.0.0.1:5555"),
		slog.Time("grpc.request.deadline", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)), slog.String("grpc.code", "OK"),
		slog.Float64("grpc.time_ms", 12.345), slog.String("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
	}, fetchAttrs...)
	b.Run("slog", func(b *testing.B) {
		h := slog.NewJSONHandler(io.Discard, nil)
		b.ReportAllocs()
		for b.Loop() {
			r := slog.NewRecord(time.Now(), slog.LevelInfo, Message, 0)
			r.AddAttrs(attrs...)
			_ = h.Handle(context.Background(), r)
		}
	})
	b.Run("calllog", func(b *testing.B) {
		h := NewJSONHandler(io.Discard, nil)
		b.ReportAllocs()
		for b.Loop() {
			h.writeLine(time.Now(), slog.LevelInfo, Message, attrs)
		}
	})
}
