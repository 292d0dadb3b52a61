package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ExportError is returned by Telemetry.Shutdown when an exporter's last
// batches, up to and including the final flush, could not be exported:
// Batches batches holding Spans spans were dropped since its last success.
// Err is the last export error.
type ExportError struct {
	Exporter string // as Telemetry.Exporting describes it
	Batches  int
	Spans    int
	Err      error
}

func (e *ExportError) Error() string {
	return fmt.Sprintf("telemetry: %s: %d batches (%d spans) not exported since the last success: %v; check the collector and the OTEL_EXPORTER_OTLP_* settings",
		e.Exporter, e.Batches, e.Spans, e.Err)
}

func (e *ExportError) Unwrap() error { return e.Err }

// loggedExporter reports export errors on a logger instead of returning
// them to the batch span processor, which would hand them to the OTel
// global error handler. It logs the first failure after a success (or
// after start) and the recovery that ends a run of failures, so a dead
// collector costs two log lines, not one per batch. Safe for concurrent
// use.
type loggedExporter struct {
	exporter
	log *slog.Logger

	mu      sync.Mutex
	batches int // consecutive failed batches
	spans   int // spans in them
	last    error
}

func (l *loggedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := l.exporter.ExportSpans(ctx, spans)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.batches++
		l.spans += len(spans)
		l.last = err
		if l.batches == 1 {
			l.log.Warn("telemetry: trace export failed; spans are dropped until it recovers, which will be logged",
				slog.String("exporter", l.desc), slog.Int("spans", len(spans)), slog.Any("error", err))
		}
	case l.batches > 0:
		l.log.Info("telemetry: trace export recovered",
			slog.String("exporter", l.desc), slog.Int("dropped_batches", l.batches), slog.Int("dropped_spans", l.spans))
		l.batches, l.spans, l.last = 0, 0, nil
	}
	return nil
}

// Shutdown shuts the exporter down and returns an *ExportError, joined to
// the exporter's own error, if the last exports failed.
func (l *loggedExporter) Shutdown(ctx context.Context) error {
	err := l.exporter.Shutdown(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.batches > 0 {
		err = errors.Join(err, &ExportError{Exporter: l.desc, Batches: l.batches, Spans: l.spans, Err: l.last})
	}
	return err
}
