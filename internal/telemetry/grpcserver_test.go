package telemetry

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

// codeService answers Fetch with the status code its URL names
// ("code:5"), or a response for any other URL.
type codeService struct {
	fetchdv1.UnimplementedFetchServiceServer
}

func (codeService) Fetch(_ context.Context, req *fetchdv1.FetchRequest) (*fetchdv1.FetchResponse, error) {
	if c, ok := strings.CutPrefix(req.GetUrl(), "code:"); ok {
		n, _ := strconv.Atoi(c)
		return nil, status.Errorf(codes.Code(n), "failed with %d", n)
	}
	return &fetchdv1.FetchResponse{Status: 200}, nil
}

// observed is what one stats handler made of the same calls.
type observed struct {
	spans   []string // one line per span, in the order they ended
	measure []string // one line per data point, sorted
	unit    string
	desc    string
	buckets []float64
}

// observe serves codeService and the health service behind the handler
// newHandler builds, makes the same calls as every other run, and returns
// what the handler recorded.
func observe(t *testing.T, newHandler func(trace.TracerProvider, *sdkmetric.MeterProvider, propagation.TextMapPropagator) stats.Handler) observed {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

	srv := grpc.NewServer(grpc.StatsHandler(newHandler(tp, mp, prop)), grpc.MaxRecvMsgSize(1024))
	fetchdv1.RegisterFetchServiceServer(srv, codeService{})
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
	client := fetchdv1.NewFetchServiceClient(conn)
	ctx := t.Context()

	fetch := func(ctx context.Context, req *fetchdv1.FetchRequest) {
		t.Helper()
		if _, err := client.Fetch(ctx, req); err != nil && status.Code(err) == codes.Unknown && !strings.HasPrefix(req.GetUrl(), "code:") {
			t.Fatalf("Fetch(%s): %v", req.GetUrl(), err)
		}
	}
	fetch(ctx, &fetchdv1.FetchRequest{Url: "ok"})
	for c := codes.Canceled; c <= codes.Unauthenticated+1; c++ {
		fetch(ctx, &fetchdv1.FetchRequest{Url: fmt.Sprintf("code:%d", c)})
	}
	// Refused before any handler runs: over the message size limit.
	fetch(ctx, &fetchdv1.FetchRequest{Url: "big", Body: make([]byte, 2048)})
	// A caller's trace context and baggage.
	in := metadata.AppendToOutgoingContext(ctx,
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"baggage", "tenant=a")
	fetch(in, &fetchdv1.FetchRequest{Url: "ok"})
	// Not a fetchd method: neither a span nor a measurement.
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	srv.GracefulStop() // every handler has finished and its End is recorded

	var o observed
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for _, s := range rec.Ended() {
		attrs := slices.Collect(func(yield func(string) bool) {
			for _, kv := range s.Attributes() {
				v := kv.Value.Emit()
				if kv.Key == "server.port" && v == port {
					v = "PORT"
				}
				if !yield(string(kv.Key) + "=" + v) {
					return
				}
			}
		})
		slices.Sort(attrs)
		parent := "root"
		if p := s.Parent(); p.IsValid() {
			parent = fmt.Sprintf("%s/%s remote=%v", p.TraceID(), p.SpanID(), p.IsRemote())
		}
		o.spans = append(o.spans, fmt.Sprintf("%s kind=%s parent=%s status=%s:%q events=%d links=%d attrs=%v",
			s.Name(), s.SpanKind(), parent, s.Status().Code, s.Status().Description, len(s.Events()), len(s.Links()), attrs))
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "rpc.server.call.duration" {
				t.Errorf("unexpected metric %s", m.Name)
				continue
			}
			o.unit, o.desc = m.Unit, m.Description
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				o.buckets = dp.Bounds
				o.measure = append(o.measure, fmt.Sprintf("%s count=%d", dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Count))
			}
		}
	}
	slices.Sort(o.measure)
	return o
}

