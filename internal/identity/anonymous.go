package identity

import (
	"net"
	"net/netip"

	"google.golang.org/grpc/peer"
)

// acceptAnonymous says whether a call without credentials from p may run,
// per the table's Anonymous setting; the error says what to send instead.
func (t *table) acceptAnonymous(p *peer.Peer) error {
	switch t.anonMode {
	case AnonymousAlways:
		return nil
	case AnonymousLoopback:
		if p != nil && isLoopback(p.Addr) {
			return nil
		}
		return refuse(ErrCredentialsRequired,
			"credentials required: send authorization: Bearer <token> or a client certificate (anonymous calls are accepted only from loopback)")
	}
	return refuse(ErrCredentialsRequired,
		"credentials required: send authorization: Bearer <token> or a client certificate")
}

// isLoopback reports whether addr is an IP address in 127.0.0.0/8 or ::1,
// IPv4-mapped forms included. Anything that does not parse as an IP address
// (a Unix socket, a nil Addr) is not loopback.
func isLoopback(addr net.Addr) bool {
	if addr == nil {
		return false
	}
	s := addr.String()
	ip, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return false
		}
		ip = ap.Addr()
	}
	return ip.Unmap().IsLoopback()
}
