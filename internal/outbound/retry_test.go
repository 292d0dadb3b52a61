package outbound

import "testing"

func TestRetryable(t *testing.T) {
	t.Parallel()
	retryOn := []int{429, 500, 502, 503, 504}
	safe := []string{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
	unsafe := []string{"POST", "PATCH", "CONNECT", "PROPFIND", "get"}

	// unsent: the attempt provably sent nothing (no connection was handed to
	// it, the transport did not re-send it, no status arrived).
	type outcome struct {
		status int
		class  string
		unsent bool
	}
	const sent, unsent = false, true
	// want[0]: safe method; want[1]: unsafe unkeyed; want[2]: unsafe keyed.
	tests := []struct {
		outcome outcome
		want    [3]bool
	}{
		{outcome{200, "", sent}, [3]bool{false, false, false}},
		{outcome{204, "", sent}, [3]bool{false, false, false}},
		{outcome{301, "", sent}, [3]bool{false, false, false}},
		{outcome{400, "", sent}, [3]bool{false, false, false}},
		{outcome{404, "", sent}, [3]bool{false, false, false}},
		{outcome{409, "", sent}, [3]bool{false, false, false}},
		{outcome{429, "", sent}, [3]bool{true, false, true}},
		{outcome{500, "", sent}, [3]bool{true, false, true}},
		{outcome{501, "", sent}, [3]bool{false, false, false}},
		{outcome{502, "", sent}, [3]bool{true, false, true}},
		{outcome{503, "", sent}, [3]bool{true, false, true}},
		{outcome{504, "", sent}, [3]bool{true, false, true}},
		// No connection was made: nothing left.
		{outcome{0, ClassConnectRefused, unsent}, [3]bool{true, true, true}},
		{outcome{0, ClassDNS, unsent}, [3]bool{true, true, true}},
		{outcome{0, ClassConnectTimeout, unsent}, [3]bool{true, true, true}},
		// The transport re-sent the request, then its re-dial failed.
		{outcome{0, ClassConnectRefused, sent}, [3]bool{true, false, true}},
		{outcome{0, ClassDNS, sent}, [3]bool{true, false, true}},
		{outcome{0, ClassConnectTimeout, sent}, [3]bool{true, false, true}},
		{outcome{0, ClassReset, sent}, [3]bool{true, false, true}},
		{outcome{0, ClassReset, unsent}, [3]bool{true, true, true}},  // reset during the TLS handshake
		{outcome{200, ClassReset, sent}, [3]bool{true, false, true}}, // body broke off
		{outcome{0, ClassReadTimeout, sent}, [3]bool{true, false, true}},
		{outcome{200, ClassReadTimeout, sent}, [3]bool{true, false, true}},
		{outcome{0, ClassAttemptTimeout, sent}, [3]bool{true, false, true}},
		{outcome{0, ClassAttemptTimeout, unsent}, [3]bool{true, true, true}}, // queued for a connection, or dialling
		{outcome{0, ClassProtocol, sent}, [3]bool{true, false, true}},
		// Final whether or not anything was sent.
		{outcome{0, ClassDenied, unsent}, [3]bool{false, false, false}},
		{outcome{200, ClassBodyTooLarge, sent}, [3]bool{false, false, false}},
		{outcome{0, ClassCanceled, sent}, [3]bool{false, false, false}},
		{outcome{0, ClassCanceled, unsent}, [3]bool{false, false, false}},
		{outcome{0, ClassDeadline, sent}, [3]bool{false, false, false}},
		{outcome{0, ClassDeadline, unsent}, [3]bool{false, false, false}},
		{outcome{0, ClassTLS, unsent}, [3]bool{false, false, false}},
		{outcome{0, ClassOther, sent}, [3]bool{false, false, false}},
		{outcome{0, ClassOther, unsent}, [3]bool{false, false, false}},
	}
	for _, tt := range tests {
		o := tt.outcome
		for _, m := range safe {
			for _, keyed := range []bool{false, true} {
				if got := retryable(m, keyed, o.status, o.class, retryOn, o.unsent); got != tt.want[0] {
					t.Errorf("retryable(%s, keyed=%v, %+v) = %v, want %v", m, keyed, o, got, tt.want[0])
				}
			}
		}
		for _, m := range unsafe {
			if got := retryable(m, false, o.status, o.class, retryOn, o.unsent); got != tt.want[1] {
				t.Errorf("retryable(%s, unkeyed, %+v) = %v, want %v", m, o, got, tt.want[1])
			}
			if got := retryable(m, true, o.status, o.class, retryOn, o.unsent); got != tt.want[2] {
				t.Errorf("retryable(%s, keyed, %+v) = %v, want %v", m, o, got, tt.want[2])
			}
		}
	}
}

func TestRetryableFollowsRetryOn(t *testing.T) {
	t.Parallel()
	if retryable("GET", false, 503, "", nil, false) {
		t.Error("503 retried with an empty RetryOn")
	}
	if !retryable("GET", false, 404, "", []int{404}, false) {
		t.Error("404 not retried although listed")
	}
	if retryable("GET", false, 200, "", []int{200}, false) {
		t.Error("200 retried: statuses below 400 must never be retried")
	}
}