// TestGRPCServerHandlerMatchesOtelgrpc runs the same calls (every status
// code, a message refused before the handler, a caller's trace context,
// a health check) through fetchd's handler and through otelgrpc's, and
// requires the same spans and the same measurements.
func TestGRPCServerHandlerMatchesOtelgrpc(t *testing.T) {
	t.Parallel()
	ours := observe(t, func(tp trace.TracerProvider, mp *sdkmetric.MeterProvider, prop propagation.TextMapPropagator) stats.Handler {
		return NewGRPCServerHandler(tp, mp, prop, "fetchd.")
	})
	theirs := observe(t, func(tp trace.TracerProvider, mp *sdkmetric.MeterProvider, prop propagation.TextMapPropagator) stats.Handler {
		return otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithMeterProvider(mp),
			otelgrpc.WithPropagators(prop),
			otelgrpc.WithFilter(filters.ServicePrefix("fetchd.")))
	})
	// 1 + 17 codes + the refused message + the traced call.
	if len(ours.spans) != 20 {
		t.Errorf("%d spans, want 20:\n%s", len(ours.spans), strings.Join(ours.spans, "\n"))
	}
	for i := range max(len(ours.spans), len(theirs.spans)) {
		var o, th string
		if i < len(ours.spans) {
			o = ours.spans[i]
		}
		if i < len(theirs.spans) {
			th = theirs.spans[i]
		}
		if o != th {
			t.Errorf("span %d:\nfetchd:   %s\notelgrpc: %s", i, o, th)
		}
	}
	if !slices.Equal(ours.measure, theirs.measure) {
		t.Errorf("measurements:\nfetchd:\n%s\notelgrpc:\n%s", strings.Join(ours.measure, "\n"), strings.Join(theirs.measure, "\n"))
	}
	if ours.unit != theirs.unit || ours.desc != theirs.desc || !slices.Equal(ours.buckets, theirs.buckets) {
		t.Errorf("instrument: fetchd %q %q %v, otelgrpc %q %q %v", ours.unit, ours.desc, ours.buckets, theirs.unit, theirs.desc, theirs.buckets)
	}
	// The traced call continued the caller's trace.
	if n := strings.Count(strings.Join(ours.spans, "\n"), "parent=0af7651916cd43dd8448eb211c80319c/b7ad6b7169203331 remote=true"); n != 1 {
		t.Errorf("%d spans continue the caller's trace, want 1", n)
	}
}

// BenchmarkGRPCServerHandler is one call's events through fetchd's handler
// and through otelgrpc's, with fetchd's providers when nothing exports
// (spans unrecorded, the SDK's meter provider).
func BenchmarkGRPCServerHandler(b *testing.B) {
	tp := &unrecorded{sampler: sdktrace.ParentBased(sdktrace.AlwaysSample())}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	md := metadata.MD{"content-type": {"application/grpc"}, "user-agent": {"grpc-go/1.85.0"}, "authorization": {"Bearer x"}, ":authority": {"127.0.0.1:7070"}}
	ctx := metadata.NewIncomingContext(context.Background(), md)
	info := &stats.RPCTagInfo{FullMethodName: "/fetchd.v1.FetchService/Fetch"}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7070}
	for _, c := range []struct {
		name string
		h    stats.Handler
	}{
		{"fetchd", NewGRPCServerHandler(tp, mp, prop, "fetchd.")},
		{"otelgrpc", otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithMeterProvider(mp), otelgrpc.WithPropagators(prop), otelgrpc.WithFilter(filters.ServicePrefix("fetchd.")))},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx := c.h.TagRPC(ctx, info)
				c.h.HandleRPC(ctx, &stats.InHeader{LocalAddr: local, Header: md})
				c.h.HandleRPC(ctx, &stats.Begin{})
				c.h.HandleRPC(ctx, &stats.InPayload{})
				c.h.HandleRPC(ctx, &stats.OutHeader{})
				c.h.HandleRPC(ctx, &stats.OutPayload{})
				c.h.HandleRPC(ctx, &stats.OutTrailer{})
				c.h.HandleRPC(ctx, &stats.End{})
			}
		})
	}
}
