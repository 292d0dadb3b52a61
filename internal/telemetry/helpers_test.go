package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// logBuffer collects log output written from any goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many log lines contain s.
func (l *logBuffer) count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func testLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// testEnv is an env over m whose warnings go to the returned buffer.
func testEnv(m map[string]string) (env, *logBuffer) {
	log, buf := testLogger()
	return env{get: mapEnv(m), log: log}, buf
}

// setup runs Setup over the environment m and shuts down at the end of the
// test (a second Shutdown is harmless).
func setup(t *testing.T, m map[string]string) (*Telemetry, *logBuffer) {
	t.Helper()
	log, buf := testLogger()
	tel, err := Setup(t.Context(), Config{Getenv: mapEnv(m), Logger: log, Console: &logBuffer{}})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, buf
}

// attr returns the value of key in kvs, or nil.
func attr(kvs []*commonpb.KeyValue, key string) *commonpb.AnyValue {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return nil
}

// exportedSpan is a span as a receiver saw it, with its resource.
type exportedSpan struct {
	resource []*commonpb.KeyValue
	span     *tracepb.Span
}

func flatten(rss []*tracepb.ResourceSpans) []exportedSpan {
	var out []exportedSpan
	for _, rs := range rss {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				out = append(out, exportedSpan{rs.GetResource().GetAttributes(), s})
			}
		}
	}
	return out
}
