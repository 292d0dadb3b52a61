package egress

import (
	"context"
	"net"
	"net/netip"
)

// Option configures a [Guard].
type Option interface {
	apply(*Guard)
}

type optionFunc func(*Guard)

func (f optionFunc) apply(g *Guard) { f(g) }

// Resolver looks up the addresses of a host. *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// WithAllow lets addresses in the given ranges through even when the guard
// would otherwise refuse them (fetchd's --allow-cidr). Prefixes are masked;
// an IPv4-mapped IPv6 prefix (::ffff:127.0.0.0/104) is read as the IPv4 range
// it maps (127.0.0.0/8); invalid prefixes are ignored. Allowed ranges match
// the address after IPv4-mapped addresses are unmapped, so 127.0.0.0/8 also
// lets ::ffff:127.0.0.1 through. Repeated options add up.
func WithAllow(prefixes ...netip.Prefix) Option {
	return optionFunc(func(g *Guard) {
		for _, p := range prefixes {
			if !p.IsValid() {
				continue
			}
			p = p.Masked()
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			g.allow = append(g.allow, p)
		}
	})
}

// WithResolver sets the resolver used by [Guard.Resolve]. The default is
// net.DefaultResolver; nil keeps the default.
func WithResolver(r Resolver) Option {
	return optionFunc(func(g *Guard) {
		if r != nil {
			g.resolver = r
		}
	})
}
