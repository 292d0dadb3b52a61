package telemetry

import (
	"maps"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

// Which exporters the environment asks for, and how they are described;
// building them connects nowhere.
func TestExporterSelection(t *testing.T) {
	t.Parallel()
	const (
		ep  = envOTLPPrefix + "ENDPOINT"
		tep = envOTLPTracesPrefix + "ENDPOINT"
		pr  = envOTLPPrefix + "PROTOCOL"
	)
	tests := []struct {
		name      string
		env       map[string]string
		exporting string
		warnings  []string
	}{
		{"nothing set", nil, "", nil},
		{"blank values are unset", map[string]string{ep: " ", envTracesExporter: " "}, "", nil},
		{"none wins over an endpoint", map[string]string{envTracesExporter: "none", ep: "http://c:4318"}, "", nil},
		{"SDK disabled", map[string]string{envSDKDisabled: "TRUE", ep: "http://c:4318"}, "", nil},
		{"SDK disabled not a bool", map[string]string{envSDKDisabled: "yes", ep: "http://c:4318"},
			"otlp (http/protobuf) to http://c:4318/v1/traces", []string{envSDKDisabled, "value=yes", "using=false"}},
		{"endpoint alone means otlp over http/protobuf", map[string]string{ep: "http://c:4318"},
			"otlp (http/protobuf) to http://c:4318/v1/traces", nil},
		{"traces endpoint alone", map[string]string{tep: "https://c"},
			"otlp (http/protobuf) to https://c/", nil},
		{"traces endpoint wins", map[string]string{tep: "https://c/t", ep: "http://other:4318"},
			"otlp (http/protobuf) to https://c/t", nil},
		{"no userinfo, query or fragment", map[string]string{ep: "http://user:pw@c:4318/base/?q=1#f"},
			"otlp (http/protobuf) to http://c:4318/base/v1/traces", nil},
		{"otlp without endpoint: grpc default", map[string]string{envTracesExporter: "otlp", pr: "grpc"},
			"otlp (grpc) to http://localhost:4317", nil},
		{"otlp without endpoint: http default", map[string]string{envTracesExporter: "OTLP"},
			"otlp (http/protobuf) to http://localhost:4318/v1/traces", nil},
		{"grpc https", map[string]string{ep: "https://c:4317", pr: "grpc"}, "otlp (grpc) to https://c:4317", nil},
		{"grpc bare host is TLS", map[string]string{ep: "c:4317", pr: "grpc"}, "otlp (grpc) to https://c:4317", nil},
		{"grpc bare host insecure", map[string]string{ep: "c:4317", pr: "GRPC", envOTLPTracesPrefix + "INSECURE": "true"},
			"otlp (grpc) to http://c:4317", nil},
		{"insecure does not override https", map[string]string{ep: "https://c:4317", pr: "grpc", envOTLPPrefix + "INSECURE": "true"},
			"otlp (grpc) to https://c:4317", nil},
		{"traces protocol wins", map[string]string{ep: "http://c:4318", pr: "grpc", envOTLPTracesPrefix + "PROTOCOL": "http/json"},
			"otlp (http/json) to http://c:4318/v1/traces", nil},
		{"list, deduplicated", map[string]string{envTracesExporter: "console, otlp,console", ep: "http://c:4318"},
			"console, otlp (http/protobuf) to http://c:4318/v1/traces", nil},
		{"unknown exporter", map[string]string{envTracesExporter: "zipkin"}, "",
			[]string{envTracesExporter, "value=zipkin"}},
		{"unknown protocol", map[string]string{ep: "http://c:4318", pr: "gprc"},
			"otlp (http/protobuf) to http://c:4318/v1/traces", []string{pr, "value=gprc", "using=http/protobuf"}},
		{"bad endpoint scheme", map[string]string{ep: "ftp://c"},
			"otlp (http/protobuf) to http://localhost:4318/v1/traces", []string{ep, "scheme"}},
		{"bad grpc endpoint", map[string]string{tep: "http://", pr: "grpc"},
			"otlp (grpc) to http://localhost:4317", []string{tep, "not a URL with a host"}},
		{"bad timeout and compression", map[string]string{ep: "http://c:4318", envOTLPPrefix + "TIMEOUT": "10s", envOTLPTracesPrefix + "COMPRESSION": "zstd"},
			"otlp (http/protobuf) to http://c:4318/v1/traces",
			[]string{envOTLPPrefix + "TIMEOUT", "value=10s", envOTLPTracesPrefix + "COMPRESSION", "value=zstd"}},
		{"unreadable certificate", map[string]string{ep: "https://c:4318", envOTLPPrefix + "CERTIFICATE": "/nonexistent/ca.pem"},
			"otlp (http/protobuf) to https://c:4318/v1/traces", []string{envOTLPPrefix + "CERTIFICATE", "system's roots"}},
		{"client key without certificate", map[string]string{ep: "https://c:4318", envOTLPPrefix + "CLIENT_KEY": "/k.pem"},
			"otlp (http/protobuf) to https://c:4318/v1/traces", []string{envOTLPPrefix + "CLIENT_KEY", "no client certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, buf := setup(t, tt.env)
			if got := tel.Exporting(); got != tt.exporting {
				t.Errorf("Exporting() = %q, want %q", got, tt.exporting)
			}
			if got, want := len(tel.exporters), strings.Count(tt.exporting, ", ")+1; tt.exporting != "" && got != want {
				t.Errorf("%d exporters, want %d", got, want)
			}
			if err := tel.Shutdown(t.Context()); err != nil {
				t.Errorf("Shutdown with no spans: %v", err)
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

// Bad header pairs are skipped and reported by position; no value, good or
// bad, reaches the log.
func TestOTLPHeaders(t *testing.T) {
	t.Parallel()
	e, buf := testEnv(map[string]string{
		envOTLPPrefix + "HEADERS": "a=1, B = two%20words ,nokey-secret1,=secret2,bad header=secret3,c=secret4%zz,d=x=y",
	})
	got := e.otlpHeaders()
	want := map[string]string{"a": "1", "B": "two words", "d": "x=y"}
	if !maps.Equal(got, want) {
		t.Errorf("headers = %v, want %v", got, want)
	}
	out := buf.String()
	for _, w := range []string{"pair 3", "pair 4", "pair 5", `header \"c\"`} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "secret") {
		t.Errorf("a header value reached the log:\n%s", out)
	}

	e, _ = testEnv(map[string]string{envOTLPPrefix + "HEADERS": "a=1", envOTLPTracesPrefix + "HEADERS": "b=2"})
	if got := e.otlpHeaders(); !maps.Equal(got, map[string]string{"b": "2"}) {
		t.Errorf("traces headers should replace the generic ones: %v", got)
	}
}

func TestResource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, serviceName string
		env               map[string]string
		want              map[attribute.Key]string
		warnings          []string
	}{
		{"default", DefaultServiceName, nil,
			map[attribute.Key]string{"service.name": "fetchd", "telemetry.sdk.language": "go", "telemetry.sdk.name": "opentelemetry"}, nil},
		{"config name", "fetchd-canary", nil, map[attribute.Key]string{"service.name": "fetchd-canary"}, nil},
		{"resource attributes override config", "fetchd-canary",
			map[string]string{envResourceAttributes: "service.name=from-attrs, deployment.environment.name = prod%2Ceu ,broken,=x,bad=%zz"},
			map[attribute.Key]string{"service.name": "from-attrs", "deployment.environment.name": "prod,eu", "bad": "%zz"},
			[]string{"pair 3", "pair 4", `\"bad\"`}},
		{"OTEL_SERVICE_NAME overrides all", "fetchd-canary",
			map[string]string{envResourceAttributes: "service.name=from-attrs,service.version=9", envServiceName: " from-env "},
			map[attribute.Key]string{"service.name": "from-env", "service.version": "9"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, buf := testEnv(tt.env)
			res, err := e.resource(t.Context(), tt.serviceName)
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if v, _ := res.Set().Value(k); v.String() != want {
					t.Errorf("%s = %q, want %q", k, v.String(), want)
				}
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
			if strings.Contains(out, "%zz") || strings.Contains(out, "broken") {
				t.Errorf("a resource value reached the log:\n%s", out)
			}
		})
	}
}

func TestPropagatorFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value    string
		fields   []string
		warnings []string
	}{
		{"", []string{"traceparent", "tracestate", "baggage"}, nil},
		{"tracecontext", []string{"traceparent", "tracestate"}, nil},
		{"none", nil, nil},
		{"b3, baggage", []string{"baggage"}, []string{envPropagators, "value=b3"}},
	}
	for _, tt := range tests {
		e, buf := testEnv(map[string]string{envPropagators: tt.value})
		got := e.propagator().Fields()
		if !equalSets(got, tt.fields) {
			t.Errorf("OTEL_PROPAGATORS=%q: fields %v, want %v", tt.value, got, tt.fields)
		}
		out := buf.String()
		if len(tt.warnings) == 0 && out != "" {
			t.Errorf("OTEL_PROPAGATORS=%q: unexpected log:\n%s", tt.value, out)
		}
		for _, w := range tt.warnings {
			if !strings.Contains(out, w) {
				t.Errorf("log lacks %q:\n%s", w, out)
			}
		}
	}
}

func equalSets(a, b []string) bool {
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	if len(m) != len(b) {
		return false
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// OTEL_TRACES_EXPORTER=console writes ended spans to Config.Console.
func TestConsoleExporter(t *testing.T) {
	t.Parallel()
	out := &logBuffer{}
	log, buf := testLogger()
	tel, err := Setup(t.Context(), Config{Getenv: mapEnv(map[string]string{envTracesExporter: "console"}), Logger: log, Console: out})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Exporting() != "console" {
		t.Errorf("Exporting() = %q", tel.Exporting())
	}
	_, span := tel.TracerProvider().Tracer("test").Start(t.Context(), "console-span")
	span.End()
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"Name":"console-span"`) {
		t.Errorf("console output lacks the span:\n%s", out)
	}
	if buf.String() != "" {
		t.Errorf("unexpected log:\n%s", buf)
	}
}
