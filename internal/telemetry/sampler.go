package telemetry

import (
	"math"
	"strconv"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// sampler returns the sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// name; parentbased_always_on when unset. sdktrace reads the same two
// variables itself, but from os.Getenv and reporting bad values to the OTel
// global error handler; Setup passes this sampler explicitly instead, which
// overrides the SDK's own reading.
//
// Supported: always_on, always_off, traceidratio, parentbased_always_on,
// parentbased_always_off, parentbased_traceidratio. The ratio argument is a
// number in [0, 1], 1 when unset. An unknown sampler or a bad ratio is
// ignored with a warning, as the specification says.
func (e env) sampler() sdktrace.Sampler {
	const fallback = "parentbased_always_on"
	def := sdktrace.ParentBased(sdktrace.AlwaysSample())
	name := strings.ToLower(e.str(envTracesSampler))
	switch name {
	case "", fallback:
		return def
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(e.samplerRatio())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(e.samplerRatio()))
	}
	e.ignore(envTracesSampler, name,
		"is not a sampler fetchd has (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)",
		fallback)
	return def
}

func (e env) samplerRatio() float64 {
	arg := e.str(envTracesSamplerArg)
	if arg == "" {
		return 1
	}
	r, err := strconv.ParseFloat(arg, 64)
	if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
		e.ignore(envTracesSamplerArg, arg, "is not a ratio between 0 and 1", "1")
		return 1
	}
	return r
}
