package outbound

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/fetchd/fetchd/internal/egress"
)

// traced is a real SDK tracer provider whose spans are recorded.
type traced struct {
	rec *tracetest.SpanRecorder
	tp  *sdktrace.TracerProvider
}

func newTraced(t *testing.T) *traced {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &traced{rec: rec, tp: tp}
}

// parent starts the span a Do runs under, as the Fetch server span would.
func (tr *traced) parent(ctx context.Context) (context.Context, trace.Span) {
	return tr.tp.Tracer("test").Start(ctx, "Fetch", trace.WithSpanKind(trace.SpanKindServer))
}

// clientSpans returns the ended CLIENT spans, in the order they started.
func (tr *traced) clientSpans() []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tr.rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return out
}

// ended returns the ended span named name.
func (tr *traced) ended(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range tr.rec.Ended() {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no ended span %q", name)
	return nil
}

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// events returns the attribute "reason"-like values of the span's events
// named name: the value of key of each.
func events(s sdktrace.ReadOnlySpan, name string, key attribute.Key) []string {
	var out []string
	for _, e := range s.Events() {
		if e.Name != name {
			continue
		}
		for _, kv := range e.Attributes {
			if kv.Key == key {
				out = append(out, kv.Value.String())
			}
		}
	}
	return out
}

// metered is a real SDK meter provider read by hand.
type metered struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newMetered(t *testing.T) *metered {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return &metered{reader: reader, mp: mp}
}

// sum adds up the data points of the instrument name whose attributes
// include every key=value pair of want; found says the instrument exists.
func (m *metered) sum(t *testing.T, name string, want ...string) (total int64, found bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != name {
				continue
			}
			found = true
			s, ok := mt.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T, want an int64 sum", name, mt.Data)
			}
		points:
			for _, dp := range s.DataPoints {
				for i := 0; i+1 < len(want); i += 2 {
					if v, ok := dp.Attributes.Value(attribute.Key(want[i])); !ok || v.String() != want[i+1] {
						continue points
					}
				}
				total += dp.Value
			}
		}
	}
	return total, found
}

func (m *metered) want(t *testing.T, n int64, name string, attrs ...string) {
	t.Helper()
	got, found := m.sum(t, name, attrs...)
	if !found && n != 0 {
		t.Errorf("%s: not recorded, want %d %v", name, n, attrs)
		return
	}
	if got != n {
		t.Errorf("%s%v = %d, want %d", name, attrs, got, n)
	}
}

// traceparent splits a W3C traceparent header.
func traceparent(t *testing.T, h string) (trace.TraceID, trace.SpanID) {
	t.Helper()
	parts := strings.Split(h, "-")
	if len(parts) != 4 || parts[0] != "00" {
		t.Fatalf("traceparent %q is malformed", h)
	}
	tid, err := trace.TraceIDFromHex(parts[1])
	if err != nil {
		t.Fatalf("traceparent %q: %v", h, err)
	}
	sid, err := trace.SpanIDFromHex(parts[2])
	if err != nil {
		t.Fatalf("traceparent %q: %v", h, err)
	}
	return tid, sid
}

