package policy

import (
	"testing"
	"time"
)

// BenchmarkResolve measures Resolve on the example file, which runs on every
// request:
//
//	go test -run '^$' -bench Resolve -benchmem ./internal/policy/
//
// The one allocation of an unclamped request is the copy of RetryOn; a
// clamped ask adds the Clamped lines.
func BenchmarkResolve(b *testing.B) {
	s, err := LoadFile("../../examples/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name   string
		ask    Ask
		policy string
		host   string
	}{
		{"default/no-rule-match", Ask{}, "", "other.org"},
		{"default/exact", Ask{}, "", "api.stripe.com"},
		{"named/exact", Ask{TotalTimeout: 5 * time.Second, MaxAttempts: 2}, "payments", "api.stripe.com"},
		{"default/deep-wildcard", Ask{}, "", "a.b.c.d.www.example.com"},
		{"clamped-ask", Ask{MaxAttempts: 50, TotalTimeout: time.Hour}, "", "api.stripe.com"},
		{"builtin/DefaultSet", Ask{}, "", "api.stripe.com"},
	}
	for _, c := range cases {
		set := s
		if c.name == "builtin/DefaultSet" {
			set = DefaultSet()
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := set.Resolve(c.ask, c.policy, c.host); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoad measures loading the example file (done at start and on
// SIGHUP, not per request).
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadFile("../../examples/policy.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}
