package outbound

import (
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"testing"

	"github.com/fetchd/fetchd/internal/egress"
)

func TestTargetKey(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"http://Example.COM/x":       "http://example.com:80",
		"https://example.com/x":      "https://example.com:443",
		"https://example.com:8443/":  "https://example.com:8443",
		"http://127.0.0.1:9000/":     "http://127.0.0.1:9000",
		"http://[2001:db8::1]/":      "http://[2001:db8::1]:80",
		"https://[2001:db8::1]:444/": "https://[2001:db8::1]:444",
	}
	for raw, want := range tests {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := targetKey(u); got != want {
			t.Errorf("targetKey(%s) = %s, want %s", raw, got, want)
		}
	}
}

func TestPoolEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	built := map[string]int{}
	p := newPool(2, func(scheme string, _ int, _ *egress.Guard) roundTripper {
		built[scheme]++
		return &http.Transport{}
	})
	get := func(raw string) *target {
		u, _ := url.Parse(raw)
		return p.get(targetKey(u), u.Scheme, 1, nil, true)
	}
	a := get("http://a.example/")
	b := get("http://b.example/")
	if again := get("http://a.example/other"); again != a {
		t.Fatal("same target gave a new transport")
	}
	c := get("http://c.example/") // evicts b, the least recently used
	if want := []string{"http://c.example:80", "http://a.example:80"}; !reflect.DeepEqual(p.keys(), want) {
		t.Fatalf("keys = %v, want %v", p.keys(), want)
	}
	if !b.evicted.Load() || a.evicted.Load() || c.evicted.Load() {
		t.Fatalf("evicted flags: a=%v b=%v c=%v, want only b", a.evicted.Load(), b.evicted.Load(), c.evicted.Load())
	}
	if get("http://b.example/") == b {
		t.Fatal("an evicted target was handed out again")
	}
	if built["http"] != 4 {
		t.Fatalf("built %d transports, want 4", built["http"])
	}
	if get("https://a.example/") == a {
		t.Fatal("http and https share a target")
	}
}

// maxConnsOf is the connection limit a target's transport was built with.
func maxConnsOf(tr roundTripper) int {
	switch tr := tr.(type) {
	case *http.Transport:
		return tr.MaxConnsPerHost
	case *directTransport:
		return tr.maxConns
	}
	panic(fmt.Sprintf("unknown transport %T", tr))
}