// TestSpanTree is the span tree of a run answered 503, 503, 200: three
// CLIENT spans under the caller's span, each with its own outcome, and each
// send carrying its own span's ID upstream.
func TestSpanTree(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	up := newUpstream(t, status(503), status(503), status(200))
	c, _ := newClient(t, WithTracerProvider(tr.tp))
	raw := up.URL + "/p?sig=secret&X-Goog-Signature=s2&q=keep"
	ctx, parent := tr.parent(context.Background())
	resp, err := c.Do(ctx, request(t, "GET", raw, nil))
	parent.End()
	if err != nil || resp.Status != 200 {
		t.Fatalf("Do = %v, %v; want 200", resp, err)
	}

	spans := tr.clientSpans()
	if len(spans) != 3 {
		t.Fatalf("%d CLIENT spans, want 3", len(spans))
	}
	u, _ := url.Parse(up.URL)
	port, _ := strconv.Atoi(u.Port())
	wantURL := up.URL + "/p?sig=REDACTED&X-Goog-Signature=REDACTED&q=keep"
	seen := up.seen()
	if len(seen) != 3 {
		t.Fatalf("upstream saw %d requests, want 3", len(seen))
	}
	pc := parent.SpanContext()
	ids := map[trace.SpanID]bool{}
	for i, s := range spans {
		a := attrs(s)
		wantStatus := []int{503, 503, 200}[i]
		if s.Name() != "GET" {
			t.Errorf("span %d named %q, want GET", i, s.Name())
		}
		if s.Parent().SpanID() != pc.SpanID() || s.SpanContext().TraceID() != pc.TraceID() {
			t.Errorf("span %d is not a child of the caller's span", i)
		}
		if got := a["http.request.method"].AsString(); got != "GET" {
			t.Errorf("span %d http.request.method = %q", i, got)
		}
		if got := a["server.address"].AsString(); got != u.Hostname() {
			t.Errorf("span %d server.address = %q, want %q", i, got, u.Hostname())
		}
		if got := a["server.port"].AsInt64(); got != int64(port) {
			t.Errorf("span %d server.port = %d, want %d", i, got, port)
		}
		if got := a["url.full"].AsString(); got != wantURL {
			t.Errorf("span %d url.full = %q, want %q", i, got, wantURL)
		}
		if got := a["http.response.status_code"].AsInt64(); got != int64(wantStatus) {
			t.Errorf("span %d status code = %d, want %d", i, got, wantStatus)
		}
		et, hasET := a["error.type"]
		rc, hasRC := a["http.request.resend_count"]
		bd, hasBD := a["fetchd.backoff.duration"]
		br := a["fetchd.backoff.reason"]
		switch i {
		case 0:
			if !hasET || et.AsString() != "503" || s.Status().Code != codes.Error {
				t.Errorf("span 1: error.type %v, status %v; want 503, Error", et.String(), s.Status())
			}
			if hasRC || hasBD {
				t.Errorf("span 1 has resend_count %v / backoff %v, want neither", rc.String(), bd.String())
			}
		default:
			wantET, wantCode := "503", codes.Error
			if i == 2 {
				wantET, wantCode = "", codes.Unset
			}
			if et.AsString() != wantET || hasET != (wantET != "") || s.Status().Code != wantCode {
				t.Errorf("span %d: error.type %q (set %v), status %v; want %q, %v", i+1, et.AsString(), hasET, s.Status(), wantET, wantCode)
			}
			if !hasRC || rc.AsInt64() != int64(i) {
				t.Errorf("span %d resend_count = %v, want %d", i+1, rc.String(), i)
			}
			wantWait := resp.Attempts[i].Backoff.Seconds()
			if !hasBD || bd.AsFloat64() != wantWait || wantWait == 0 || br.AsString() != ReasonBackoff {
				t.Errorf("span %d backoff = %v (%v), want %v (backoff)", i+1, bd.String(), br.String(), wantWait)
			}
		}
		for k := range a {
			if strings.HasPrefix(k, "http.request.header") || strings.HasPrefix(k, "http.response.header") {
				t.Errorf("span %d records header %s", i+1, k)
			}
		}

		// The send carried this span's own ID, in the caller's trace.
		tid, sid := traceparent(t, seen[i].header.Get("Traceparent"))
		if tid != pc.TraceID() || sid != s.SpanContext().SpanID() {
			t.Errorf("send %d traceparent %s/%s, want %s/%s", i+1, tid, sid, pc.TraceID(), s.SpanContext().SpanID())
		}
		ids[sid] = true
	}
	if len(ids) != 3 {
		t.Errorf("the sends carried %d distinct span IDs, want 3", len(ids))
	}
}

func TestSpanOfUnknownMethod(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	up := newUpstream(t, status(200))
	c, _ := newClient(t, WithTracerProvider(tr.tp))
	if _, err := c.Do(context.Background(), request(t, "PURGE", up.URL+"/", nil)); err != nil {
		t.Fatal(err)
	}
	spans := tr.clientSpans()
	if len(spans) != 1 {
		t.Fatalf("%d CLIENT spans, want 1", len(spans))
	}
	a := attrs(spans[0])
	if spans[0].Name() != "HTTP" || a["http.request.method"].AsString() != "_OTHER" || a["http.request.method_original"].AsString() != "PURGE" {
		t.Errorf("span %q method %v original %v; want HTTP, _OTHER, PURGE", spans[0].Name(), a["http.request.method"].String(), a["http.request.method_original"].String())
	}
	if _, ok := a["server.port"]; !ok {
		t.Error("no server.port")
	}
	if len(up.seen()) != 1 || up.seen()[0].header.Get("Traceparent") == "" {
		t.Error("the send carried no traceparent")
	}
}

