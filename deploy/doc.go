// Package deploy holds the docker-compose stack's configuration; its test checks the stack's wiring.
//
// The stack is ../docker-compose.yaml (two fetchd instances built from
// ../Dockerfile, Redis as their shared idempotency store, an OpenTelemetry
// Collector forwarding traces to Jaeger, Prometheus scraping /metrics) and the
// files it mounts from this directory: otel-collector.yaml, prometheus.yml and
// policy.yaml. No Docker engine is needed to check it: the tests load the
// compose file with compose-go (interpolation, schema validation and
// consistency checks included) and hold every cross-file reference to the
// files it points at — a flag to cmd/fetchd's flags, an endpoint to the
// receiver that listens on it, a scrape target to the port published for it.
//
// The package has no code; it exists for its tests.
package deploy
