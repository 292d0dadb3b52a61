package outbound

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkDo compares a pooled net/http client with Client.Do for a small
// GET to a local upstream, serially and in parallel, without and with the
// default per-target protection (retry budget, breaker, shared hold), and
// with a guard of the request's own (Request.Guard), and with real SDK
// tracer and meter providers (every span sampled and ended, no exporter;
// a manual metric reader) under a parent span:
//
//	go test -run '^$' -bench BenchmarkDo -benchmem ./internal/outbound/
func BenchmarkDo(b *testing.B) {
	body := []byte(`{"ok":true,"id":"0123456789"}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer srv.Close()

	direct := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		MaxConnsPerHost:     64,
		DisableCompression:  true,
	}}
	defer direct.CloseIdleConnections()
	directGet := func() error {
		req, err := http.NewRequestWithContext(context.Background(), "GET", srv.URL+"/", nil)
		if err != nil {
			return err
		}
		resp, err := direct.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}

	c := New(loopback())
	defer c.Close()
	u, err := parseURL(srv.URL + "/")
	if err != nil {
		b.Fatal(err)
	}
	req := &Request{Method: "GET", URL: u, Policy: benchPolicy()}
	outboundGet := func() error {
		_, err := c.Do(context.Background(), req)
		return err
	}
	// The same with fetchd's default target protection: budget, breaker and
	// shared Retry-After all on.
	protected := &Request{Method: "GET", URL: u, Policy: benchPolicy()}
	protected.Policy.Budget = Budget{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second}
	protected.Policy.Breaker = Breaker{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20,
		Window: 30 * time.Second, OpenFor: 30 * time.Second, HalfOpenProbes: 1}
	protected.Policy.ShareRetryAfter = true
	protectedGet := func() error {
		_, err := c.Do(context.Background(), protected)
		return err
	}
	// The same with the request's own egress guard, as the service sends
	// every request (Request.Guard).
	guarded := &Request{Method: "GET", URL: u, Policy: protected.Policy, Guard: loopback()}
	guardedGet := func() error {
		_, err := c.Do(context.Background(), guarded)
		return err
	}

	// The same with telemetry on: a CLIENT span per attempt, traceparent
	// injected (a copy of the headers), the attempt and in-flight counters.
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())
	ct := New(loopback(), WithTracerProvider(tp), WithMeterProvider(mp))
	defer ct.Close()
	tctx, parent := tp.Tracer("bench").Start(context.Background(), "Fetch")
	defer parent.End()
	tracedGet := func() error {
		_, err := ct.Do(tctx, guarded)
		return err
	}

	for _, bc := range []struct {
		name string
		get  func() error
	}{{"direct", directGet}, {"outbound", outboundGet}, {"outbound-protected", protectedGet}, {"outbound-guard", guardedGet}, {"outbound-otel", tracedGet}} {
		b.Run(bc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.get(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
