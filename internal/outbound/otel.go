package outbound

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/telemetry"
)

// instrumentation names the tracer and the meter.
const instrumentation = "github.com/fetchd/fetchd/internal/outbound"

// fetchd's own span attributes and events (see the package documentation).
const (
	attrBackoffDuration = attribute.Key("fetchd.backoff.duration") // seconds, float
	attrBackoffReason   = attribute.Key("fetchd.backoff.reason")
	attrTransportResend = attribute.Key("fetchd.transport_resend")

	eventRetryStopped   = "fetchd.retry.stopped"
	attrRetryStopped    = attribute.Key("fetchd.retry.stopped.reason")
	eventAttemptRefused = "fetchd.attempt.refused"
	attrAttemptRefused  = attribute.Key("fetchd.attempt.refused.reason")
	eventEgressDenied   = "fetchd.egress.denied"
	attrEgressDenied    = attribute.Key("fetchd.egress.denied.reason")
)

// Metric attributes.
const (
	attrTargetHost = attribute.Key("target.host")
	attrOutcome    = attribute.Key("outcome")
	attrReason     = attribute.Key("reason")
)

// reasonTransportResend is the reason of a retry granted to net/http's own
// re-send (fetchd.outbound.retries): it has no wait, hence no backoff reason.
const reasonTransportResend = "transport_resend"

// Egress refusal classes: the reason label of fetchd.egress.denied.
const (
	DeniedLoopback  = "loopback"   // 127.0.0.0/8, ::1
	DeniedPrivate   = "private"    // RFC 1918, unique local fc00::/7, shared address space (CGNAT)
	DeniedLinkLocal = "link_local" // 169.254.0.0/16, fe80::/10
	DeniedMetadata  = "metadata"   // cloud metadata endpoints
	DeniedMulticast = "multicast"  // 224.0.0.0/4, ff00::/8
	DeniedReserved  = "reserved"   // every other special-purpose range
	DeniedOther     = "other"      // a refusal without an *egress.DeniedError, or an invalid address
)

// observer is a Client's telemetry: its tracer, propagator and instruments.
// A nil tracer means spans are off (the no-op provider), nil hosts means
// metrics are off: the hot path then builds no attribute at all.
type observer struct {
	tracer     trace.Tracer                  // nil: no spans
	propagator propagation.TextMapPropagator // nil: nothing injected
	fields     []string                      // the propagator's header names, canonical
	redactor   atomic.Pointer[telemetry.URLRedactor]

	hosts *telemetry.HostLabels // nil: no metrics
	// Counted with one atomic add each, read at collection
	// (telemetry.Counter): by host label and outcome or reason, by reason
	// alone (denied), by host label (inFlight).
	attempts, retries, refusals, denied *telemetry.Counter
	inFlight                            *telemetry.UpDownCounter
}

// newObserver builds the Client's telemetry from its options.
func newObserver(c *Client) *observer {
	o := &observer{propagator: c.propagator}
	r := telemetry.NewURLRedactor(c.redactParams...)
	o.redactor.Store(&r)
	if !c.propagatorSet {
		o.propagator = propagation.TraceContext{}
	}
	if o.propagator != nil {
		for _, f := range o.propagator.Fields() {
			o.fields = append(o.fields, textproto.CanonicalMIMEHeaderKey(f))
		}
	}
	switch tp := c.tracerProvider.(type) {
	case nil, tracenoop.TracerProvider, *tracenoop.TracerProvider:
	default:
		o.tracer = tp.Tracer(instrumentation, trace.WithSchemaURL(semconv.SchemaURL))
	}
	switch mp := c.meterProvider.(type) {
	case nil, metricnoop.MeterProvider, *metricnoop.MeterProvider:
	default:
		m := mp.Meter(instrumentation, metric.WithSchemaURL(semconv.SchemaURL))
		// The names and units are constants the API accepts; on an error
		// the counters still count and the SDK still collects them, so
		// there is nothing to do with it.
		o.attempts, _ = telemetry.NewCounter(m, "fetchd.outbound.attempts", attrTargetHost, attrOutcome, metric.WithUnit("{attempt}"),
			metric.WithDescription("Upstream attempts, one per real send, by target host and outcome (status class or failure class)."))
		o.retries, _ = telemetry.NewCounter(m, "fetchd.outbound.retries", attrTargetHost, attrReason, metric.WithUnit("{retry}"),
			metric.WithDescription("Retries granted, by target host and the reason of the wait before them."))
		o.refusals, _ = telemetry.NewCounter(m, "fetchd.outbound.refusals", attrTargetHost, attrReason, metric.WithUnit("{refusal}"),
			metric.WithDescription("Attempts the target's protection or the deadline did not allow, by target host and reason."))
		o.denied, _ = telemetry.NewCounter(m, "fetchd.egress.denied", attrReason, "", metric.WithUnit("{refusal}"),
			metric.WithDescription("Addresses the egress guard refused, by class of address."))
		o.inFlight, _ = telemetry.NewUpDownCounter(m, "fetchd.outbound.requests.in_flight", attrTargetHost, "", metric.WithUnit("{request}"),
			metric.WithDescription("Attempts holding or awaiting a connection to the target host."))
		o.hosts = telemetry.NewHostLabels(telemetry.DefaultMaxHosts)
	}
	return o
}