// TestSpanOfTransportResend: a send net/http repeats on its own gets a span
// of its own, and both sends carry the live span's ID.
func TestSpanOfTransportResend(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	up := closeSecondOnConn(t)
	c, _ := newClient(t, WithTracerProvider(tr.tp))
	// The first Do leaves an idle keep-alive connection in the pool.
	if _, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil)); err != nil {
		t.Fatal(err)
	}
	tr.rec.Reset()
	ctx, parent := tr.parent(context.Background())
	resp, err := c.Do(ctx, request(t, "GET", up.URL+"/", nil))
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := classes(resp.Attempts), []string{ClassReset, "OK"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("attempts %v, want %v (the transport did not re-send)", got, want)
	}
	spans := tr.clientSpans()
	if len(spans) != 2 {
		t.Fatalf("%d CLIENT spans, want 2", len(spans))
	}
	var resent, live sdktrace.ReadOnlySpan
	for _, s := range spans {
		if v, ok := attrs(s)["fetchd.transport_resend"]; ok && v.AsBool() {
			resent = s
		} else {
			live = s
		}
	}
	if resent == nil || live == nil {
		t.Fatal("no span marked fetchd.transport_resend=true, or both are")
	}
	ra, la := attrs(resent), attrs(live)
	if ra["error.type"].AsString() != ClassReset || resent.Status().Code != codes.Error {
		t.Errorf("re-sent span: error.type %v, status %v; want reset, Error", ra["error.type"].String(), resent.Status())
	}
	if _, ok := ra["http.request.resend_count"]; ok {
		t.Errorf("the first send has resend_count %v", ra["http.request.resend_count"].String())
	}
	if la["http.request.resend_count"].AsInt64() != 1 || la["http.response.status_code"].AsInt64() != 200 || live.Status().Code != codes.Unset {
		t.Errorf("live span: resend_count %v, status %v %v; want 1, 200, Unset", la["http.request.resend_count"].String(), la["http.response.status_code"].String(), live.Status())
	}
	pc := parent.SpanContext()
	for _, s := range spans {
		if s.Parent().SpanID() != pc.SpanID() {
			t.Errorf("span %v is not a child of the caller's span", s.SpanContext().SpanID())
		}
	}
	if resent.StartTime().Before(live.StartTime()) || resent.EndTime().After(live.EndTime()) || resent.EndTime().Before(resent.StartTime()) {
		t.Errorf("re-sent span [%v, %v] not within the live span [%v, %v]", resent.StartTime(), resent.EndTime(), live.StartTime(), live.EndTime())
	}
	// Both sends of the second Do carried the live span's ID.
	seen := up.seen()
	if len(seen) != 3 {
		t.Fatalf("upstream saw %d requests, want 3", len(seen))
	}
	for _, s := range seen[1:] {
		if _, sid := traceparent(t, s.header.Get("Traceparent")); sid != live.SpanContext().SpanID() {
			t.Errorf("a send carried span %s, want the live span %s", sid, live.SpanContext().SpanID())
		}
	}
}

// TestSpansHoldNoSecrets sends credentials and scans everything recorded.
func TestSpansHoldNoSecrets(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	up := newUpstream(t, status(503), status(200))
	c, _ := newClient(t, WithTracerProvider(tr.tp))
	secrets := []string{"tok-3f9a1c", "cookie-77be02", "proxy-5d1e8f", "sig-0c4b2a"}
	req := request(t, "GET", up.URL+"/?Signature="+secrets[3], nil)
	req.Header.Set("Authorization", "Bearer "+secrets[0])
	req.Header.Set("Cookie", "session="+secrets[1])
	req.Header.Set("Proxy-Authorization", "Basic "+secrets[2])
	ctx, parent := tr.parent(context.Background())
	if _, err := c.Do(ctx, req); err != nil {
		t.Fatal(err)
	}
	parent.End()
	if got := up.seen()[0].header.Get("Authorization"); !strings.Contains(got, secrets[0]) {
		t.Fatalf("the upstream got Authorization %q: the test sends no secret", got)
	}
	var all []string
	for _, s := range tr.rec.Ended() {
		all = append(all, s.Name(), s.Status().Description)
		for _, kv := range s.Attributes() {
			all = append(all, string(kv.Key), kv.Value.String())
		}
		for _, e := range s.Events() {
			all = append(all, e.Name)
			for _, kv := range e.Attributes {
				all = append(all, string(kv.Key), kv.Value.String())
			}
		}
	}
	if len(tr.clientSpans()) != 2 {
		t.Fatalf("%d CLIENT spans, want 2", len(tr.clientSpans()))
	}
	text := strings.Join(all, "\n")
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("a span holds the secret %q", s)
		}
	}
	for _, name := range []string{"authorization", "cookie"} {
		if strings.Contains(strings.ToLower(text), name) {
			t.Errorf("a span names the header %s", name)
		}
	}
}

