package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestMeasurements: a cached pair records exactly the attributes
// metric.WithAttributes would, one series per pair, and costs no
// allocation once cached.
func TestMeasurements(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	counter, err := mp.Meter("test").Int64Counter("c")
	if err != nil {
		t.Fatal(err)
	}
	hist, err := mp.Meter("test").Float64Histogram("h")
	if err != nil {
		t.Fatal(err)
	}
	c := NewMeasurements("target.host", "outcome")
	ctx := context.Background()
	for range 3 {
		counter.Add(ctx, 1, c.Get("example.com", "2xx").Add...)
		hist.Record(ctx, 0.5, c.Get("example.com", "2xx").Record...)
	}
	counter.Add(ctx, 1, c.Get("example.com", "5xx").Add...)
	if first, again := c.Get("a", "b"), c.Get("a", "b"); first != again {
		t.Fatal("Get does not return the cached Measurement")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[attribute.Distinct]int64{}
	var hcount uint64
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				got[p.Attributes.Equivalent()] = p.Value
			}
		case metricdata.Histogram[float64]:
			for _, p := range d.DataPoints {
				hcount += p.Count
			}
		}
	}
	ok := attribute.NewSet(attribute.String("target.host", "example.com"), attribute.String("outcome", "2xx"))
	bad := attribute.NewSet(attribute.String("outcome", "5xx"), attribute.String("target.host", "example.com"))
	if len(got) != 2 || got[ok.Equivalent()] != 3 || got[bad.Equivalent()] != 1 || hcount != 3 {
		t.Fatalf("series = %v, histogram count %d", got, hcount)
	}
}

// BenchmarkMeasurement: a counter increment with two attributes, built per
// call with metric.WithAttributes against a cached Measurement:
//
//	go test -run '^$' -bench BenchmarkMeasurement -benchmem ./internal/telemetry/
func BenchmarkMeasurement(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	counter, _ := mp.Meter("test").Int64Counter("c")
	ctx := context.Background()
	b.Run("WithAttributes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			counter.Add(ctx, 1, metric.WithAttributes(attribute.String("target.host", "example.com"), attribute.String("outcome", "2xx")))
		}
	})
	b.Run("Measurements", func(b *testing.B) {
		c := NewMeasurements("target.host", "outcome")
		b.ReportAllocs()
		for b.Loop() {
			counter.Add(ctx, 1, c.Get("example.com", "2xx").Add...)
		}
	})
}
