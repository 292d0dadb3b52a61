package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/baregateway"
	"github.com/fetchd/fetchd/internal/calllog"
	"github.com/fetchd/fetchd/internal/identity"
)

// BenchmarkDaemon measures a small GET through the whole daemon as it
// ships: policy file with a caller and a target rule, bearer-token
// authentication, per-target budget and breaker, the call log (JSON, to
// io.Discard), the otelgrpc server span and the metrics (SDK providers, no
// exporter: spans carry IDs but record nothing, as the daemon runs without
// OTEL_* variables). The baseline in the same run is the
// same GET made directly with a pooled net/http client, and through a bare
// gateway: a grpc-go server whose Fetch forwards with a pooled net/http
// client and does nothing else (no policy, retries, telemetry or log), the
// least any gRPC-to-HTTP gateway costs:
//
//	go test -run '^$' -bench BenchmarkDaemon -benchmem -count 6 ./cmd/fetchd/
func BenchmarkDaemon(b *testing.B) {
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
			b.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	path := writePolicy(b, fmt.Sprintf(`
version: 1
egress: {allow_cidrs: [127.0.0.0/8]}
targets:
  - host: "127.0.0.1"
    retry: {max_attempts: 2}
callers:
  - name: bench
    tokens: [%q]
`, identity.FormatTokenHash(identity.HashToken("bench-token"))))
	_, conn := startWith(b, true, func(m *Main) {
		m.Config, m.AllowCIDRs, m.ReloadInterval = path, nil, 0
		m.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		m.CallLogger = slog.New(calllog.NewJSONHandler(io.Discard, nil)) // as main sets it
	})
	client := fetchdv1.NewFetchServiceClient(conn)
	ctx := bearer(b, "bench-token")
	req := &fetchdv1.FetchRequest{Url: up.URL + "/small"}
	fetch := func(b *testing.B) {
		resp, err := client.Fetch(ctx, req)
		if err != nil {
			b.Error(err)
			return
		}
		if resp.GetStatus() != 200 || len(resp.GetBody()) != len(body) {
			b.Errorf("resp = %v", resp)
		}
	}
	bare := fetchdv1.NewFetchServiceClient(serveBare(b, direct))
	forward := func(b *testing.B) {
		resp, err := bare.Fetch(b.Context(), req)
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
	}{{"direct", get}, {"bare", forward}, {"fetchd", fetch}} {
		b.Run("serial/"+bm.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				bm.do(b)
			}
		})
		b.Run("parallel/"+bm.name, func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bm.do(b)
				}
			})
		})
	}
}

// serveBare serves a baregateway.Gateway on 127.0.0.1:0 and returns a client
// connection to it.
func serveBare(b *testing.B, client *http.Client) *grpc.ClientConn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	fetchdv1.RegisterFetchServiceServer(srv, &baregateway.Gateway{Client: client})
	go srv.Serve(ln)
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

// reportCPU reports the process's CPU time (user + system, every thread:
// the client, the gateway and the upstream together) per operation as
// cpu-ns/op, when the returned function runs. On a shared machine CPU time
// varies less than wall time, and the client and upstream cost the same in
// every sub-benchmark, so the differences are the gateways'.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
