package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"runtime/debug"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// DefaultServiceName is service.name when neither Config.ServiceName nor
// the environment names the service.
const DefaultServiceName = "fetchd"

// resource describes this process: service.name, service.version (the main
// module's version when the binary was built from a tagged module),
// telemetry.sdk.*, then OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME;
// a later source wins for the same key, so the precedence is the
// specification's: OTEL_SERVICE_NAME > service.name in
// OTEL_RESOURCE_ATTRIBUTES > serviceName. This is what resource.WithFromEnv
// does, read through e instead of os.Getenv.
func (e env) resource(ctx context.Context, serviceName string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName(serviceName)}
	if v := moduleVersion(); v != "" {
		attrs = append(attrs, semconv.ServiceVersion(v))
	}
	attrs = append(attrs, e.resourceAttributes()...)
	if name := e.str(envServiceName); name != "" {
		attrs = append(attrs, semconv.ServiceName(name))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: building the resource: %w", err)
	}
	return res, nil
}

// resourceAttributes parses OTEL_RESOURCE_ATTRIBUTES: comma-separated
// key=value pairs, values percent-decoded. A pair without "=" or with an
// empty key is ignored with a warning that names its position, not its
// text (resource attributes may carry something private).
func (e env) resourceAttributes() []attribute.KeyValue {
	v := e.str(envResourceAttributes)
	if v == "" {
		return nil
	}
	var attrs []attribute.KeyValue
	for i, pair := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			e.ignore(envResourceAttributes, "", fmt.Sprintf("pair %d is not key=value", i+1), "the other pairs")
			continue
		}
		val = strings.TrimSpace(val)
		if dec, err := url.PathUnescape(val); err == nil {
			val = dec
		} else {
			e.ignore(envResourceAttributes, "", fmt.Sprintf("the value of %q is not percent-encoded correctly", k), "the value as written")
		}
		attrs = append(attrs, attribute.String(k, val))
	}
	return attrs
}

// moduleVersion is the main module's version, or "" for a development
// build (no version to report).
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return ""
	}
	return bi.Main.Version
}
