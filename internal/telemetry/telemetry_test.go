package telemetry

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// With no OTEL_* variable set there is no exporter and nothing is logged,
// yet spans are recorded with real trace IDs and propagate.
func TestSetupSilentEnvironment(t *testing.T) {
	t.Parallel()
	var asked []string
	var mu sync.Mutex
	log, buf := testLogger()
	tel, err := Setup(t.Context(), Config{
		Getenv: func(k string) string {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, k)
			return ""
		},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := tel.Exporting(); got != "" {
		t.Errorf("Exporting() = %q, want \"\"", got)
	}
	if len(tel.exporters) != 0 {
		t.Errorf("%d exporters built, want none", len(tel.exporters))
	}
	ctx, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "op")
	sc := span.SpanContext()
	if !sc.TraceID().IsValid() || !sc.SpanID().IsValid() || !sc.IsSampled() || span.IsRecording() {
		t.Errorf("span context %+v recording=%v, want a valid sampled span that records nothing (nothing exports it)", sc, span.IsRecording())
	}
	_, child := tel.TracerProvider().Tracer("test").Start(ctx, "child")
	if cc := child.SpanContext(); cc.TraceID() != sc.TraceID() || cc.SpanID() == sc.SpanID() || !cc.SpanID().IsValid() {
		t.Errorf("child span context %+v of %+v, want the same trace and a new span ID", cc, sc)
	}
	carrier := propagation.MapCarrier{}
	tel.Propagator().Inject(ctx, carrier)
	if tp := carrier.Get("traceparent"); !strings.Contains(tp, sc.TraceID().String()) {
		t.Errorf("traceparent = %q, want trace ID %s", tp, sc.TraceID())
	}
	span.End()
	c, err := tel.MeterProvider().Meter("test").Int64Counter("fetchd.test")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 1)
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if out := buf.String(); out != "" {
		t.Errorf("logged with a silent environment:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, k := range []string{envTracesExporter, envOTLPPrefix + "ENDPOINT", envOTLPTracesPrefix + "ENDPOINT", envTracesSampler, envServiceName} {
		if !slices.Contains(asked, k) {
			t.Errorf("Setup never asked Getenv for %s", k)
		}
	}
}

