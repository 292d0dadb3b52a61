package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

// manual is a meter on a real SDK provider read by a ManualReader.
func manual(t testing.TB) (metric.Meter, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp.Meter("test"), reader
}

// collectSum collects reader and returns the int64 sum name, by attribute
// set; found says it was collected at all.
func collectSum(t *testing.T, reader *sdkmetric.ManualReader, name string) (sum metricdata.Sum[int64], points map[attribute.Distinct]int64, found bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	points = map[attribute.Distinct]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T, want an int64 sum", name, m.Data)
			}
			for _, p := range s.DataPoints {
				if _, dup := points[p.Attributes.Equivalent()]; dup {
					t.Fatalf("%s: two points of %v", name, p.Attributes.Encoded(attribute.DefaultEncoder()))
				}
				points[p.Attributes.Equivalent()] = p.Value
			}
			return s, points, true
		}
	}
	return sum, points, false
}

func set(kvs ...string) attribute.Distinct {
	var attrs []attribute.KeyValue
	for i := 0; i+1 < len(kvs); i += 2 {
		attrs = append(attrs, attribute.String(kvs[i], kvs[i+1]))
	}
	s := attribute.NewSet(attrs...)
	return s.Equivalent()
}

// TestCounterConcurrent: adds from many goroutines, some creating their
// series at the same time, are read back exactly, as a cumulative
// monotonic sum with one point per attribute set and nothing else.
func TestCounterConcurrent(t *testing.T) {
	t.Parallel()
	meter, reader := manual(t)
	c, err := NewCounter(meter, "fetchd.test.attempts", "target.host", "outcome")
	if err != nil {
		t.Fatal(err)
	}
	outcomes := []string{"2xx", "5xx", "reset"}
	const goroutines, adds = 16, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			host := fmt.Sprintf("h%d.example", g%2)
			for i := range adds {
				c.Get(host, outcomes[i%len(outcomes)]).Add(1)
			}
		})
	}
	// Collections while counting: the callback reads the cells as they
	// are created and added to.
	wg.Go(func() {
		for range 20 {
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()

	s, got, _ := collectSum(t, reader, "fetchd.test.attempts")
	if !s.IsMonotonic || s.Temporality != metricdata.CumulativeTemporality {
		t.Errorf("monotonic %v, temporality %v: want a cumulative monotonic sum", s.IsMonotonic, s.Temporality)
	}
	want := map[attribute.Distinct]int64{}
	for g := range goroutines {
		host := fmt.Sprintf("h%d.example", g%2)
		for i := range adds {
			want[set("target.host", host, "outcome", outcomes[i%len(outcomes)])]++
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d series, want %d: %v", len(got), len(want), got)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("series %v = %d, want %d", k, got[k], n)
		}
	}
}

// TestUpDownCounterReturnsToZero: concurrent +1 and -1 leave 0, and the
// series stays, as a non-monotonic sum on the one key it is built with.
func TestUpDownCounterReturnsToZero(t *testing.T) {
	t.Parallel()
	meter, reader := manual(t)
	c, err := NewUpDownCounter(meter, "fetchd.test.in_flight", "target.host", "")
	if err != nil {
		t.Fatal(err)
	}
	held := c.Get("example.com", "")
	held.Add(1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				cell := c.Get("example.com", "")
				cell.Add(1)
				cell.Add(-1)
			}
		})
	}
	wg.Wait()
	s, got, _ := collectSum(t, reader, "fetchd.test.in_flight")
	if s.IsMonotonic {
		t.Error("an up-down counter is collected as monotonic")
	}
	if len(got) != 1 || got[set("target.host", "example.com")] != 1 {
		t.Fatalf("series = %v, want target.host=example.com at 1", got)
	}
	held.Add(-1)
	if _, got, _ := collectSum(t, reader, "fetchd.test.in_flight"); len(got) != 1 || got[set("target.host", "example.com")] != 0 {
		t.Fatalf("series = %v, want target.host=example.com at 0", got)
	}
}