// WithTracerProvider makes every real send a CLIENT span of tp (see the
// package documentation). Default, and for nil: no spans (the no-op
// provider); the OTel globals are never read.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Client) { c.tracerProvider = tp }
}

// WithMeterProvider records fetchd.outbound.attempts, .retries, .refusals,
// .requests.in_flight and fetchd.egress.denied on mp. Default, and for nil:
// no metrics (the no-op provider); the OTel globals are never read.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *Client) { c.meterProvider = mp }
}

// WithPropagator sets how the trace context of each attempt is written into
// its request headers. Default: the W3C trace context
// (propagation.TraceContext: traceparent and tracestate); nil writes
// nothing. The OTel global propagator is never read.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *Client) { c.propagator, c.propagatorSet = p, true }
}

// WithRedactedQueryParams names query parameters whose values are replaced
// by "REDACTED" in url.full, on top of telemetry.DefaultRedactedQueryParams
// (names match case-insensitively). It adds to the names of earlier calls.
func WithRedactedQueryParams(names ...string) Option {
	return func(c *Client) { c.redactParams = append(c.redactParams, names...) }
}

// SetRedactedQueryParams replaces the names given by WithRedactedQueryParams
// (a policy reload): spans of hops that start afterwards redact the values
// of telemetry.DefaultRedactedQueryParams and names. Safe for concurrent use
// with Do.
func (c *Client) SetRedactedQueryParams(names ...string) {
	r := telemetry.NewURLRedactor(names...)
	c.obs.redactor.Store(&r)
}

// hopTelemetry is what every attempt of one hop records: the span name and
// the attributes every span of the hop starts with, and the target's host
// label. It is built once per hop, and only when spans or metrics are on.
type hopTelemetry struct {
	spanName  string               // the method, or "HTTP"
	spanAttrs []attribute.KeyValue // method, server.address, server.port, url.full
	hostLabel string               // target.host, bounded by HostLabels
	inFlight  *telemetry.Cell      // fetchd.outbound.requests.in_flight{target.host}

	// span is the live span of the hop's exchange in progress (exchanges
	// of a run never overlap), nil without a tracer. It is kept here, not
	// in the exchange, so that the exchange stays as small as it was
	// without telemetry.
	span trace.Span
}

// hop builds the telemetry of a hop sending method to u.
func (o *observer) hop(method string, u *url.URL) *hopTelemetry {
	t := &hopTelemetry{}
	host := u.Hostname()
	if o.tracer != nil {
		name, attrs := spanMethod(method)
		t.spanName = name
		t.spanAttrs = append(attrs,
			semconv.ServerAddressKey.String(host),
			semconv.ServerPortKey.Int(urlPort(u.Scheme, u.Port())),
			semconv.URLFullKey.String(o.redactor.Load().Full(u)),
		)
	}
	if o.hosts != nil {
		t.hostLabel = o.hosts.Label(host)
		t.inFlight = o.inFlight.Get(t.hostLabel, "")
	}
	return t
}

// spanMethod returns the span name and the method attributes of method: a
// method the HTTP conventions know is its own name; any other (case
// matters) is named "HTTP", with http.request.method "_OTHER" and the
// method itself in http.request.method_original.
func spanMethod(method string) (string, []attribute.KeyValue) {
	attrs := make([]attribute.KeyValue, 0, 5) // room for the hop's three
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch:
		return method, append(attrs, semconv.HTTPRequestMethodKey.String(method))
	}
	return "HTTP", append(attrs, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(method))
}

// urlPort returns port as a number, or the scheme's default port.
func urlPort(scheme, port string) int {
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	if scheme == "https" {
		return 443
	}
	return 80
}

// startTelemetry starts the exchange's live span (the final send of the
// exchange) under ctx, counts the attempt in flight, and writes the trace
// context into the request headers. It returns the context to send with and
// the headers to send (traceHeader). Without a tracer, the trace context
// written is the caller's (the span in the Do context), if any.
func (x *exchange) startTelemetry(ctx context.Context) (context.Context, http.Header) {
	r := x.r
	o := r.c.obs
	if o.hosts != nil {
		r.tel.inFlight.Add(1)
	}
	if o.tracer != nil {
		ctx, r.tel.span = o.tracer.Start(ctx, r.tel.spanName, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(x.start), trace.WithAttributes(r.tel.spanAttrs...))
	}
	return ctx, r.traceHeader(ctx)
}

