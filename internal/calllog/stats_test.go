package calllog

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

// lockedBuffer is a bytes.Buffer written from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// recording answers Fetch after adding the Record's attributes; a URL of
// "fail" fails with UNAVAILABLE.
type recording struct {
	fetchdv1.UnimplementedFetchServiceServer
}

func (r recording) Fetch(ctx context.Context, req *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	FromContext(ctx).Add(slog.String("caller", "checkout"), slog.Int("attempts", 1))
	if req.GetUrl() == "fail" {
		return nil, status.Error(codes.Unavailable, "upstream unreachable")
	}
	return &fetchdv1.FetchResponse{Status: 200}, nil
}

// serveLogged serves recording and the health service on 127.0.0.1:0
// with the stats handler h, and returns the server (the test stops it)
// and a connection to it.
func serveLogged(t *testing.T, h stats.Handler, opts ...grpc.ServerOption) (*grpc.Server, *grpc.ClientConn) {
	t.Helper()
	srv := grpc.NewServer(append(opts, grpc.StatsHandler(h))...)
	fetchdv1.RegisterFetchServiceServer(srv, recording{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, conn
}

// TestStatsHandler serves real calls with the call log as a stats handler:
// each selected call gets one line with the handler's attributes and its
// code, a call refused before any interceptor or handler (a message over
// the size limit) gets one too, and unselected calls none.
func TestStatsHandler(t *testing.T) {
	t.Parallel()
	for _, h := range handlers {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			var out lockedBuffer
			srv, conn := serveLogged(t, StatsHandler(slog.New(h.new(&out, nil)), fetchdOnly), grpc.MaxRecvMsgSize(1024))
			client := fetchdv1.NewFetchServiceClient(conn)
			if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: "ok"}); err != nil {
				t.Fatal(err)
			}
			if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: "fail"}); status.Code(err) != codes.Unavailable {
				t.Fatalf("fail: %v", err)
			}
			_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: "big", Body: make([]byte, 2048)})
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("over the size limit: %v", err)
			}
			if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			srv.GracefulStop() // every call's End has run

			got := lines(t, &out.b)
			if len(got) != 3 {
				t.Fatalf("%d lines, want 3 (the Fetch calls):\n%s", len(got), out.b.String())
			}
			for i, want := range []struct {
				code, level string
				recorded    bool
			}{
				{"OK", "INFO", true},
				{"Unavailable", "WARN", true},
				{"ResourceExhausted", "WARN", false},
			} {
				l := got[i]
				for key, v := range map[string]any{
					"msg": Message, "level": want.level, "grpc.code": want.code, "grpc.service": "fetchd.v1.FetchService",
					"grpc.method": "Fetch", "grpc.method_type": "unary", "grpc.component": "server", "protocol": "grpc",
				} {
					if l[key] != v {
						t.Errorf("line %d: %s = %v, want %v", i, key, l[key], v)
					}
				}
				if _, ok := l["grpc.time_ms"].(float64); !ok {
					t.Errorf("line %d has no grpc.time_ms: %v", i, l)
				}
				if _, ok := l["peer.address"].(string); !ok {
					t.Errorf("line %d has no peer.address: %v", i, l)
				}
				if got := l["caller"] == "checkout" && l["attempts"] == float64(1); got != want.recorded {
					t.Errorf("line %d carries the handler's attributes: %v, want %v (%v)", i, got, want.recorded, l)
				}
			}
			if msg := got[1]["grpc.error"]; msg != "upstream unreachable" {
				t.Errorf("grpc.error = %v", msg)
			}
		})
	}
}

// TestStatsHandlerMethodType: a selected streaming method says which kind
// it is.
func TestStatsHandlerMethodType(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	srv, conn := serveLogged(t, StatsHandler(slog.New(NewJSONHandler(&out, nil)), func(string) bool { return true }))
	ctx, cancel := context.WithCancel(t.Context())
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	srv.GracefulStop()
	got := lines(t, &out.b)
	if len(got) != 1 || got[0]["grpc.method_type"] != "server_stream" || got[0]["grpc.method"] != "Watch" {
		t.Fatalf("lines = %v, want one Watch line of a server_stream", got)
	}
}
