package outbound

import "testing"

func TestRetryable(t *testing.T) {
	t.Parallel()
	retryOn := []int{429, 500, 502, 503, 504}
	safe := []string{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
	unsafe := []string{"POST", "PATCH", "CONNECT", "PROPFIND", "get"}

	type outcome struct {
		status int
		class  string
	}
	// want[0]: safe method; want[1]: unsafe unkeyed; want[2]: unsafe keyed.
	tests := []struct {
		outcome outcome
		want    [3]bool
	}{
		{outcome{200, ""}, [3]bool{false, false, false}},
		{outcome{204, ""}, [3]bool{false, false, false}},
		{outcome{301, ""}, [3]bool{false, false, false}},
		{outcome{400, ""}, [3]bool{false, false, false}},
		{outcome{404, ""}, [3]bool{false, false, false}},
		{outcome{409, ""}, [3]bool{false, false, false}},
		{outcome{429, ""}, [3]bool{true, false, true}},
		{outcome{500, ""}, [3]bool{true, false, true}},
		{outcome{501, ""}, [3]bool{false, false, false}},
		{outcome{502, ""}, [3]bool{true, false, true}},
		{outcome{503, ""}, [3]bool{true, false, true}},
		{outcome{504, ""}, [3]bool{true, false, true}},
		{outcome{0, ClassConnectRefused}, [3]bool{true, true, true}},
		{outcome{0, ClassDNS}, [3]bool{true, true, true}},
		{outcome{0, ClassConnectTimeout}, [3]bool{true, true, true}},
		{outcome{0, ClassReset}, [3]bool{true, false, true}},
		{outcome{200, ClassReset}, [3]bool{true, false, true}}, // body broke off
		{outcome{0, ClassReadTimeout}, [3]bool{true, false, true}},
		{outcome{200, ClassReadTimeout}, [3]bool{true, false, true}},
		{outcome{0, ClassAttemptTimeout}, [3]bool{true, false, true}},
		{outcome{0, ClassProtocol}, [3]bool{true, false, true}},
		{outcome{0, ClassDenied}, [3]bool{false, false, false}},
		{outcome{200, ClassBodyTooLarge}, [3]bool{false, false, false}},
		{outcome{0, ClassCanceled}, [3]bool{false, false, false}},
		{outcome{0, ClassDeadline}, [3]bool{false, false, false}},
		{outcome{0, ClassTLS}, [3]bool{false, false, false}},
		{outcome{0, ClassOther}, [3]bool{false, false, false}},
	}
	for _, tt := range tests {
		for _, m := range safe {
			for _, keyed := range []bool{false, true} {
				if got := retryable(m, keyed, tt.outcome.status, tt.outcome.class, retryOn); got != tt.want[0] {
					t.Errorf("retryable(%s, keyed=%v, %+v) = %v, want %v", m, keyed, tt.outcome, got, tt.want[0])
				}
			}
		}
		for _, m := range unsafe {
			if got := retryable(m, false, tt.outcome.status, tt.outcome.class, retryOn); got != tt.want[1] {
				t.Errorf("retryable(%s, unkeyed, %+v) = %v, want %v", m, tt.outcome, got, tt.want[1])
			}
			if got := retryable(m, true, tt.outcome.status, tt.outcome.class, retryOn); got != tt.want[2] {
				t.Errorf("retryable(%s, keyed, %+v) = %v, want %v", m, tt.outcome, got, tt.want[2])
			}
		}
	}
}

func TestRetryableFollowsRetryOn(t *testing.T) {
	t.Parallel()
	if retryable("GET", false, 503, "", nil) {
		t.Error("503 retried with an empty RetryOn")
	}
	if !retryable("GET", false, 404, "", []int{404}) {
		t.Error("404 not retried although listed")
	}
	if retryable("GET", false, 200, "", []int{200}) {
		t.Error("200 retried: statuses below 400 must never be retried")
	}
}