// TestCounterSeriesAppear: nothing is collected before the first Get; a
// series made after a collection is in the next one, and the earlier
// series keep their totals.
func TestCounterSeriesAppear(t *testing.T) {
	t.Parallel()
	meter, reader := manual(t)
	c, err := NewCounter(meter, "fetchd.test.denied", "reason", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, got, found := collectSum(t, reader, "fetchd.test.denied"); found && len(got) != 0 {
		t.Fatalf("series before any Add: %v", got)
	}
	c.Get("loopback", "").Add(2)
	if _, got, _ := collectSum(t, reader, "fetchd.test.denied"); len(got) != 1 || got[set("reason", "loopback")] != 2 {
		t.Fatalf("series = %v, want reason=loopback at 2", got)
	}
	c.Get("metadata", "").Add(1)
	c.Get("loopback", "").Add(1)
	_, got, _ := collectSum(t, reader, "fetchd.test.denied")
	if len(got) != 2 || got[set("reason", "loopback")] != 3 || got[set("reason", "metadata")] != 1 {
		t.Fatalf("series = %v, want loopback 3, metadata 1", got)
	}
	if first, again := c.Get("a", ""), c.Get("a", ""); first != again {
		t.Error("Get does not return the series' cell")
	}
	if c.Get("a", "x") == c.Get("a", "y") {
		t.Error("two values of the second key share a cell")
	}
}

// TestCounterTwoOfOneName: two Counters of one name on one meter (two
// outbound Clients on one provider) are both collected, summed by
// attribute set, as the SDK's synchronous counter would count them.
func TestCounterTwoOfOneName(t *testing.T) {
	t.Parallel()
	meter, reader := manual(t)
	a, err := NewCounter(meter, "fetchd.test.retries", "target.host", "reason")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCounter(meter, "fetchd.test.retries", "target.host", "reason")
	if err != nil {
		t.Fatal(err)
	}
	a.Get("example.com", "backoff").Add(2)
	b.Get("example.com", "backoff").Add(3)
	b.Get("example.com", "retry_after").Add(1)
	_, got, _ := collectSum(t, reader, "fetchd.test.retries")
	backoff, after := set("target.host", "example.com", "reason", "backoff"), set("target.host", "example.com", "reason", "retry_after")
	if len(got) != 2 || got[backoff] != 5 || got[after] != 1 {
		t.Fatalf("series = %v, want backoff 5, retry_after 1", got)
	}
}

// TestCounterNoAllocation: counting on an existing series allocates
// nothing. Not parallel: AllocsPerRun refuses to run in a parallel test.
func TestCounterNoAllocation(t *testing.T) {
	meter, _ := manual(t)
	c, err := NewCounter(meter, "fetchd.test.allocs", "target.host", "outcome")
	if err != nil {
		t.Fatal(err)
	}
	c.Get("example.com", "2xx").Add(1)
	if n := testing.AllocsPerRun(100, func() { c.Get("example.com", "2xx").Add(1) }); n != 0 {
		t.Errorf("Get(...).Add allocates %v times, want 0", n)
	}
}

// TestCountersScrapeAsSDK: /metrics shows a Counter and an UpDownCounter
// exactly as it shows the SDK's synchronous Int64Counter and
// Int64UpDownCounter of the same name, unit, description and counts: the
// same HELP, TYPE (counter and gauge), names, labels and values; and an
// instrument never counted on is not shown.
func TestCountersScrapeAsSDK(t *testing.T) {
	t.Parallel()
	attemptsOpts := []metric.InstrumentOption{metric.WithUnit("{attempt}"), metric.WithDescription("Upstream attempts.")}
	inFlightOpts := []metric.InstrumentOption{metric.WithUnit("{request}"), metric.WithDescription("Attempts in flight.")}
	type count struct {
		host, outcome string
		n             int64
	}
	attempts := []count{{"example.com", "2xx", 3}, {"example.com", "5xx", 1}, {"_other", "reset", 2}}
	inFlight := []count{{"example.com", "", 2}, {"example.com", "", -2}, {"api.test", "", 1}}

	sync, _ := setup(t, nil)
	sm := sync.MeterProvider().Meter("github.com/fetchd/fetchd/internal/outbound")
	sa, _ := sm.Int64Counter("fetchd.outbound.attempts", instrumentOpts[metric.Int64CounterOption](attemptsOpts)...)
	si, _ := sm.Int64UpDownCounter("fetchd.outbound.requests.in_flight", instrumentOpts[metric.Int64UpDownCounterOption](inFlightOpts)...)
	_, _ = sm.Int64Counter("fetchd.outbound.refusals")
	for _, c := range attempts {
		sa.Add(t.Context(), c.n, metric.WithAttributes(attribute.String("target.host", c.host), attribute.String("outcome", c.outcome)))
	}
	for _, c := range inFlight {
		si.Add(t.Context(), c.n, metric.WithAttributes(attribute.String("target.host", c.host)))
	}

	async, _ := setup(t, nil)
	am := async.MeterProvider().Meter("github.com/fetchd/fetchd/internal/outbound")
	aa, err := NewCounter(am, "fetchd.outbound.attempts", "target.host", "outcome", instrumentOpts[metric.Int64ObservableCounterOption](attemptsOpts)...)
	if err != nil {
		t.Fatal(err)
	}
	ai, err := NewUpDownCounter(am, "fetchd.outbound.requests.in_flight", "target.host", "", instrumentOpts[metric.Int64ObservableUpDownCounterOption](inFlightOpts)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCounter(am, "fetchd.outbound.refusals", "target.host", "reason"); err != nil {
		t.Fatal(err)
	}
	for _, c := range attempts {
		aa.Get(c.host, c.outcome).Add(c.n)
	}
	for _, c := range inFlight {
		ai.Get(c.host, "").Add(c.n)
	}

	want, got := fetchdLines(t, sync.MetricsHandler()), fetchdLines(t, async.MetricsHandler())
	if !slices.Equal(got, want) {
		t.Fatalf("/metrics of the counters:\n%s\nwant, as the SDK's synchronous counters:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range []string{
		"# TYPE fetchd_outbound_attempts_total counter",
		`fetchd_outbound_attempts_total{outcome="2xx",target_host="example.com"} 3`,
		"# TYPE fetchd_outbound_requests_in_flight gauge",
		`fetchd_outbound_requests_in_flight{target_host="example.com"} 0`,
	} {
		if !slices.Contains(got, l) {
			t.Errorf("no line %q in:\n%s", l, strings.Join(got, "\n"))
		}
	}
	if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "refusals") }) {
		t.Errorf("a counter never counted on is shown")
	}
}

