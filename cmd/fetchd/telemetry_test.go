package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
)

// scrape reads the admin port's /metrics and parses it as Prometheus text.
func scrape(t *testing.T, m *Main) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + m.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not Prometheus text: %v", err)
	}
	return fams
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestMetricsEndpoint: after Fetch calls, /metrics serves the request
// duration by target host and outcome, and Go runtime metrics; no label
// carries a path or a query.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	m, conn := startMain(t)
	defer m.Close()
	client := fetchdv1.NewFetchServiceClient(conn)
	for _, path := range []string{"/found-path?token=query-value", "/missing"} {
		if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL + path}); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrape(t, m)
	dur := fams["fetchd_fetch_duration_seconds"]
	if dur == nil {
		t.Fatalf("no fetchd_fetch_duration_seconds; families: %v", familyNames(fams))
	}
	// A refused target gets no host label of its own.
	_, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: "http://10.9.8.7/"})
	wantCode(t, err, codes.PermissionDenied, "egress guard refused")
	fams = scrape(t, m)
	dur = fams["fetchd_fetch_duration_seconds"]
	outcomes := map[string]uint64{}
	for _, mt := range dur.GetMetric() {
		l := labels(mt)
		want := "127.0.0.1"
		if l["outcome"] == "permission_denied" {
			want = "_refused"
		}
		if l["target_host"] != want || len(l) != 2 {
			t.Errorf("duration labels = %v, want target_host %q and outcome", l, want)
		}
		outcomes[l["outcome"]] += mt.GetHistogram().GetSampleCount()
	}
	if outcomes["2xx"] != 1 || outcomes["4xx"] != 1 || outcomes["permission_denied"] != 1 {
		t.Fatalf("duration samples by outcome = %v, want one 2xx, one 4xx, one permission_denied", outcomes)
	}
	for _, name := range []string{"fetchd_outbound_attempts_total", "fetchd_outbound_requests_in_flight", "fetchd_egress_denied_total", "rpc_server_call_duration_seconds"} {
		if fams[name] == nil {
			t.Errorf("no %s in /metrics", name)
		}
	}
	if fams["go_goroutines"] == nil {
		t.Fatal("no Go runtime metrics (go_goroutines)")
	}
	for name, f := range fams {
		for _, mt := range f.GetMetric() {
			for _, v := range labels(mt) {
				if strings.Contains(v, "path") || strings.Contains(v, "query-value") || strings.Contains(v, "missing") {
					t.Errorf("%s has a label from the URL's path or query: %v", name, labels(mt))
				}
			}
		}
	}
}

func familyNames(fams map[string]*dto.MetricFamily) []string {
	out := make([]string, 0, len(fams))
	for n := range fams {
		out = append(out, n)
	}
	return out
}

// TestTraceContextContinues: a caller's W3C traceparent continues into
// fetchd's trace, and the response names it; the trace context goes
// upstream, the caller's baggage does not.
func TestTraceContextContinues(t *testing.T) {
	t.Parallel()
	got := make(chan http.Header, 2)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	m, conn := startMain(t)
	defer m.Close()
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(t.Context(),
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01",
		"baggage", "internal.user=alice")
	resp, err := fetchdv1.NewFetchServiceClient(conn).Fetch(ctx, &fetchdv1.FetchRequest{Url: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTraceId() != traceID {
		t.Fatalf("trace_id = %q, want the caller's %q", resp.GetTraceId(), traceID)
	}
	h := <-got
	if tp := h.Get("Traceparent"); !strings.Contains(tp, traceID) {
		t.Fatalf("upstream traceparent = %q, want the caller's trace", tp)
	}
	if b := h.Get("Baggage"); b != "" {
		t.Fatalf("the caller's baggage reached the upstream: %q", b)
	}
	// Without a caller trace, fetchd starts one.
	resp, err = fetchdv1.NewFetchServiceClient(conn).Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetTraceId()) != 32 || resp.GetTraceId() == traceID {
		t.Fatalf("trace_id = %q, want a new 32-hex-digit trace", resp.GetTraceId())
	}
}