func TestSpanOfRefusedConnect(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	c, _ := newClient(t, WithTracerProvider(tr.tp))
	req := request(t, "GET", refusedURL(t), nil)
	req.Policy.MaxAttempts = 1
	if _, err := c.Do(context.Background(), req); err == nil {
		t.Fatal("Do succeeded against a closed port")
	}
	spans := tr.clientSpans()
	if len(spans) != 1 {
		t.Fatalf("%d CLIENT spans, want 1", len(spans))
	}
	a := attrs(spans[0])
	if a["error.type"].AsString() != ClassConnectRefused || spans[0].Status().Code != codes.Error || spans[0].Status().Description == "" {
		t.Errorf("error.type %v, status %v; want connect_refused, Error with a description", a["error.type"].String(), spans[0].Status())
	}
	if _, ok := a["http.response.status_code"]; ok {
		t.Error("a status code without a response")
	}
}

// TestTelemetryOfRefusals: what the target's protection and the guard
// refuse shows on the caller's span and in the counters, without CLIENT
// spans for what was never sent.
func TestTelemetryOfRefusals(t *testing.T) {
	t.Parallel()
	t.Run("breaker refuses a first attempt", func(t *testing.T) {
		t.Parallel()
		tr, m := newTraced(t), newMetered(t)
		up := newUpstream(t, status(503))
		c, _ := newClient(t, WithTracerProvider(tr.tp), WithMeterProvider(m.mp))
		req := request(t, "GET", up.URL+"/", nil)
		req.Policy.MaxAttempts = 1
		req.Policy.Breaker = Breaker{ConsecutiveFailures: 1, OpenFor: time.Hour}
		if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 503 {
			t.Fatalf("first Do = %v, %v; want the 503", resp, err)
		}
		tr.rec.Reset()
		ctx, parent := tr.parent(context.Background())
		_, err := c.Do(ctx, req)
		parent.End()
		var ex *ExhaustedError
		if !errors.As(err, &ex) || ex.Stopped != StopBreaker {
			t.Fatalf("second Do: %v, want refused by the breaker", err)
		}
		if n := len(tr.clientSpans()); n != 0 {
			t.Errorf("%d CLIENT spans for an attempt never sent", n)
		}
		if got := events(tr.ended(t, "Fetch"), "fetchd.attempt.refused", "fetchd.attempt.refused.reason"); !reflect.DeepEqual(got, []string{"breaker_open"}) {
			t.Errorf("refusal events %v, want [breaker_open]", got)
		}
		m.want(t, 1, "fetchd.outbound.refusals", "reason", "breaker_open", "target.host", "127.0.0.1")
		m.want(t, 1, "fetchd.outbound.attempts", "outcome", "5xx")
		m.want(t, 0, "fetchd.outbound.requests.in_flight")
	})
	t.Run("budget refuses a retry", func(t *testing.T) {
		t.Parallel()
		tr, m := newTraced(t), newMetered(t)
		up := newUpstream(t, status(503), status(200))
		c, _ := newClient(t, WithTracerProvider(tr.tp), WithMeterProvider(m.mp))
		req := request(t, "GET", up.URL+"/", nil)
		req.Policy.Budget = Budget{Window: 10 * time.Second} // no ratio, no floor: no retry
		ctx, parent := tr.parent(context.Background())
		resp, err := c.Do(ctx, req)
		parent.End()
		if err != nil || resp.Status != 503 || resp.Stopped != StopBudget {
			t.Fatalf("Do = %+v, %v; want the 503 stopped by the budget", resp, err)
		}
		if got := events(tr.ended(t, "Fetch"), "fetchd.retry.stopped", "fetchd.retry.stopped.reason"); !reflect.DeepEqual(got, []string{"retry_budget"}) {
			t.Errorf("stop events %v, want [retry_budget]", got)
		}
		m.want(t, 1, "fetchd.outbound.refusals", "reason", "retry_budget")
		m.want(t, 0, "fetchd.outbound.retries")
	})
	t.Run("attempts run out", func(t *testing.T) {
		t.Parallel()
		tr := newTraced(t)
		up := newUpstream(t, status(503))
		c, _ := newClient(t, WithTracerProvider(tr.tp))
		ctx, parent := tr.parent(context.Background())
		resp, err := c.Do(ctx, request(t, "GET", up.URL+"/", nil))
		parent.End()
		if err != nil || resp.Stopped != StopMaxAttempts {
			t.Fatalf("Do = %+v, %v; want the 503 after max attempts", resp, err)
		}
		if got := events(tr.ended(t, "Fetch"), "fetchd.retry.stopped", "fetchd.retry.stopped.reason"); !reflect.DeepEqual(got, []string{"max_attempts"}) {
			t.Errorf("stop events %v, want [max_attempts]", got)
		}
		if n := len(tr.clientSpans()); n != 3 {
			t.Errorf("%d CLIENT spans, want 3", n)
		}
	})
	t.Run("guard refuses a literal", func(t *testing.T) {
		t.Parallel()
		tr, m := newTraced(t), newMetered(t)
		c, _ := newClient(t, WithTracerProvider(tr.tp), WithMeterProvider(m.mp))
		req := request(t, "GET", "http://127.0.0.1:9/", nil)
		req.Guard = egress.New() // loopback refused
		ctx, parent := tr.parent(context.Background())
		_, err := c.Do(ctx, req)
		parent.End()
		if !errors.Is(err, egress.ErrDenied) {
			t.Fatalf("Do: %v, want a guard refusal", err)
		}
		if n := len(tr.clientSpans()); n != 0 {
			t.Errorf("%d CLIENT spans for a refused literal", n)
		}
		if got := events(tr.ended(t, "Fetch"), "fetchd.egress.denied", "fetchd.egress.denied.reason"); !reflect.DeepEqual(got, []string{DeniedLoopback}) {
			t.Errorf("denial events %v, want [loopback]", got)
		}
		m.want(t, 1, "fetchd.egress.denied", "reason", DeniedLoopback)
		m.want(t, 0, "fetchd.outbound.attempts")
	})
	t.Run("guard refuses a name when dialled", func(t *testing.T) {
		t.Parallel()
		tr, m := newTraced(t), newMetered(t)
		c, _ := newClient(t, WithTracerProvider(tr.tp), WithMeterProvider(m.mp))
		req := request(t, "GET", "http://metadata.test/", nil)
		req.Guard = egress.New(egress.WithResolver(mapResolver{"metadata.test": {netip.MustParseAddr("169.254.169.254")}}))
		ctx, parent := tr.parent(context.Background())
		_, err := c.Do(ctx, req)
		parent.End()
		if !errors.Is(err, egress.ErrDenied) {
			t.Fatalf("Do: %v, want a guard refusal", err)
		}
		// A connection was asked for: the attempt has its span.
		spans := tr.clientSpans()
		if len(spans) != 1 || attrs(spans[0])["error.type"].AsString() != ClassDenied || spans[0].Status().Code != codes.Error {
			t.Fatalf("CLIENT spans %d, want 1 with error.type denied", len(spans))
		}
		if got := events(tr.ended(t, "Fetch"), "fetchd.egress.denied", "fetchd.egress.denied.reason"); !reflect.DeepEqual(got, []string{DeniedMetadata}) {
			t.Errorf("denial events %v, want [metadata]", got)
		}
		if strings.Contains(spans[0].Status().Description, "169.254") {
			t.Errorf("the status names the resolved address: %q", spans[0].Status().Description)
		}
		m.want(t, 1, "fetchd.egress.denied", "reason", DeniedMetadata)
		m.want(t, 1, "fetchd.outbound.attempts", "outcome", ClassDenied, "target.host", "metadata.test")
	})
}

