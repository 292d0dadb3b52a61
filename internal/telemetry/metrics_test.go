package telemetry

import (
	"bytes"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// getMetrics GETs /metrics from a real server over h and returns the body,
// after checking the status and that it is the Prometheus text format.
func getMetrics(t *testing.T, h http.Handler) []byte {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if f := expfmt.ResponseFormat(resp.Header); f.FormatType() != expfmt.TypeTextPlain {
		t.Fatalf("Content-Type %q is not the Prometheus text format", resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// scrape GETs /metrics from a real server over h and parses the text.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	// prometheus/common v0.73: the zero TextParser has no validation
	// scheme; NewTextParser sets one.
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(getMetrics(t, h)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestMetricsHandler(t *testing.T) {
	t.Parallel()
	tel, buf := setup(t, nil)
	meter := tel.MeterProvider().Meter("github.com/fetchd/fetchd/internal/outbound")
	attempts, err := meter.Int64Counter("fetchd.outbound.attempts")
	if err != nil {
		t.Fatal(err)
	}
	duration, err := meter.Float64Histogram("fetchd.fetch.duration", metric.WithUnit("s"))
	if err != nil {
		t.Fatal(err)
	}
	attrs := metric.WithAttributes(attribute.String("target.host", "example.com"), attribute.String("outcome", "2xx"))
	attempts.Add(t.Context(), 2, attrs)
	duration.Record(t.Context(), 0.02, attrs)
	duration.Record(t.Context(), 3, attrs)

	fams := scrape(t, tel.MetricsHandler())

	c := fams["fetchd_outbound_attempts_total"]
	if c.GetType() != dto.MetricType_COUNTER || len(c.GetMetric()) != 1 {
		t.Fatalf("fetchd_outbound_attempts_total = %v, want one counter series", c)
	}
	want := map[string]string{"target_host": "example.com", "outcome": "2xx"}
	if got := labels(c.GetMetric()[0]); !maps.Equal(got, want) {
		t.Errorf("counter labels = %v, want %v (no otel_scope_* labels)", got, want)
	}
	if v := c.GetMetric()[0].GetCounter().GetValue(); v != 2 {
		t.Errorf("counter = %v, want 2", v)
	}

	h := fams["fetchd_fetch_duration_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM || len(h.GetMetric()) != 1 {
		t.Fatalf("fetchd_fetch_duration_seconds = %v, want one histogram series", h)
	}
	if got := labels(h.GetMetric()[0]); !maps.Equal(got, want) {
		t.Errorf("histogram labels = %v, want %v", got, want)
	}
	hist := h.GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 2 || hist.GetSampleSum() != 3.02 {
		t.Errorf("histogram count %d sum %v, want 2 and 3.02", hist.GetSampleCount(), hist.GetSampleSum())
	}
	var bounds []float64
	for _, b := range hist.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		if b.GetUpperBound() == 0.025 && b.GetCumulativeCount() != 1 {
			t.Errorf("le=0.025 holds %d, want 1", b.GetCumulativeCount())
		}
	}
	if !slices.Equal(bounds[:len(DurationBuckets())], DurationBuckets()) {
		t.Errorf("bucket bounds %v, want DurationBuckets %v", bounds, DurationBuckets())
	}

	if g := fams["go_goroutines"]; g.GetType() != dto.MetricType_GAUGE || g.GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Errorf("go_goroutines = %v", g)
	}
	if fams["process_cpu_seconds_total"] == nil {
		t.Errorf("no process_cpu_seconds_total: the process collector is missing")
	}
	if ti := fams["target_info"]; ti == nil || labels(ti.GetMetric()[0])["service_name"] != DefaultServiceName {
		t.Errorf("target_info = %v, want service_name=%q", ti, DefaultServiceName)
	}
	if out := buf.String(); out != "" {
		t.Errorf("unexpected log:\n%s", out)
	}

	// After Shutdown the runtime metrics are still served.
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fams := scrape(t, tel.MetricsHandler()); fams["go_goroutines"] == nil {
		t.Errorf("no go_goroutines after Shutdown")
	}
}

// Each Telemetry has its own registry: two in one process do not collide
// and neither touches the default registry.
func TestMetricsRegistryPrivate(t *testing.T) {
	t.Parallel()
	a, _ := setup(t, nil)
	b, _ := setup(t, nil)
	c, _ := a.MeterProvider().Meter("test").Int64Counter("fetchd.only.in.a")
	c.Add(t.Context(), 1)
	if fams := scrape(t, b.MetricsHandler()); fams["fetchd_only_in_a_total"] != nil {
		t.Errorf("b serves a's metric")
	}
	if fams := scrape(t, a.MetricsHandler()); fams["fetchd_only_in_a_total"] == nil {
		t.Errorf("a does not serve its own metric")
	}
	def, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range def {
		if f.GetName() == "fetchd_only_in_a_total" || f.GetName() == "target_info" {
			t.Errorf("%s is in the default registry", f.GetName())
		}
	}
}
