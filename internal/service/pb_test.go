package service

import (
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/outbound"
)

// TestResponseMessages checks the messages built from shared arrays against
// ones built one by one: every field, durations split as durationpb.New
// splits them, headers sorted by name with their values in order.
func TestResponseMessages(t *testing.T) {
	t.Parallel()
	atts := []outbound.Attempt{
		{Number: 1, Status: 503, Duration: 1500 * time.Millisecond, Backoff: 0, URL: "https://a.example/x"},
		{Number: 2, Error: "reset", Detail: "connection reset", Duration: 3*time.Second + 7, Backoff: 250 * time.Millisecond, BackoffReason: "status"},
		{Number: 3, Status: 200, Duration: -time.Nanosecond - time.Second, Backoff: 1<<63 - 1},
	}
	got := attemptsPB(atts)
	if len(got) != len(atts) {
		t.Fatalf("%d attempts, want %d", len(got), len(atts))
	}
	for i, a := range atts {
		want := &fetchdv1.Attempt{
			Number: uint32(a.Number), Status: uint32(a.Status), Error: a.Error,
			Duration: durationpb.New(a.Duration), Backoff: durationpb.New(a.Backoff),
			BackoffReason: a.BackoffReason, Detail: a.Detail, Url: a.URL,
		}
		if !proto.Equal(got[i], want) {
			t.Errorf("attempt %d = %v, want %v", i, got[i], want)
		}
	}
	if got := attemptsPB(nil); len(got) != 0 {
		t.Errorf("no attempts gave %v", got)
	}

	h := http.Header{"X-B": {"2", "1"}, "A": {"x"}, "C": {""}}
	var names []string
	for i := range 20 { // more names than eachHeader holds without allocating
		names = append(names, string(rune('D'+i)))
		h[names[i]] = []string{names[i]}
	}
	hs := headersPB(h)
	want := []string{"A=x", "C=", "D=D"}
	for i, w := range want {
		if g := hs[i].GetName() + "=" + hs[i].GetValue(); g != w {
			t.Errorf("header %d = %s, want %s", i, g, w)
		}
	}
	last := hs[len(hs)-2:]
	if last[0].GetValue() != "2" || last[1].GetValue() != "1" || last[0].GetName() != "X-B" {
		t.Errorf("last headers = %v, want X-B's values 2 then 1", last)
	}
	if len(hs) != 24 {
		t.Errorf("%d headers, want 24", len(hs))
	}
}