func TestMetricsOfRetries(t *testing.T) {
	t.Parallel()
	m := newMetered(t)
	up := newUpstream(t, status(503), status(503), status(200))
	c, _ := newClient(t, WithMeterProvider(m.mp))
	resp, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil))
	if err != nil || resp.Status != 200 {
		t.Fatalf("Do = %v, %v", resp, err)
	}
	m.want(t, 2, "fetchd.outbound.attempts", "target.host", "127.0.0.1", "outcome", "5xx")
	m.want(t, 1, "fetchd.outbound.attempts", "target.host", "127.0.0.1", "outcome", "2xx")
	m.want(t, 3, "fetchd.outbound.attempts")
	m.want(t, 2, "fetchd.outbound.retries", "target.host", "127.0.0.1", "reason", ReasonBackoff)
	m.want(t, 0, "fetchd.outbound.refusals")
	if _, found := m.sum(t, "fetchd.outbound.requests.in_flight"); !found {
		t.Error("in_flight was never recorded")
	}
	m.want(t, 0, "fetchd.outbound.requests.in_flight", "target.host", "127.0.0.1")
}

// TestInFlightWhileWaiting: an attempt counts in flight from its start
// until its body is read.
func TestInFlightWhileWaiting(t *testing.T) {
	t.Parallel()
	m := newMetered(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		w.WriteHeader(200)
	})
	c, _ := newClient(t, WithMeterProvider(m.mp))
	done := make(chan error, 1)
	go func() {
		_, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil))
		done <- err
	}()
	within(t, arrived, "the request")
	m.want(t, 1, "fetchd.outbound.requests.in_flight", "target.host", "127.0.0.1")
	close(release)
	within(t, done, "Do")
	m.want(t, 0, "fetchd.outbound.requests.in_flight", "target.host", "127.0.0.1")
}

