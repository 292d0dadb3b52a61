//go:build !unix

package outbound

// peekFD cannot look at a socket without the Unix recvfrom flags: the
// connection counts as open, and a closed one fails its exchange instead.
func (pc *directConn) peekFD(uintptr) bool {
	pc.open = true
	return true
}
