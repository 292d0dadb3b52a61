package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/identity"
)

// BenchmarkDaemon measures a small GET through the whole daemon as it
// ships: policy file with a caller and a target rule, bearer-token
// authentication, per-target budget and breaker, the call log (JSON, to
// io.Discard), the otelgrpc server span, a CLIENT span per attempt and the
// metrics (SDK providers, no exporter). The baseline in the same run is the
// same GET made directly with a pooled net/http client:
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
	for _, bm := range []struct {
		name string
		do   func(*testing.B)
	}{{"direct", get}, {"fetchd", fetch}} {
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
