package service

import (
	"context"
	"net/http"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
)

// TestIdempotencyOutcomesCounted: keyed calls are counted in
// fetchd.idempotency.outcomes by outcome, one series each, and nothing
// else is, read through a real SDK reader.
func TestIdempotencyOutcomesCounted(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	client := serve(t, newService(t, nil, WithMeterProvider(mp)))

	key := uniqueKey(t)
	for range 2 { // claimed, then replayed
		if _, err := client.Fetch(t.Context(), keyedPost(up.URL+"/charges", key, "amount=10")); err != nil {
			t.Fatal(err)
		}
	}
	_, err := client.Fetch(t.Context(), keyedPost(up.URL+"/charges", key, "amount=99"))
	wantCode(t, err, codes.FailedPrecondition, "")
	if _, err := client.Fetch(t.Context(), keyedPost(up.URL+"/charges", "", "unkeyed")); err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "fetchd.idempotency.outcomes" {
				continue
			}
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !s.IsMonotonic {
				t.Fatalf("fetchd.idempotency.outcomes is %T (%+v), want a monotonic int64 sum", m.Data, m.Data)
			}
			for _, p := range s.DataPoints {
				if p.Attributes.Len() != 1 {
					t.Errorf("attributes %v, want outcome alone", p.Attributes.ToSlice())
				}
				v, _ := p.Attributes.Value("outcome")
				got[v.AsString()] += p.Value
			}
		}
	}
	want := map[string]int64{idemClaimed: 1, idemReplayed: 1, idemConflict: 1}
	if len(got) != len(want) || got[idemClaimed] != 1 || got[idemReplayed] != 1 || got[idemConflict] != 1 {
		t.Fatalf("fetchd.idempotency.outcomes = %v, want %v", got, want)
	}
}
