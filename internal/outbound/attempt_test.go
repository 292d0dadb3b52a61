package outbound

import "testing"

func TestBodiless(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method string
		status int
		want   bool
	}{
		{"HEAD", 200, true},
		{"HEAD", 404, true},
		{"GET", 100, true},
		{"GET", 101, true},
		{"GET", 200, false},
		{"POST", 201, false},
		{"GET", 204, true},
		{"GET", 205, false},
		{"GET", 304, true},
		{"GET", 503, false},
		{"head", 200, false}, // methods are case-sensitive
	}
	for _, tt := range tests {
		if got := bodiless(tt.method, tt.status); got != tt.want {
			t.Errorf("bodiless(%s, %d) = %v, want %v", tt.method, tt.status, got, tt.want)
		}
	}
}
