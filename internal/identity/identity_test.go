package identity

import (
	"context"
	"testing"

	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
)

func TestAnonymousNameIsTheIdempotencyScope(t *testing.T) {
	t.Parallel()
	if AnonymousName != idempotency.AnonymousScope {
		t.Fatalf("AnonymousName %q != idempotency.AnonymousScope %q", AnonymousName, idempotency.AnonymousScope)
	}
}

func TestPermits(t *testing.T) {
	t.Parallel()
	allow := func(name string, ps []egress.HostPattern) Caller {
		return Caller{Name: name, Tokens: [][32]byte{HashToken("token-of-" + name)}, AllowTargets: ps}
	}
	cfg := Config{
		Callers: []Caller{
			allow("any", nil),
			allow("none", patterns(t)), // empty, not nil
			allow("exact", patterns(t, "API.Example.com", "10.0.0.5")),
			allow("wild", patterns(t, "*.example.com")),
			allow("star", patterns(t, "*")),
		},
		Anonymous:             AnonymousAlways,
		AnonymousAllowTargets: patterns(t, "public.example.org"),
	}
	a := New(cfg)
	// Changing the Config after New changes nothing.
	cfg.Callers[2].AllowTargets[0] = egress.MustParseHostPattern("evil.com")

	hosts := []string{"api.example.com", "x.api.example.com", "example.com", "a.b.example.com", "10.0.0.5", "public.example.org", "evil.com"}
	for _, tc := range []struct {
		token string
		want  []bool
	}{
		{"token-of-any", []bool{true, true, true, true, true, true, true}},
		{"token-of-none", []bool{false, false, false, false, false, false, false}},
		{"token-of-exact", []bool{true, false, false, false, true, false, false}},
		{"token-of-wild", []bool{true, true, false, true, false, false, false}},
		{"token-of-star", []bool{true, true, true, true, true, true, true}},
		{"", []bool{false, false, false, false, false, true, false}}, // anonymous
	} {
		id := mustAuth(t, a, tc.token)
		for i, h := range hosts {
			if got := id.Permits(h); got != tc.want[i] {
				t.Errorf("%s.Permits(%q) = %v; want %v", id.Name, h, got, tc.want[i])
			}
		}
	}
}

func TestNilAndLiteralIdentity(t *testing.T) {
	t.Parallel()
	var none *Identity
	if none.Permits("api.example.com") || none.Allow() || none.RateLimit() != (Rate{}) {
		t.Fatal("a nil *Identity permits or allows something")
	}
	lit := &Identity{Name: "test"}
	if !lit.Permits("anything.example") || !lit.Allow() || lit.RateLimit() != (Rate{}) {
		t.Fatal("a literal Identity is limited; want any host, no rate limit")
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	if id, ok := FromContext(context.Background()); ok || id != nil {
		t.Fatalf("FromContext(empty) = %v, %v; want nil, false", id, ok)
	}
	if id, ok := FromContext(NewContext(context.Background(), nil)); ok || id != nil {
		t.Fatalf("FromContext(nil identity) = %v, %v; want nil, false", id, ok)
	}
	want := &Identity{Name: "svc", Via: ViaToken}
	if got, ok := FromContext(NewContext(context.Background(), want)); !ok || got != want {
		t.Fatalf("FromContext = %v, %v; want %v", got, ok, want)
	}
}

// TestEachCallGetsItsOwnIdentity: changing one call's Identity cannot change
// another's.
func TestEachCallGetsItsOwnIdentity(t *testing.T) {
	t.Parallel()
	a := New(Config{Callers: []Caller{{Name: "svc", Tokens: [][32]byte{HashToken("tok-000000000")}}}})
	one := mustAuth(t, a, "tok-000000000")
	one.Name = "changed"
	if two := mustAuth(t, a, "tok-000000000"); two.Name != "svc" {
		t.Fatalf("second call ran as %q; want svc", two.Name)
	}
}
