package telemetry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config configures Setup. The zero Config is usable.
type Config struct {
	// ServiceName is service.name unless OTEL_SERVICE_NAME, or service.name
	// in OTEL_RESOURCE_ATTRIBUTES, says otherwise; default DefaultServiceName.
	ServiceName string
	// Getenv reads the OTEL_* variables Setup honours (see the package
	// documentation); default os.Getenv.
	Getenv func(string) string
	// Logger receives trace export failures and recoveries, warnings about
	// OTEL_* values that are ignored, and /metrics collection errors;
	// default slog.Default(). Nothing is logged when the environment sets
	// no OTEL_* variable.
	Logger *slog.Logger
	// Console is where OTEL_TRACES_EXPORTER=console writes spans, one JSON
	// document each; default os.Stdout.
	Console io.Writer
}

// Telemetry holds fetchd's tracer and meter providers, the propagator and
// the /metrics handler. Its methods are safe for concurrent use. Shutdown
// it when the daemon stops; it sets no OTel or Prometheus globals.
type Telemetry struct {
	tp        *sdktrace.TracerProvider
	spans     trace.TracerProvider // tp, or unrecorded when nothing exports
	mp        *sdkmetric.MeterProvider
	prop      propagation.TextMapPropagator
	metrics   http.Handler
	res       *resource.Resource
	exporters []*loggedExporter
	exporting string

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup builds the providers from cfg and the environment. The tracer
// provider samples per OTEL_TRACES_SAMPLER (default parentbased_always_on);
// every span, sampled or not, carries a real trace ID. Each exporter the
// environment asks for gets a batch span processor; with none, spans record
// nothing (see TracerProvider). The meter provider feeds the Prometheus
// handler only; metrics are never pushed. Malformed OTEL_* values are ignored with a warning (see
// the package documentation); Setup fails only if an exporter or the
// registry cannot be built.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if cfg.ServiceName == "" {
		cfg.ServiceName = DefaultServiceName
	}
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	e := env{get: cfg.Getenv, log: cfg.Logger}

	res, err := e.resource(ctx, cfg.ServiceName)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{res: res, prop: e.propagator()}
	sampler := e.sampler()
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	}
	var desc []string
	for _, name := range e.exporterNames() {
		exp, err := e.newExporter(ctx, name, cfg.Console)
		if err != nil {
			return nil, errors.Join(err, t.shutdownExporters(ctx))
		}
		le := &loggedExporter{exporter: exp, log: cfg.Logger}
		t.exporters = append(t.exporters, le)
		desc = append(desc, exp.desc)
		opts = append(opts, sdktrace.WithBatcher(le))
	}
	t.exporting = strings.Join(desc, ", ")

	mp, h, err := newMetrics(res, cfg.Logger)
	if err != nil {
		return nil, errors.Join(err, t.shutdownExporters(ctx))
	}
	t.mp, t.metrics = mp, h
	t.tp = sdktrace.NewTracerProvider(opts...)
	t.spans = t.tp
	if len(t.exporters) == 0 {
		t.spans = &unrecorded{sampler: sampler}
	}
	return t, nil
}

// shutdownExporters releases the exporters of a failed Setup.
func (t *Telemetry) shutdownExporters(ctx context.Context) error {
	var err error
	for _, e := range t.exporters {
		err = errors.Join(err, e.exporter.Shutdown(ctx))
	}
	return err
}

// TracerProvider returns the provider spans are made with: the SDK's when an
// exporter is set; otherwise one whose spans carry real, sampled-as-configured
// span contexts but record nothing (nothing would read it).
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.spans }

// MeterProvider returns the *sdkmetric.MeterProvider whose instruments
// MetricsHandler serves.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Propagator returns the text map propagator: W3C tracecontext and baggage
// unless OTEL_PROPAGATORS says otherwise.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.prop }

// MetricsHandler serves the meter provider's instruments plus Go runtime
// and process metrics in the Prometheus text format. After Shutdown it
// serves the runtime and process metrics only.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// Exporting describes where spans go, for the startup log line: "" when
// nowhere, else e.g. "otlp (grpc) to http://collector:4317" (exporters
// joined by ", "). It never holds credentials.
func (t *Telemetry) Exporting() string { return t.exporting }

// Shutdown flushes spans ended before it to the exporters and stops the
// tracer and meter providers, waiting at most until ctx is done. Spans and
// measurements after it are dropped. An export that failed up to the end
// is reported as an *ExportError. Shutdown is idempotent: later calls wait
// for the first and return its result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		t.shutdownErr = errors.Join(t.tp.Shutdown(ctx), t.mp.Shutdown(ctx))
	})
	return t.shutdownErr
}
