//go:build unix

package outbound

import "syscall"

// peekFD looks at the socket of an idle connection without waiting or
// consuming anything: open means nothing has arrived (EAGAIN). End of file,
// an error, or a byte nobody asked for mean the connection is closed or out
// of step.
func (pc *directConn) peekFD(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), pc.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	pc.open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true // done, whatever it found: never wait for the socket
}