// traceHeader returns the headers of an exchange sent under ctx: the run's
// own, with the trace context of ctx written in by the propagator in place
// of the caller's headers of the propagator's fields; without a valid span
// context (or a propagator), the run's own as they are.
//
// The trace context is written into a copy of r.header, as a rule: r.header
// is shared by every exchange of the run, and net/http may still read an
// earlier exchange's (its writer may still be sending it after RoundTrip
// returned). The first exchange that writes one, though, writes it into
// r.header itself while no one else has seen it (r.handed false), when
// the caller sent none of the propagator's fields: the run's own headers
// are then r.header without them (r.traced), which is what every later
// exchange copies and writes its own into, or sends without a trace
// context. No header map is modified once handed to net/http. The
// propagator must write only the fields it names (Fields), as
// propagation.TextMapPropagator requires.
func (r *run) traceHeader(ctx context.Context) http.Header {
	o := r.c.obs
	inject := o.propagator != nil && trace.SpanContextFromContext(ctx).IsValid()
	if !inject && !r.traced {
		return r.header
	}
	h := r.header
	switch {
	case r.handed, !r.traced && r.callerTraced():
		// A copy. The caller's own trace headers give way.
		h = h.Clone()
		if h == nil {
			h = make(http.Header, 2)
		}
	case inject:
		r.traced = true // written in place: no one has read r.header yet
	}
	for _, f := range o.fields {
		delete(h, f)
	}
	if inject {
		o.propagator.Inject(ctx, headerCarrier(h))
	}
	return h
}

// callerTraced reports whether r.header holds any of the propagator's
// fields, which only the caller can have put there (r.traced false).
func (r *run) callerTraced() bool {
	for _, f := range r.c.obs.fields {
		if _, ok := r.header[f]; ok {
			return true
		}
	}
	return false
}

// headerCarrier is propagation.HeaderCarrier, but for Set of the W3C trace
// context and baggage names, which it writes under their canonical names
// as they are rather than canonicalising each one anew (a new string per
// call). Set of any other name is http.Header.Set's, and so is the result.
type headerCarrier http.Header

func (c headerCarrier) Get(key string) string { return propagation.HeaderCarrier(c).Get(key) }
func (c headerCarrier) Keys() []string        { return propagation.HeaderCarrier(c).Keys() }

func (c headerCarrier) Set(key, value string) {
	var name string
	switch key {
	case "traceparent":
		name = "Traceparent"
	case "tracestate":
		name = "Tracestate"
	case "baggage":
		name = "Baggage"
	default:
		http.Header(c).Set(key, value)
		return
	}
	c[name] = []string{value}
}

// endTelemetry ends the attempt's count in flight; x.release calls it
// once, when the attempt is over.
func (x *exchange) endTelemetry() {
	if o := x.r.c.obs; o.hosts != nil {
		x.r.tel.inFlight.Add(-1)
	}
}

// observe records the exchange's sends, recs (from records): a span for
// each send net/http repeated on its own, created after the fact with its
// own start and end, and the end of the live span, which is the last send,
// at end; an attempt counted for each; and a guard refusal.
func (x *exchange) observe(recs []Attempt, end time.Time) {
	r := x.r
	o := r.c.obs
	last := recs[len(recs)-1]
	if last.Error == ClassDenied {
		r.egressDenied(x.err)
	}
	if o.hosts != nil {
		for _, a := range recs {
			o.attempts.Get(r.tel.hostLabel, attemptOutcome(a)).Add(1)
		}
	}
	if o.tracer == nil {
		return
	}
	live := r.tel.span
	r.tel.span = nil
	x.mu.Lock()
	repeated, conn := x.repeated, x.tryConn
	x.mu.Unlock()
	for i, s := range repeated {
		if i >= len(recs)-1 {
			break // a send repeated after records ran: not in the log either
		}
		_, span := o.tracer.Start(r.caller, r.tel.spanName, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(s.start), trace.WithAttributes(r.tel.spanAttrs...))
		span.SetAttributes(attrTransportResend.Bool(true))
		endSpan(span, recs[i], i == 0, s.end)
	}
	if conn != nil {
		if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
			ap := ta.AddrPort()
			live.SetAttributes(semconv.NetworkPeerAddressKey.String(ap.Addr().Unmap().String()),
				semconv.NetworkPeerPortKey.Int(int(ap.Port())))
		}
	}
	endSpan(live, last, len(recs) == 1, end)
}

