package outbound

import (
	"fmt"
	"testing"

	"github.com/fetchd/fetchd/internal/egress"
)

func TestLiterals(t *testing.T) {
	t.Parallel()
	l := newLiterals()
	g, other := egress.New(), egress.New()
	if l.allowed(g, "127.0.0.1") {
		t.Fatal("an empty table allows 127.0.0.1")
	}
	l.allow(g, "127.0.0.1")
	if !l.allowed(g, "127.0.0.1") {
		t.Fatal("127.0.0.1 is not remembered")
	}
	if l.allowed(other, "127.0.0.1") {
		t.Error("another guard's answer is taken for this one's")
	}
	if l.allowed(g, "127.0.0.2") {
		t.Error("127.0.0.2 is allowed by 127.0.0.1's entry")
	}

	// A host that falls in 127.0.0.1's slot replaces it.
	var collides string
	for i := 2; collides == ""; i++ {
		if h := fmt.Sprintf("10.0.%d.%d", i/256, i%256); l.slot(h) == l.slot("127.0.0.1") {
			collides = h
		}
	}
	l.allow(g, collides)
	if !l.allowed(g, collides) || l.allowed(g, "127.0.0.1") {
		t.Errorf("after %s: it is allowed %v, 127.0.0.1 %v; want true, false", collides, l.allowed(g, collides), l.allowed(g, "127.0.0.1"))
	}
}
