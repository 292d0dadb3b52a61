// Package nettest holds network helpers shared by fetchd's tests.
package nettest

import (
	"net"
	"testing"
)

// RefusedAddr returns a 127.0.0.1 address where nothing listens: it was
// listened on and closed, so connecting to it is refused.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
