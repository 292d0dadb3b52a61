package service

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/calllog"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/outbound"
	"github.com/fetchd/fetchd/internal/telemetry"
)

// Idempotency outcomes, recorded as events on the Fetch span and counted in
// fetchd.idempotency.outcomes.
const (
	idemClaimed  = "claimed"
	idemReplayed = "replayed"
	idemConflict = "conflict"
	idemInFlight = "in_flight"
)

// meters are the service's metric instruments.
type meters struct {
	duration metric.Float64Histogram
	// idem counts by outcome with one atomic add (telemetry.Counter); nil
	// with no meter provider or the no-op one.
	idem  *telemetry.Counter
	hosts *telemetry.HostLabels
	// durationAttrs holds the attribute sets of duration by target.host
	// label (bounded by hosts) and outcome (a fixed list).
	durationAttrs *telemetry.Measurements
}

func newMeters(mp metric.MeterProvider) meters {
	metered := true
	switch mp.(type) {
	case nil:
		mp, metered = noop.NewMeterProvider(), false
	case noop.MeterProvider, *noop.MeterProvider:
		metered = false
	}
	m := mp.Meter("github.com/fetchd/fetchd/internal/service")
	// Errors from instrument creation only come with invalid names; the
	// instruments returned are then no-ops, which is the right fallback.
	duration, _ := m.Float64Histogram("fetchd.fetch.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of Fetch calls, by target host and outcome."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
	var idem *telemetry.Counter
	if metered {
		idem, _ = telemetry.NewCounter(m, "fetchd.idempotency.outcomes", "outcome", "",
			metric.WithDescription("Keyed Fetch calls by idempotency outcome: claimed, replayed, conflict, in_flight."))
	}
	return meters{
		duration: duration, idem: idem, hosts: telemetry.NewHostLabels(0),
		durationAttrs: telemetry.NewMeasurements("target.host", "outcome"),
	}
}

// callInfo is what one Fetch learned about itself, for telemetry.
type callInfo struct {
	host      string
	permitted bool // the caller may reach host
	applied   *fetchdv1.AppliedPolicy
}

// Host labels of calls that never reached a permitted target.
const (
	hostNone    = "none"     // the URL was not valid
	hostRefused = "_refused" // the caller or the egress guard refused it
)

// idempotencyEvent records an idempotency outcome on the Fetch span and in
// the counter.
func (s *Service) idempotencyEvent(ctx context.Context, outcome string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("idempotency."+outcome, trace.WithAttributes(attribute.String("fetchd.idempotency.outcome", outcome)))
	}
	if s.meters.idem != nil {
		s.meters.idem.Get(outcome, "").Add(1)
	}
}

// observe records a finished Fetch: the duration metric, the fields of its
// one log line (written by calllog's stats handler when the call finishes),
// and attributes on its span when the span records. Nothing recorded carries a body, a
// header, the URL's path or query, or the idempotency key.
//
// Only a target the caller may reach and the guard did not refuse gets its
// own host label, so refused targets cannot use up the bounded label set.
// raw is the error before it became a status.
func (s *Service) observe(ctx context.Context, id *identity.Identity, info *callInfo, resp *fetchdv1.FetchResponse, err, raw error, took time.Duration) {
	outcome := outcomeOf(resp, err)
	host := info.host
	var label string
	switch {
	case host == "":
		host, label = hostNone, hostNone
	case !info.permitted || errors.Is(raw, egress.ErrDenied):
		label = hostRefused
	default:
		label = s.meters.hosts.Label(host)
	}
	s.meters.duration.Record(ctx, took.Seconds(), s.meters.durationAttrs.Get(label, outcome).Record...)

	attempts, stopped := len(resp.GetAttempts()), resp.GetRetryStopped()
	if resp == nil {
		attempts, stopped = failedAttempts(raw)
	}
	p := info.applied
	if rec := calllog.FromContext(ctx); rec != nil {
		rec.Add(slog.String("caller", id.Name), slog.String("target_host", host), slog.String("outcome", outcome))
		if p != nil {
			rec.Add(slog.String("policy", p.GetName()))
		}
		if resp != nil {
			rec.Add(slog.Uint64("status", uint64(resp.GetStatus())), slog.Bool("replayed", resp.GetReplayed()))
		}
		rec.Add(slog.Int("attempts", attempts))
		if stopped != "" {
			rec.Add(slog.String("retry_stopped", stopped))
		}
	}

	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 12)
	attrs = append(attrs,
		attribute.String("fetchd.caller", id.Name),
		attribute.String("fetchd.target.host", host),
		attribute.String("fetchd.outcome", outcome))
	if p != nil {
		// What ran, after precedence and caps, so the trace shows it too.
		attrs = append(attrs,
			attribute.String("fetchd.policy", p.GetName()),
			attribute.String("fetchd.policy.target_rule", p.GetTargetRule()),
			attribute.Int("fetchd.policy.max_attempts", int(p.GetRetry().GetMaxAttempts())),
			attribute.Float64("fetchd.policy.total_timeout", p.GetTimeouts().GetTotal().AsDuration().Seconds()))
		if len(p.GetClamped()) > 0 {
			attrs = append(attrs, attribute.StringSlice("fetchd.policy.clamped", p.GetClamped()))
		}
	}
	if resp != nil {
		attrs = append(attrs,
			attribute.Int("fetchd.upstream.status", int(resp.GetStatus())),
			attribute.Bool("fetchd.replayed", resp.GetReplayed()))
	}
	attrs = append(attrs, attribute.Int("fetchd.attempts", attempts))
	if stopped != "" {
		attrs = append(attrs, attribute.String("fetchd.retry_stopped", stopped))
	}
	span.SetAttributes(attrs...)
}

// failedAttempts reads the attempt count and stop reason of a failure.
func failedAttempts(err error) (int, string) {
	var (
		exhausted *outbound.ExhaustedError
		tooLarge  *outbound.BodyTooLargeError
	)
	switch {
	case errors.As(err, &exhausted):
		return len(exhausted.Attempts), exhausted.Stopped
	case errors.As(err, &tooLarge):
		return len(tooLarge.Attempts), ""
	}
	return 0, ""
}

// outcomeOf is the metric outcome: the HTTP status class of an answer, or
// the gRPC code's canonical name in lower case.
func outcomeOf(resp *fetchdv1.FetchResponse, err error) string {
	if err == nil {
		if c := resp.GetStatus() / 100; c >= 1 && c <= 5 {
			return statusClasses[c]
		}
		return "other"
	}
	if c := status.Code(err); int(c) < len(codeNames) {
		return codeNames[c]
	}
	return codeName(status.Code(err))
}

var statusClasses = [...]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// codeNames holds codeName of every code gRPC defines, built once.
var codeNames = func() []string {
	names := make([]string, codes.Unauthenticated+1)
	for c := range names {
		names[c] = codeName(codes.Code(c))
	}
	return names
}()

// codeName turns codes.DeadlineExceeded into "deadline_exceeded".
func codeName(c codes.Code) string {
	name := c.String()
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// traceID is the hex trace ID of ctx's span, "" when there is none.
func traceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