func TestSampler(t *testing.T) {
	t.Parallel()
	unsampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
	}))
	sampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))
	tests := []struct {
		name     string
		env      map[string]string
		parent   context.Context
		sampled  bool
		warnings []string
	}{
		{"default root", nil, context.Background(), true, nil},
		{"default follows unsampled parent", nil, unsampledParent, false, nil},
		{"always_off", map[string]string{envTracesSampler: "always_off"}, context.Background(), false, nil},
		{"case-insensitive", map[string]string{envTracesSampler: " ALWAYS_OFF "}, context.Background(), false, nil},
		{"always_on ignores parent", map[string]string{envTracesSampler: "always_on"}, unsampledParent, true, nil},
		{"parentbased_always_off root", map[string]string{envTracesSampler: "parentbased_always_off"}, context.Background(), false, nil},
		{"parentbased_always_off sampled parent", map[string]string{envTracesSampler: "parentbased_always_off"}, sampledParent, true, nil},
		{"traceidratio 0", map[string]string{envTracesSampler: "traceidratio", envTracesSamplerArg: "0"}, context.Background(), false, nil},
		{"parentbased_traceidratio 0", map[string]string{envTracesSampler: "parentbased_traceidratio", envTracesSamplerArg: "0"}, context.Background(), false, nil},
		{"traceidratio bad arg", map[string]string{envTracesSampler: "traceidratio", envTracesSamplerArg: "2"}, context.Background(), true,
			[]string{envTracesSamplerArg, "value=2"}},
		{"unknown sampler", map[string]string{envTracesSampler: "jaeger_remote", envTracesSamplerArg: "0"}, context.Background(), true,
			[]string{envTracesSampler, "jaeger_remote", "using=parentbased_always_on"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, buf := setup(t, tt.env)
			_, span := tel.TracerProvider().Tracer("test").Start(tt.parent, "op")
			defer span.End()
			sc := span.SpanContext()
			if !sc.TraceID().IsValid() {
				t.Errorf("trace ID invalid")
			}
			if sc.IsSampled() != tt.sampled {
				t.Errorf("sampled = %v, want %v", sc.IsSampled(), tt.sampled)
			}
			out := buf.String()
			if len(tt.warnings) == 0 && out != "" {
				t.Errorf("unexpected log:\n%s", out)
			}
			for _, w := range tt.warnings {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// sdktrace reads OTEL_TRACES_SAMPLER from the process environment itself;
// Setup's explicit sampler overrides it, and the process environment does
// not switch export on behind Getenv's back. Not parallel: t.Setenv.
func TestProcessEnvironmentDoesNotOverrideGetenv(t *testing.T) {
	t.Setenv(envTracesSampler, "always_off")
	t.Setenv(envServiceName, "from-process")
	t.Setenv(envOTLPPrefix+"ENDPOINT", "http://127.0.0.1:1")

	// The SDK on its own follows the process environment...
	plain := sdktrace.NewTracerProvider()
	_, span := plain.Tracer("test").Start(t.Context(), "op")
	if span.SpanContext().IsSampled() {
		t.Fatalf("sdktrace no longer reads OTEL_TRACES_SAMPLER itself; revisit sampler.go's comment")
	}
	span.End()
	_ = plain.Shutdown(t.Context())

	// ...Setup follows Getenv.
	tel, buf := setup(t, nil)
	_, span = tel.TracerProvider().Tracer("test").Start(t.Context(), "op")
	defer span.End()
	if !span.SpanContext().IsSampled() {
		t.Errorf("process OTEL_TRACES_SAMPLER=always_off overrode Getenv")
	}
	if got := tel.Exporting(); got != "" {
		t.Errorf("Exporting() = %q, want \"\" (Getenv sets no endpoint)", got)
	}
	if got := attrOf(tel, "service.name"); got != DefaultServiceName {
		t.Errorf("service.name = %q, want %q", got, DefaultServiceName)
	}
	if out := buf.String(); out != "" {
		t.Errorf("unexpected log:\n%s", out)
	}
}

func attrOf(tel *Telemetry, key attribute.Key) string {
	v, _ := tel.res.Set().Value(key)
	return v.String()
}

// Spans ended before Shutdown are exported exactly once whoever calls
// Shutdown and however often; later spans go nowhere.
func TestShutdownIdempotentAndFinal(t *testing.T) {
	t.Parallel()
	r := startGRPCReceiver(t)
	tel, buf := setup(t, map[string]string{
		envOTLPTracesPrefix + "ENDPOINT": "http://" + r.addr,
		envOTLPPrefix + "PROTOCOL":       "grpc",
	})
	tracer := tel.TracerProvider().Tracer("test")
	for _, name := range []string{"first", "second"} {
		_, span := tracer.Start(t.Context(), name)
		span.End()
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = tel.Shutdown(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Shutdown #%d: %v", i, err)
		}
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown again: %v", err)
	}
	_, span := tracer.Start(t.Context(), "late")
	span.End()
	c, _ := tel.MeterProvider().Meter("test").Int64Counter("late")
	c.Add(t.Context(), 1, metric.WithAttributes(attribute.String("k", "v")))

	var names []string
	for len(r.got) > 0 {
		for _, s := range flatten((<-r.got).spans) {
			names = append(names, s.span.GetName())
		}
	}
	if !slices.Equal(names, []string{"first", "second"}) {
		t.Errorf("exported %v, want [first second] once", names)
	}
	if out := buf.String(); out != "" {
		t.Errorf("unexpected log:\n%s", out)
	}
}