// TestTraceContextWithoutTracer: without a tracer provider the caller's
// trace context still reaches the upstream, replacing the caller's own
// header, in a copy of the headers; WithPropagator(nil) sends none.
func TestTraceContextWithoutTracer(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	const callers = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tt := range []struct {
		name string
		opts []Option
		want bool // the caller's span reaches the upstream
	}{
		{"default propagator", nil, true},
		{"explicit W3C", []Option{WithPropagator(propagation.TraceContext{})}, true},
		{"none", []Option{WithPropagator(nil)}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, status(200))
			c, _ := newClient(t, tt.opts...)
			req := request(t, "GET", up.URL+"/", nil)
			req.Header.Set("Traceparent", callers)
			ctx, parent := tr.parent(context.Background())
			if _, err := c.Do(ctx, req); err != nil {
				t.Fatal(err)
			}
			parent.End()
			if got := req.Header.Get("Traceparent"); got != callers {
				t.Errorf("Do changed the request's header to %q", got)
			}
			got := up.seen()[0].header.Values("Traceparent")
			if !tt.want {
				if !reflect.DeepEqual(got, []string{callers}) {
					t.Errorf("upstream got traceparent %q, want the caller's header as it was", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("upstream got traceparent %q, want one", got)
			}
			tid, sid := traceparent(t, got[0])
			if pc := parent.SpanContext(); tid != pc.TraceID() || sid != pc.SpanID() {
				t.Errorf("upstream got %s/%s, want the caller's span %s/%s", tid, sid, pc.TraceID(), pc.SpanID())
			}
		})
	}
}

func TestRedactedQueryParams(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	up := newUpstream(t, status(200))
	c, _ := newClient(t, WithTracerProvider(tr.tp), WithRedactedQueryParams("api_key"))
	if _, err := c.Do(context.Background(), request(t, "GET", up.URL+"/x?API_KEY=k1&sig=s&page=2", nil)); err != nil {
		t.Fatal(err)
	}
	spans := tr.clientSpans()
	if len(spans) != 1 {
		t.Fatalf("%d CLIENT spans, want 1", len(spans))
	}
	if got, want := attrs(spans[0])["url.full"].AsString(), up.URL+"/x?API_KEY=REDACTED&sig=REDACTED&page=2"; got != want {
		t.Errorf("url.full = %q, want %q", got, want)
	}

	// A reload replaces the extra names; the built-in ones stay.
	c.SetRedactedQueryParams("page")
	if _, err := c.Do(context.Background(), request(t, "GET", up.URL+"/x?API_KEY=k1&sig=s&page=2", nil)); err != nil {
		t.Fatal(err)
	}
	spans = tr.clientSpans()
	if got, want := attrs(spans[len(spans)-1])["url.full"].AsString(), up.URL+"/x?API_KEY=k1&sig=REDACTED&page=REDACTED"; got != want {
		t.Errorf("after SetRedactedQueryParams: url.full = %q, want %q", got, want)
	}
}

