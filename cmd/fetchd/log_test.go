package main

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/service"
)

// startLogged runs fetchd with a JSON logger writing into logs, and
// returns a function that closes it (once; the test's cleanup calls it
// too). A call's line is written after its answer has gone, and is certain
// to be in logs only once closing has drained the calls.
func startLogged(t *testing.T, logs *syncBuffer, edit func(*Main)) (closeDaemon func(), conn *grpc.ClientConn) {
	t.Helper()
	m, conn := startWith(t, false, func(m *Main) {
		m.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		if edit != nil {
			edit(m)
		}
	})
	var once sync.Once
	closeDaemon = func() {
		once.Do(func() {
			if err := m.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(closeDaemon)
	return closeDaemon, conn
}

// logLines returns the JSON log lines whose msg is msg.
func logLines(t *testing.T, logs *syncBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// TestOneLogLinePerFetch: each Fetch writes one JSON line when it finishes,
// with the caller, target host, status, attempts, duration and trace ID,
// and never a body, a secret header or a signature from the URL. A Fetch
// refused before any interceptor (a message over the size limit) has its
// line too. Health checks are not logged.
func TestOneLogLinePerFetch(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("response-body-secret"))
	}))
	defer up.Close()
	var logs syncBuffer
	closeDaemon, conn := startLogged(t, &logs, nil)
	_, err := fetchdv1.NewFetchServiceClient(conn).Fetch(t.Context(), &fetchdv1.FetchRequest{
		Url:    up.URL + "/path-secret?sig=url-signature-secret",
		Method: "POST",
		Body:   []byte("request-body-secret"),
		Headers: []*fetchdv1.Header{
			{Name: "Authorization", Value: "Bearer authorization-secret"},
			{Name: "Cookie", Value: "cookie-secret"},
			{Name: "Proxy-Authorization", Value: "proxy-secret"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = fetchdv1.NewFetchServiceClient(conn).Fetch(t.Context(), &fetchdv1.FetchRequest{
		Url: up.URL, Method: "POST", Body: make([]byte, service.MaxRequestMessageBytes),
	})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a message over the size limit: %v, want ResourceExhausted", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	closeDaemon()
	lines := logLines(t, &logs, "finished call")
	if len(lines) != 2 {
		t.Fatalf("%d call log lines, want 2 (the Fetch calls only):\n%s", len(lines), logs.String())
	}
	if l := lines[1]; l["grpc.code"] != "ResourceExhausted" || l["grpc.method"] != "Fetch" || l["level"] != "WARN" {
		t.Errorf("line of the message over the size limit: %v", l)
	}
	l := lines[0]
	if id, _ := l["trace_id"].(string); len(id) != 32 {
		t.Errorf("log trace_id = %q, want the call's trace ID", id)
	}
	for key, want := range map[string]any{
		"grpc.method": "Fetch", "grpc.code": "OK", "caller": "anonymous", "target_host": "127.0.0.1",
		"status": float64(200), "attempts": float64(1), "outcome": "2xx", "policy": "default",
	} {
		if l[key] != want {
			t.Errorf("log %s = %v, want %v", key, l[key], want)
		}
	}
	if _, ok := l["grpc.time_ms"]; !ok {
		t.Errorf("log line has no duration: %v", l)
	}
	for _, secret := range []string{"secret"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the log carries a secret (%q):\n%s", secret, logs.String())
		}
	}
}

// panicky is a FetchService whose Fetch panics.
type panicky struct {
	fetchdv1.UnimplementedFetchServiceServer
}

func (panicky) Fetch(context.Context, *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	panic("handler bug: secret-state-in-panic")
}

// TestPanicIsInternalWithoutStack: a panic in a handler answers INTERNAL
// with a generic message (no stack, no panic value) and is logged with its
// stack; the daemon keeps serving.
func TestPanicIsInternalWithoutStack(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	closeDaemon, conn := startLogged(t, &logs, func(m *Main) {
		m.wrapService = func(fetchdv1.FetchServiceServer) fetchdv1.FetchServiceServer { return panicky{} }
	})
	_, err := fetchdv1.NewFetchServiceClient(conn).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: "https://example.com"})
	st := status.Convert(err)
	if st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("panic answered %v %q, want INTERNAL \"internal error\"", st.Code(), st.Message())
	}
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
	closeDaemon()
	if panics := logLines(t, &logs, "fetchd: panic in handler"); len(panics) != 1 || !strings.Contains(panics[0]["stack"].(string), "panicky") {
		t.Fatalf("panic log lines = %v", panics)
	}
	if calls := logLines(t, &logs, "finished call"); len(calls) != 1 || calls[0]["grpc.code"] != "Internal" {
		t.Fatalf("call log lines = %v", calls)
	}
}
