// Package telemetry wires fetchd's OpenTelemetry providers and its
// Prometheus /metrics endpoint, and holds the pieces every instrumented
// package shares: URL redaction for url.full, bounded host labels, and
// counters whose hot path is one atomic add ([Counter]).
//
// Invariants:
//
//   - No globals are set. Setup never calls otel.SetTracerProvider,
//     otel.SetMeterProvider, otel.SetTextMapPropagator or
//     otel.SetErrorHandler, and never touches prometheus.DefaultRegisterer:
//     callers take the providers from a [Telemetry] and pass them on. Trace
//     export errors are reported on [Config.Logger] by wrapping each span
//     exporter, so they never reach the OTel global error handler.
//   - Nothing is exported unless the environment asks for it:
//     OTEL_TRACES_EXPORTER set to an exporter other than "none", or an OTLP
//     endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
//     With neither, no exporter exists, no goroutine dials anywhere and
//     nothing is logged; spans are still recorded with real trace IDs so
//     FetchResponse.trace_id can be set.
//   - Setup reads the OTEL_* variables it honours through [Config.Getenv]
//     and passes every resulting setting to the SDK explicitly, overriding
//     the SDK's own reading of the process environment (sampler, OTLP
//     exporter settings). Two things cannot be overridden: the SDK merges
//     the process environment's resource attributes underneath Setup's
//     (Setup's win on every key), and the SDK reads its tuning variables
//     (OTEL_BSP_*, span and attribute limits, the exemplar filter,
//     OTEL_GO_X_*) from the process environment itself. So in production
//     Getenv is os.Getenv; tests inject a map.
//   - Following the OTel specification, a malformed or unknown OTEL_* value
//     is ignored with a warning on the logger naming the variable and what
//     is used instead; it never stops the daemon. (The SDK's own reading
//     of the process environment may report the same bad value once more
//     through the OTel global error handler, which Setup leaves alone.)
//   - Metric label cardinality is bounded: hosts go through [HostLabels];
//     no label ever carries a path, a query, an address or a header value.
//     /metrics is served from a private prometheus.Registry that also holds
//     the Go runtime and process collectors.
//   - Redaction: url.full is written by [URLRedactor] (no userinfo, no
//     fragment, signature-like query values replaced by [Redacted]).
//     Authorization, Cookie, Proxy-Authorization and configured secret
//     headers never reach a span, a log line or a metric label; the values
//     of OTEL_EXPORTER_OTLP_HEADERS are never logged.
package telemetry