// TestDeniedReason pins the class of an address of every range the guard
// refuses, read from the guard's own reasons.
func TestDeniedReason(t *testing.T) {
	t.Parallel()
	g := egress.New()
	for addr, want := range map[string]string{
		"127.0.0.1":          DeniedLoopback,
		"::1":                DeniedLoopback,
		"::ffff:127.0.0.1":   DeniedLoopback,
		"10.1.2.3":           DeniedPrivate,
		"172.16.0.1":         DeniedPrivate,
		"192.168.1.1":        DeniedPrivate,
		"100.64.0.1":         DeniedPrivate,
		"fd12::1":            DeniedPrivate,
		"169.254.1.1":        DeniedLinkLocal,
		"fe80::1":            DeniedLinkLocal,
		"169.254.169.254":    DeniedMetadata,
		"100.100.100.200":    DeniedMetadata,
		"168.63.129.16":      DeniedMetadata,
		"fd00:ec2::254":      DeniedMetadata,
		"224.0.0.1":          DeniedMulticast,
		"ff02::1":            DeniedMulticast,
		"0.0.0.0":            DeniedReserved,
		"192.0.2.1":          DeniedReserved,
		"198.18.0.1":         DeniedReserved,
		"240.0.0.1":          DeniedReserved,
		"255.255.255.255":    DeniedReserved,
		"::":                 DeniedReserved,
		"2001:db8::1":        DeniedReserved,
		"64:ff9b::808:808":   DeniedReserved,
		"2002:808:808::1":    DeniedReserved,
		"4000::1":            DeniedReserved,
		"192.0.0.1":          DeniedReserved,
		"2001:0:4136:e378::": DeniedReserved,
	} {
		a := netip.MustParseAddr(addr)
		d := g.Decide(a)
		if d.Allowed {
			t.Fatalf("the guard allows %s", addr)
		}
		err := error(&egress.DeniedError{Host: addr, Addr: a, Reason: d.Reason})
		if got := deniedReason(err); got != want {
			t.Errorf("%s (%q) is %q, want %q", addr, d.Reason, got, want)
		}
	}
	if got := deniedReason(egress.ErrDenied); got != DeniedOther {
		t.Errorf("a bare ErrDenied is %q, want %q", got, DeniedOther)
	}
}

// spottyTracer's spans have a valid span context on odd calls of Start
// only: an exchange after one that wrote its trace context may have none
// to write.
type spottyTracer struct {
	tracenoop.Tracer
	calls atomic.Int64
}

// spottyProvider gives its spottyTracer.
type spottyProvider struct {
	tracenoop.TracerProvider
	tracer *spottyTracer
}

func (p spottyProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return p.tracer }

func (s *spottyTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	var sc trace.SpanContext
	if n := s.calls.Add(1); n%2 == 1 {
		sc = trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{byte(n)}, TraceFlags: trace.FlagsSampled})
	}
	ctx = trace.ContextWithSpanContext(ctx, sc)
	return ctx, trace.SpanFromContext(ctx)
}

