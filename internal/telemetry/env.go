package telemetry

import (
	"log/slog"
	"strings"
)

// Environment variable names Setup reads through Config.Getenv.
const (
	envSDKDisabled        = "OTEL_SDK_DISABLED"
	envServiceName        = "OTEL_SERVICE_NAME"
	envResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
	envPropagators        = "OTEL_PROPAGATORS"
	envTracesSampler      = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg   = "OTEL_TRACES_SAMPLER_ARG"
	envTracesExporter     = "OTEL_TRACES_EXPORTER"

	// The OTLP exporter's variables are OTEL_EXPORTER_OTLP_<KEY>, overridden
	// per key by OTEL_EXPORTER_OTLP_TRACES_<KEY>.
	envOTLPPrefix       = "OTEL_EXPORTER_OTLP_"
	envOTLPTracesPrefix = "OTEL_EXPORTER_OTLP_TRACES_"
)

// env reads the environment through an injected getenv and reports values
// it ignores on log. A value that is only white space counts as unset, as
// the specification says of empty values.
type env struct {
	get func(string) string
	log *slog.Logger
}

// str returns the trimmed value of name.
func (e env) str(name string) string { return strings.TrimSpace(e.get(name)) }

// otlp returns the OTLP exporter setting key: the traces-specific variable
// if set, else the generic one, and the name of the variable it came from
// ("" when neither is set).
func (e env) otlp(key string) (value, name string) {
	if v := e.str(envOTLPTracesPrefix + key); v != "" {
		return v, envOTLPTracesPrefix + key
	}
	if v := e.str(envOTLPPrefix + key); v != "" {
		return v, envOTLPPrefix + key
	}
	return "", ""
}

// bool reads a boolean the specification's way: only "true", in any case,
// is true; anything but "false" or empty is reported and taken as false.
func (e env) bool(name string) bool {
	v := e.str(name)
	switch {
	case strings.EqualFold(v, "true"):
		return true
	case v != "" && !strings.EqualFold(v, "false"):
		e.ignore(name, v, "is not true or false", "false")
	}
	return false
}

// ignore logs that the value of the variable name was not used, why, and
// what is used instead. value is "" when it must not be logged.
func (e env) ignore(name, value, problem, using string) {
	attrs := []any{slog.String("variable", name)}
	if value != "" {
		attrs = append(attrs, slog.String("value", value))
	}
	attrs = append(attrs, slog.String("problem", problem), slog.String("using", using))
	e.log.Warn("telemetry: ignoring an OTEL_* environment value; fix or unset it", attrs...)
}
