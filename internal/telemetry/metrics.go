package telemetry

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// DurationBuckets are the bucket boundaries, in seconds, of every histogram
// that does not bring its own (metric.WithExplicitBucketBoundaries): the
// semantic conventions' boundaries for HTTP request durations. The SDK's
// own default (0, 5, 10, ... 10000) is meant for milliseconds and would put
// every fetch in the first two buckets.
func DurationBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
}

// newMetrics builds the meter provider and the /metrics handler on a
// private registry that also holds the Go runtime and process collectors.
//
// Names follow Prometheus conventions (dots become underscores, unit and
// _total suffixes are added: fetchd.fetch.duration with unit "s" is
// fetchd_fetch_duration_seconds). The otel_scope_* labels are left off:
// every fetchd instrument has a unique name, so they would only repeat the
// instrumentation package on every series. target_info is kept: it is one
// series carrying service.name and service.version.
func newMetrics(res *resource.Resource, log *slog.Logger) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, nil, fmt.Errorf("telemetry: registering runtime metrics: %w", err)
		}
	}
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
		otelprom.WithAggregationSelector(aggregation),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: Prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{log},
		ErrorHandling: promhttp.ContinueOnError,
	})
	return mp, h, nil
}

// aggregation is the SDK's default aggregation with DurationBuckets for
// histograms.
func aggregation(kind sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	if kind == sdkmetric.InstrumentKindHistogram {
		return sdkmetric.AggregationExplicitBucketHistogram{Boundaries: DurationBuckets()}
	}
	return sdkmetric.DefaultAggregationSelector(kind)
}

// promLogger reports the handler's collection errors on the logger.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error("telemetry: serving /metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}
