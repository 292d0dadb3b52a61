package telemetry

import (
	"fmt"
	"net/url"
	"sync"
	"testing"
)

func TestURLRedactorFull(t *testing.T) {
	t.Parallel()
	r := NewURLRedactor("api_key")
	tests := []struct{ in, want string }{
		{"https://user:pw@example.com/a?b=1", "https://example.com/a?b=1"},
		{"https://s3.example.com/o?X-Amz-Signature=abc&x-amz-credential=k&part=2", "https://s3.example.com/o?X-Amz-Signature=REDACTED&x-amz-credential=REDACTED&part=2"},
		{"https://example.com/?sig=s1&SIG=s2&Signature=s3&X-Goog-Signature=s4&AWSAccessKeyId=s5", "https://example.com/?sig=REDACTED&SIG=REDACTED&Signature=REDACTED&X-Goog-Signature=REDACTED&AWSAccessKeyId=REDACTED"},
		{"https://example.com/?api_key=k&q=x#frag", "https://example.com/?api_key=REDACTED&q=x"},
		{"https://example.com/?%73ig=escaped", "https://example.com/?%73ig=REDACTED"},
		{"https://example.com/?sig", "https://example.com/?sig"},
		{"https://example.com/p", "https://example.com/p"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Full(u); got != tt.want {
			t.Errorf("Full(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if u.String() != tt.in && u.User != nil {
			t.Errorf("Full modified its argument")
		}
	}
	if got := (URLRedactor{}).Full(&url.URL{Scheme: "https", Host: "h", User: url.User("u"), RawQuery: "sig=1"}); got != "https://h?sig=1" {
		t.Errorf("zero redactor = %q", got)
	}
}

func TestHostLabelsBounded(t *testing.T) {
	t.Parallel()
	h := NewHostLabels(3)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { h.Label(fmt.Sprintf("h%d.example", i%10)) })
	}
	wg.Wait()
	distinct := map[string]bool{}
	for i := range 10 {
		distinct[h.Label(fmt.Sprintf("h%d.example", i))] = true
	}
	if len(distinct) != 4 || !distinct[OtherHost] {
		t.Fatalf("labels = %v, want 3 hosts and %q", distinct, OtherHost)
	}
}
