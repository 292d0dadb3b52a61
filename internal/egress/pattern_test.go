package egress

import "testing"

func TestHostPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		host    string
		want    bool
	}{
		{"api.example.com", "api.example.com", true},
		{"API.Example.COM.", "api.example.com", true},
		{"api.example.com", "x.api.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "badexample.com", false},
		{"*", "anything.test", true},
		{"10.0.0.5", "10.0.0.5", true},
		{"2001:db8::1", "2001:db8::1", true},
		{"[2001:DB8::1]", "2001:db8::1", true},
		{"0x0a000005", "10.0.0.5", true}, // numeric spellings mean what they reach
		{"bücher.example", "xn--bcher-kva.example", true},
	}
	for _, tt := range tests {
		p, err := ParseHostPattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParseHostPattern(%q): %v", tt.pattern, err)
		}
		if got := p.Match(tt.host); got != tt.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
	if (HostPattern{}).Match("a") {
		t.Error("the zero pattern must match nothing")
	}
}

func TestHostPatternRefused(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "https://api.example.com", "api.example.com/x", "a.*.example.com", "*example.com", "*.10.0.0.1", "api.example.com:443", "fe80::1%eth0", "-bad-.example", "user@host"} {
		if _, err := ParseHostPattern(s); err == nil {
			t.Errorf("ParseHostPattern(%q) accepted a bad pattern", s)
		}
	}
}

func TestHostPatternSpecificity(t *testing.T) {
	t.Parallel()
	exact := MustParseHostPattern("a.b.example.com")
	long := MustParseHostPattern("*.b.example.com")
	short := MustParseHostPattern("*.example.com")
	anyHost := MustParseHostPattern("*")
	if !(exact.Specificity() > long.Specificity() && long.Specificity() > short.Specificity() && short.Specificity() > anyHost.Specificity()) {
		t.Fatalf("specificity order wrong: %d %d %d %d", exact.Specificity(), long.Specificity(), short.Specificity(), anyHost.Specificity())
	}
}
