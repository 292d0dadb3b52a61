package outbound

import (
	"net/http"
	"reflect"
	"testing"
)

func TestRequestHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{
			name: "hop-by-hop, Host and Content-Length dropped",
			in: http.Header{
				"Connection":          {"keep-alive, X-Listed"},
				"X-Listed":            {"secret"},
				"Keep-Alive":          {"timeout=5"},
				"Proxy-Connection":    {"keep-alive"},
				"Proxy-Authenticate":  {"Basic"},
				"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
				"Te":                  {"trailers"},
				"Trailer":             {"X-T"},
				"Transfer-Encoding":   {"chunked"},
				"Upgrade":             {"websocket"},
				"Host":                {"evil.example"},
				"Content-Length":      {"999"},
				"Authorization":       {"Bearer t"},
				"X-Keep":              {"a", "b"},
			},
			want: http.Header{
				"Authorization": {"Bearer t"},
				"X-Keep":        {"a", "b"},
				"User-Agent":    {"fetchd"},
			},
		},
		{
			name: "non-canonical names",
			in:   http.Header{"connection": {"x-listed"}, "x-listed": {"1"}, "x-keep": {"1"}, "user-agent": {"caller/1"}},
			want: http.Header{"X-Keep": {"1"}, "User-Agent": {"caller/1"}},
		},
		{
			name: "caller User-Agent kept",
			in:   http.Header{"User-Agent": {"billing/2.1"}},
			want: http.Header{"User-Agent": {"billing/2.1"}},
		},
		{
			name: "empty User-Agent kept (sends none)",
			in:   http.Header{"User-Agent": {""}},
			want: http.Header{"User-Agent": {""}},
		},
		{
			name: "nil header",
			in:   nil,
			want: http.Header{"User-Agent": {"fetchd"}},
		},
	}
	for _, tt := range tests {
		if got := requestHeader(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: requestHeader = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRequestHeaderDoesNotAlias(t *testing.T) {
	t.Parallel()
	in := http.Header{"X-A": {"1"}}
	out := requestHeader(in)
	out["X-A"][0] = "changed"
	if in["X-A"][0] != "1" {
		t.Fatal("requestHeader shares value slices with the caller's header")
	}
}

func TestResponseHeader(t *testing.T) {
	t.Parallel()
	in := http.Header{
		"Connection":     {"X-Hop"},
		"X-Hop":          {"1"},
		"Keep-Alive":     {"timeout=5"},
		"Content-Length": {"10"},
		"Content-Type":   {"text/plain"},
		"Set-Cookie":     {"a=1", "b=2"},
	}
	want := http.Header{"Content-Length": {"10"}, "Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}}
	if got := responseHeader(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("responseHeader = %v, want %v", got, want)
	}
}

// TestHeaderValuesDoNotOverlap appends to every name of a copied header:
// the names share one array, and no append may reach another name's values.
func TestHeaderValuesDoNotOverlap(t *testing.T) {
	t.Parallel()
	in := http.Header{"X-A": {"a1", "a2"}, "X-B": {"b1"}, "X-C": {"c1"}}
	for _, copyOf := range []func(http.Header) http.Header{requestHeader, responseHeader} {
		out := copyOf(in)
		for name := range out {
			out[name] = append(out[name], "appended to "+name)
		}
		for name, values := range in {
			want := append(append([]string(nil), values...), "appended to "+name)
			if !reflect.DeepEqual(out[name], want) {
				t.Errorf("%s = %q, want %q", name, out[name], want)
			}
		}
	}
}

// TestOwnResponseHeader: the header of a response net/http returned loses
// its hop-by-hop names in place, as responseHeader's copy would; a header
// with a name that is not canonical is copied by responseHeader instead.
func TestOwnResponseHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      http.Header
		want    http.Header
		inPlace bool
	}{
		{
			name: "hop-by-hop and listed names dropped",
			in: http.Header{
				"Connection":        {"X-Hop, keep-alive", "x-other"},
				"X-Hop":             {"1"},
				"X-Other":           {"2"},
				"Keep-Alive":        {"timeout=5"},
				"Transfer-Encoding": {"chunked"},
				"Upgrade":           {"h2c"},
				"Content-Length":    {"10"},
				"Content-Type":      {"text/plain"},
				"Set-Cookie":        {"a=1", "b=2"},
			},
			want:    http.Header{"Content-Length": {"10"}, "Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}},
			inPlace: true,
		},
		{
			name:    "nothing to drop",
			in:      http.Header{"Content-Type": {"text/plain"}, "X-A": {"1"}},
			want:    http.Header{"Content-Type": {"text/plain"}, "X-A": {"1"}},
			inPlace: true,
		},
		{
			name: "a non-canonical name: copied",
			in: http.Header{
				"Connection": {"X-Hop"},
				"X-Hop":      {"1"},
				"connection": {"x-lower"},
				"X-Lower":    {"2"},
				"x-a":        {"1"},
				"Keep-Alive": {"timeout=5"},
			},
			want: http.Header{"X-A": {"1"}},
		},
		{
			name: "nil",
			in:   nil,
			want: http.Header{},
		},
	}
	for _, tt := range tests {
		if want := responseHeader(tt.in.Clone()); !reflect.DeepEqual(want, tt.want) {
			t.Fatalf("%s: responseHeader = %v, want %v", tt.name, want, tt.want)
		}
		in := tt.in.Clone()
		got := ownResponseHeader(in)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: ownResponseHeader = %v, want %v", tt.name, got, tt.want)
		}
		got["X-Probe"] = []string{"1"}
		if _, same := in["X-Probe"]; same != tt.inPlace {
			t.Errorf("%s: ownResponseHeader worked in place: %v, want %v", tt.name, same, tt.inPlace)
		}
	}
}
