package telemetry

import (
	"slices"
	"strings"

	"go.opentelemetry.io/otel/propagation"
)

// propagator returns the propagators OTEL_PROPAGATORS lists: W3C
// "tracecontext" and "baggage" (the default, both), or "none". Other
// propagators (b3, jaeger, xray, ...) are not built in; they are ignored
// with a warning.
func (e env) propagator() propagation.TextMapPropagator {
	v := e.str(envPropagators)
	if v == "" {
		return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	var seen []string
	var props []propagation.TextMapPropagator
	for _, name := range strings.Split(v, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" || slices.Contains(seen, name) {
			continue
		}
		seen = append(seen, name)
		switch name {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		case "none":
		default:
			e.ignore(envPropagators, name, "is not a propagator fetchd has (tracecontext, baggage, none)", "the others listed")
		}
	}
	return propagation.NewCompositeTextMapPropagator(props...)
}