// endSpan sets the outcome of send a on span and ends it at end. first says
// a is the exchange's first send, which carries the wait before it.
func endSpan(span trace.Span, a Attempt, first bool, end time.Time) {
	if a.Number > 1 {
		span.SetAttributes(semconv.HTTPRequestResendCountKey.Int(a.Number - 1))
	}
	if first && a.BackoffReason != "" {
		span.SetAttributes(attrBackoffDuration.Float64(a.Backoff.Seconds()), attrBackoffReason.String(a.BackoffReason))
	}
	if a.Status != 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCodeKey.Int(a.Status))
	}
	switch {
	case a.Status >= 400:
		// The status code says it all; the conventions want no description.
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(a.Status)))
		span.SetStatus(codes.Error, "")
	case a.Error != "":
		span.SetAttributes(semconv.ErrorTypeKey.String(a.Error))
		span.SetStatus(codes.Error, statusDescription(a))
	}
	span.End(trace.WithTimestamp(end))
}

// statusDescription is the span status description of a failed send: its
// class and detail. The detail never holds the URL's query or credentials
// (redact), nor a header value.
func statusDescription(a Attempt) string {
	if a.Detail == "" {
		return a.Error
	}
	return a.Error + ": " + a.Detail
}

// attemptOutcome is the outcome label of an attempt: its failure class, else its
// status class ("2xx").
func attemptOutcome(a Attempt) string {
	switch {
	case a.Error != "":
		return a.Error
	case a.Status >= 100 && a.Status < 600:
		return statusClasses[a.Status/100]
	}
	return ClassOther
}

var statusClasses = [...]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// retried counts a retry granted after a wait for reason, or a transport
// re-send granted (reasonTransportResend).
func (r *run) retried(reason string) {
	if o := r.c.obs; o.hosts != nil {
		o.retries.Get(r.tel.hostLabel, reason).Add(1)
	}
}

// stopped records why a retryable outcome was not retried (a Stop...
// constant; "" records nothing): an event on the Do context's span, and a
// refusal when the target's protection or the deadline refused the retry.
func (r *run) stopped(stop string) {
	if stop == "" {
		return
	}
	if span := trace.SpanFromContext(r.caller); span.IsRecording() {
		span.AddEvent(eventRetryStopped, trace.WithAttributes(attrRetryStopped.String(stop)))
	}
	switch stop {
	case StopBudget, StopBreaker, StopDeadline:
		r.refusal(stop)
	}
}

// attemptRefused records a first attempt that the target's protection
// refused before anything was sent (class breaker_open or target_hold): an
// event on the Do context's span, and a refusal.
func (r *run) attemptRefused(class string) {
	if span := trace.SpanFromContext(r.caller); span.IsRecording() {
		span.AddEvent(eventAttemptRefused, trace.WithAttributes(attrAttemptRefused.String(class)))
	}
	r.refusal(class)
}

// refusal counts one refusal of the current hop's target.
func (r *run) refusal(reason string) {
	if o := r.c.obs; o.hosts != nil {
		o.refusals.Get(r.tel.hostLabel, reason).Add(1)
	}
}

// egressDenied records a guard refusal, err: an event on the Do context's
// span and a count, both with the refused address's class, never the
// address.
func (r *run) egressDenied(err error) {
	reason := deniedReason(err)
	if span := trace.SpanFromContext(r.caller); span.IsRecording() {
		span.AddEvent(eventEgressDenied, trace.WithAttributes(attrEgressDenied.String(reason)))
	}
	if o := r.c.obs; o.hosts != nil {
		o.denied.Get(reason, "").Add(1)
	}
}

// deniedReason maps the guard's refusal to one of the Denied... classes.
// egress.DeniedError.Reason is one of the fixed texts of the guard's range
// table (possibly followed by " (IPv4-mapped IPv6)"); it is read by its
// leading words, and TestDeniedReason pins the mapping for an address of
// every range, so that a change of wording there cannot go unnoticed.
func deniedReason(err error) string {
	var de *egress.DeniedError
	if !errors.As(err, &de) {
		return DeniedOther
	}
	reason := strings.ToLower(de.Reason)
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(reason, p) {
				return true
			}
		}
		return false
	}
	switch {
	case has("cloud metadata"):
		return DeniedMetadata
	case has("loopback"):
		return DeniedLoopback
	case has("private", "unique local", "shared address space"):
		return DeniedPrivate
	case has("link-local"):
		return DeniedLinkLocal
	case has("multicast"):
		return DeniedMulticast
	case reason == "" || has("invalid"):
		return DeniedOther
	}
	return DeniedReserved
}
