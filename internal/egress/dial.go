package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// DialContext returns a dial function for http.Transport.DialContext.
//
// For each call it splits addr into host and port, runs [Guard.Resolve] (so
// a refused or unresolvable host is never dialled), and dials the checked
// addresses in order with a copy of d, passing the IP literal, never the
// name. On a connect error it falls through to the next address; if all
// fail it returns the first error. As a second belt the copy of d carries a
// ControlContext hook that re-checks the socket address just before connect
// and refuses it with a *DeniedError if it is not allowed; d's own Control
// or ControlContext still runs after that check. d is not modified; nil
// means a zero net.Dialer. Only the tcp, tcp4 and tcp6 networks are served;
// tcp4 and tcp6 dial only addresses of that family.
func (g *Guard) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var base net.Dialer
	if d != nil {
		base = *d
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch network {
		case "tcp", "tcp4", "tcp6":
		default:
			return nil, fmt.Errorf("egress: network %q is not supported", network)
		}
		host, portText, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("egress: dial address %q: %w", clip(addr, 64), ErrMalformed)
		}
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("egress: port %q is out of range 1-65535: %w", clip(portText, 16), ErrMalformed)
		}
		addrs, err := g.Resolve(ctx, host)
		if err != nil {
			return nil, err
		}
		addrs = onNetwork(addrs, network)
		if len(addrs) == 0 {
			return nil, fmt.Errorf("egress: %s has no address for network %s", host, network)
		}

		dialer := base
		dialer.Control = nil
		dialer.ControlContext = g.control(host, base.Control, base.ControlContext)
		var first error
		for i, a := range addrs {
			actx, cancel := partialDeadline(ctx, len(addrs)-i)
			conn, err := dialer.DialContext(actx, network, netip.AddrPortFrom(a, uint16(port)).String())
			cancel()
			if err == nil {
				return conn, nil
			}
			if first == nil {
				first = err
			}
			if errors.Is(err, ErrDenied) || ctx.Err() != nil {
				break
			}
		}
		return nil, first
	}
}

// minAddrTimeout is the least time one address gets when a dial deadline is
// shared among several, as in package net's serial dialing.
const minAddrTimeout = 500 * time.Millisecond

// partialDeadline gives one of remaining addresses its share of ctx's
// deadline (at least minAddrTimeout, never past the deadline), so that an
// address that swallows packets cannot use up the time of the ones after it.
func partialDeadline(ctx context.Context, remaining int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || remaining <= 1 {
		return ctx, func() {}
	}
	left := time.Until(deadline)
	share := max(left/time.Duration(remaining), min(minAddrTimeout, left))
	return context.WithTimeout(ctx, share)
}

// onNetwork keeps the addresses a network can dial; IPv4-mapped addresses
// count as IPv4, as they do in package net.
func onNetwork(addrs []netip.Addr, network string) []netip.Addr {
	if network == "tcp" {
		return addrs
	}
	want4 := network == "tcp4"
	var out []netip.Addr
	for _, a := range addrs {
		if a.Unmap().Is4() == want4 {
			out = append(out, a)
		}
	}
	return out
}

// control returns the ControlContext hook that re-checks the socket address
// before connect, then runs the dialer's own hook, if any.
func (g *Guard) control(
	host string,
	next func(network, address string, c syscall.RawConn) error,
	nextCtx func(ctx context.Context, network, address string, c syscall.RawConn) error,
) func(ctx context.Context, network, address string, c syscall.RawConn) error {
	return func(ctx context.Context, network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("egress: socket address %q cannot be checked: %w", address, ErrDenied)
		}
		if !g.allows(ap.Addr()) {
			return &DeniedError{Host: host, Addr: ap.Addr(), Reason: g.Decide(ap.Addr()).Reason}
		}
		switch {
		case nextCtx != nil:
			return nextCtx(ctx, network, address, c)
		case next != nil:
			return next(network, address, c)
		}
		return nil
	}
}
