package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Decision is the guard's answer for one address.
type Decision struct {
	Allowed bool
	// Reason is always set: why the address is allowed ("global unicast",
	// "allowed by 127.0.0.0/8") or why it is refused ("loopback address").
	Reason string
}

// Guard decides which addresses may be dialled. It is immutable after
// [New] and safe for concurrent use. The zero Guard is ready to use and
// equals New().
type Guard struct {
	allow    []netip.Prefix
	resolver Resolver
}

// New returns a Guard that refuses every address that is not global unicast
// or lies in a special range, except those in [WithAllow] ranges.
func New(opts ...Option) *Guard {
	g := &Guard{resolver: net.DefaultResolver}
	for _, o := range opts {
		o.apply(g)
	}
	return g
}

// Decide judges one address. It is pure: the answer depends only on addr and
// the allow list. A zone is ignored; an IPv4-mapped IPv6 address is judged as
// the IPv4 address it carries, for the rules and for the allow list alike.
func (g *Guard) Decide(addr netip.Addr) Decision {
	if !addr.IsValid() {
		return Decision{Reason: "invalid address"}
	}
	a := addr.WithZone("").Unmap()
	reason, ok := classify(a)
	if ok {
		return Decision{Allowed: true, Reason: reason}
	}
	for _, p := range g.allow {
		if p.Contains(a) {
			return Decision{Allowed: true, Reason: "allowed by " + p.String()}
		}
	}
	if addr.Is4In6() {
		reason += " (IPv4-mapped IPv6)"
	}
	return Decision{Reason: reason}
}

// allows is Decide(addr).Allowed without building the reason, for the
// checks made on every call (an allowed reason is a string built per call).
// TestAllowsAgreesWithDecide holds the two equal.
func (g *Guard) allows(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	a := addr.WithZone("").Unmap()
	if _, ok := classify(a); ok {
		return true
	}
	for _, p := range g.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Resolve returns the addresses of host after checking every one of them.
//
// host is a name or an IP literal (brackets optional); it is normalised as
// [ParseURL] normalises a URL host, and a literal needs no lookup. If any
// address is refused the whole host is refused with a *DeniedError: a name
// that resolves to one public and one internal address is refused. A failed
// lookup, or one that returns no address, is a *DNSError ([IsDNSError]). A
// host that cannot be normalised wraps [ErrMalformed]. The addresses are
// returned in the resolver's order, without duplicates.
func (g *Guard) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	name, lit, err := hostForResolve(host)
	if err != nil {
		return nil, err
	}
	if lit.IsValid() {
		if !g.allows(lit) {
			return nil, &DeniedError{Host: lit.String(), Addr: lit, Reason: g.Decide(lit).Reason}
		}
		return []netip.Addr{lit}, nil
	}

	addrs, err := g.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if !g.allows(a) {
			return nil, &DeniedError{Host: name, Addr: a, Reason: g.Decide(a).Reason}
		}
	}
	return addrs, nil
}

func (g *Guard) lookup(ctx context.Context, name string) ([]netip.Addr, error) {
	r := g.resolver
	if r == nil {
		r = net.DefaultResolver
	}
	found, err := r.LookupNetIP(ctx, "ip", name)
	if err == nil && len(found) == 0 {
		err = errNoAddresses
	}
	if err != nil {
		e := &DNSError{Host: name, Err: err}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			e.ctxErr = cerr
		}
		return nil, e
	}
	addrs := make([]netip.Addr, 0, len(found))
	for _, a := range found {
		if !containsAddr(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	return addrs, nil
}

func containsAddr(addrs []netip.Addr, a netip.Addr) bool {
	for _, b := range addrs {
		if a == b {
			return true
		}
	}
	return false
}

// hostForResolve normalises a host given to Resolve: an IP literal (IPv6
// with or without brackets, zones allowed) or a name or numeric IPv4 spelling.
func hostForResolve(host string) (string, netip.Addr, error) {
	h := host
	bracketed := strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]")
	if bracketed {
		h = h[1 : len(h)-1]
	}
	if bracketed || strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, fmt.Errorf("egress: host %q is not a valid IPv6 address: %w", clip(host, 64), ErrMalformed)
		}
		return "", a, nil
	}
	name, a, reason := normalizeHost(h)
	if reason != "" {
		return "", netip.Addr{}, fmt.Errorf("egress: %s: %w", reason, ErrMalformed)
	}
	return name, a, nil
}
