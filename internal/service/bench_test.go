package service

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

// BenchmarkFetch measures a small GET made through fetchd (a real gRPC client
// calling a real gRPC server that sends through the outbound client) against
// the same GET made directly with a pooled net/http client, in the same run,
// serially and with concurrency. "grpc" is a no-op unary RPC (health Check)
// on the same connection: fetchd's cost is about direct + grpc + its own
// work. Compare the ns/op within each group:
//
//	go test -run '^$' -bench BenchmarkFetch -benchmem -count 6 ./internal/service/
func BenchmarkFetch(b *testing.B) {
	body := []byte(`{"ok":true,"id":12345}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer up.Close()

	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer direct.CloseIdleConnections()
	get := func(b *testing.B) {
		resp, err := direct.Get(up.URL + "/small")
		if err != nil {
			b.Error(err) // Error, not Fatal: this also runs in RunParallel's goroutines
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	svc := newService(b, nil, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	client, conn := serveConn(b, svc)
	hc := healthpb.NewHealthClient(conn)
	noop := func(b *testing.B) {
		if _, err := hc.Check(b.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			b.Error(err)
		}
	}
	req := &fetchdv1.FetchRequest{Url: up.URL + "/small"}
	fetch := func(b *testing.B) {
		resp, err := client.Fetch(b.Context(), req)
		if err != nil {
			b.Error(err)
			return
		}
		if resp.GetStatus() != 200 || len(resp.GetBody()) != len(body) {
			b.Errorf("resp = %v", resp)
		}
	}

	for _, bm := range []struct {
		name string
		do   func(*testing.B)
	}{{"direct", get}, {"grpc", noop}, {"fetchd", fetch}} {
		b.Run("serial/"+bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bm.do(b)
			}
		})
		b.Run("parallel/"+bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bm.do(b)
				}
			})
		})
	}
}