// instrumentOpts converts opts to the option type of one instrument kind.
func instrumentOpts[O any](opts []metric.InstrumentOption) []O {
	out := make([]O, 0, len(opts))
	for _, o := range opts {
		out = append(out, any(o).(O))
	}
	return out
}

// fetchdLines GETs /metrics from h and returns its lines about fetchd_*
// metrics, in order.
func fetchdLines(t *testing.T, h http.Handler) []string {
	t.Helper()
	body := getMetrics(t, h)
	var out []string
	for l := range strings.Lines(string(body)) {
		if strings.Contains(l, "fetchd_") {
			out = append(out, strings.TrimSuffix(l, "\n"))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no fetchd_ metric in /metrics:\n%s", body)
	}
	return out
}

// BenchmarkCounter: one count with two attributes through the SDK's
// synchronous Int64Counter.Add with a cached attribute set (Measurements),
// outside a span and inside a sampled one (which offers the count to the
// exemplar reservoir, as outbound's in-flight count was), against
// Counter.Get(...).Add; and the lookup alone, Measurements.Get (a read
// lock) against Counter.Get (no lock), serially and in parallel:
//
//	go test -run '^$' -bench BenchmarkCounter -benchmem -count 6 ./internal/telemetry/
func BenchmarkCounter(b *testing.B) {
	meter, _ := manual(b)
	sdk, err := meter.Int64Counter("fetchd.bench.sdk")
	if err != nil {
		b.Fatal(err)
	}
	attrs := NewMeasurements("target.host", "outcome")
	c, err := NewCounter(meter, "fetchd.bench.counter", "target.host", "outcome")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sampled := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))
	for _, bc := range []struct {
		name string
		do   func()
	}{
		{"SDK", func() { sdk.Add(ctx, 1, attrs.Get("example.com", "2xx").Add...) }},
		{"SDK-sampled", func() { sdk.Add(sampled, 1, attrs.Get("example.com", "2xx").Add...) }},
		{"Counter", func() { c.Get("example.com", "2xx").Add(1) }},
		{"Measurements.Get", func() { _ = attrs.Get("example.com", "2xx") }},
		{"Counter.Get", func() { _ = c.Get("example.com", "2xx") }},
	} {
		b.Run(bc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.do()
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bc.do()
				}
			})
		})
	}
}

// TestCounterPastTheCap: past the SDK's limit of series per instrument
// (2,000), a Counter keeps the same series on every collection, the first
// ones made, with the rest in the overflow series, exactly as the SDK's own
// counter given the same adds does. Reported in a map's order, a different
// set passed the cap on each scrape and the overflow value went up and
// down.
func TestCounterPastTheCap(t *testing.T) {
	t.Parallel()
	m, reader := manual(t)
	ours, err := NewCounter(m, "ours", "target.host", "outcome")
	if err != nil {
		t.Fatal(err)
	}
	sdk, err := m.Int64Counter("sdk")
	if err != nil {
		t.Fatal(err)
	}
	outcomes := []string{"2xx", "4xx", "5xx", "reset", "timeout", "refused", "tls", "dns"}
	for h := range 257 {
		for _, o := range outcomes {
			n := int64(h%7 + 1)
			host := fmt.Sprint("h", h)
			ours.Get(host, o).Add(n)
			sdk.Add(context.Background(), n, metric.WithAttributes(attribute.String("target.host", host), attribute.String("outcome", o)))
		}
	}
	_, want, _ := collectSum(t, reader, "sdk")
	if len(want) != 2000 {
		t.Fatalf("the SDK's counter has %d series, want 2000 (the cap): the test does not pass the cap", len(want))
	}
	for i := range 4 {
		_, got, _ := collectSum(t, reader, "ours")
		if len(got) != len(want) {
			t.Fatalf("collection %d: %d series, want %d", i, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("collection %d: series %v = %d, want %d (the SDK's counter)", i, k, got[k], v)
			}
		}
	}
}