// TestTraceContextOnEveryAttempt: every send carries the run's headers
// with its own trace context, or, without one, the run's headers as they
// are: not the trace context an earlier send wrote into them.
func TestTraceContextOnEveryAttempt(t *testing.T) {
	t.Parallel()
	const callers = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, caller := range []string{"", callers} {
		t.Run("caller traceparent "+strconv.Quote(caller), func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, status(503), status(503), status(200))
			c, _ := newClient(t, WithTracerProvider(spottyProvider{tracer: &spottyTracer{}}))
			req := request(t, "GET", up.URL+"/", nil)
			req.Header.Set("Authorization", "Bearer t")
			req.Header.Add("X-Keep", "a")
			req.Header.Add("X-Keep", "b")
			if caller != "" {
				req.Header.Set("Traceparent", caller)
			}
			want := req.Header.Clone()
			if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 200 {
				t.Fatalf("Do = %v, %v; want 200", resp, err)
			}
			if !reflect.DeepEqual(req.Header, want) {
				t.Errorf("Do changed the request's header to %v", req.Header)
			}
			seen := up.seen()
			if len(seen) != 3 {
				t.Fatalf("upstream saw %d requests, want 3", len(seen))
			}
			for i, s := range seen {
				for _, name := range []string{"Authorization", "X-Keep", "User-Agent"} {
					if got, want := s.header.Values(name), append(want.Values(name), "fetchd")[:max(len(want.Values(name)), 1)]; !reflect.DeepEqual(got, want) {
						t.Errorf("send %d: %s = %q, want %q", i+1, name, got, want)
					}
				}
				got := s.header.Values("Traceparent")
				switch {
				case i == 1: // no span context: the run's headers as they are
					if caller == "" && len(got) != 0 || caller != "" && !reflect.DeepEqual(got, []string{caller}) {
						t.Errorf("send 2 without a span context: traceparent %q, want the caller's (%q)", got, caller)
					}
				case len(got) != 1:
					t.Errorf("send %d: traceparent %q, want one", i+1, got)
				default:
					if _, sid := traceparent(t, got[0]); sid != (trace.SpanID{byte(i + 1)}) {
						t.Errorf("send %d carried span %s, want its own %s", i+1, sid, trace.SpanID{byte(i + 1)})
					}
				}
			}
		})
	}
}

// TestTraceContextAcrossRedirects: each hop's sends carry their own trace
// context, also in the copy of the headers a hop to another target makes
// to drop the credentials.
func TestTraceContextAcrossRedirects(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	b := newUpstream(t, status(200))
	a := newUpstream(t, redirectTo(302, "/again"), redirectTo(307, b.URL+"/"))
	c, _ := newClient(t, WithTracerProvider(tr.tp))
	req := follows(t, "GET", a.URL+"/", nil, 2)
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("X-Keep", "1")
	ctx, parent := tr.parent(context.Background())
	resp, err := c.Do(ctx, req)
	parent.End()
	if err != nil || resp.Status != 200 {
		t.Fatalf("Do = %v, %v; want 200", resp, err)
	}
	spans := tr.clientSpans()
	seen := append(a.seen(), b.seen()...)
	if len(spans) != 3 || len(seen) != 3 {
		t.Fatalf("%d spans, %d requests; want 3", len(spans), len(seen))
	}
	for i, s := range seen {
		if _, sid := traceparent(t, s.header.Get("Traceparent")); sid != spans[i].SpanContext().SpanID() {
			t.Errorf("send %d carried span %s, want its own %s", i+1, sid, spans[i].SpanContext().SpanID())
		}
		wantAuth := "Bearer t"
		if i == 2 {
			wantAuth = "" // another target
		}
		if got := s.header.Get("Authorization"); got != wantAuth || s.header.Get("X-Keep") != "1" {
			t.Errorf("send %d: Authorization %q (want %q), X-Keep %q", i+1, got, wantAuth, s.header.Get("X-Keep"))
		}
	}
}

// TestHeaderCarrier: what headerCarrier writes is what
// propagation.HeaderCarrier writes, for the names it knows and the others.
func TestHeaderCarrier(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"traceparent", "tracestate", "baggage", "TRACEPARENT", "uber-trace-id", "X-B3-TraceId"} {
		got, want := http.Header{"X-Keep": {"1"}}, http.Header{"X-Keep": {"1"}}
		headerCarrier(got).Set(key, "v1")
		headerCarrier(got).Set(key, "v2")
		propagation.HeaderCarrier(want).Set(key, "v1")
		propagation.HeaderCarrier(want).Set(key, "v2")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Set(%q): %v, want %v", key, got, want)
		}
		if v := headerCarrier(got).Get(key); v != "v2" {
			t.Errorf("Get(%q) = %q, want v2", key, v)
		}
		keys, wantKeys := headerCarrier(got).Keys(), propagation.HeaderCarrier(want).Keys()
		slices.Sort(keys)
		slices.Sort(wantKeys)
		if !reflect.DeepEqual(keys, wantKeys) {
			t.Errorf("Keys() = %q, want %q", keys, wantKeys)
		}
	}
}
