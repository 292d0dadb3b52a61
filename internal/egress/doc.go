// Package egress is fetchd's egress guard: it decides which destinations an
// outbound request may reach, and dials only what it decided.
//
// Invariants:
//
//   - Only http and https URLs with a host and no credentials pass [ParseURL].
//     Host spellings that resolvers read differently are normalised to what
//     they reach before anything is checked: IDN forms (fullwidth digits,
//     ideographic full stops, enclosed letters, punycode) are mapped with a
//     strict IDNA lookup profile; a trailing dot is removed; decimal, hex,
//     octal and shortened IPv4 forms (2130706433, 0x7f000001, 0177.0.0.1,
//     127.1) become the dotted quad they reach. A host that cannot be
//     normalised, a host that looks numeric but is not an IPv4 address, an
//     IPv6 zone and a port outside 1-65535 are malformed ([ErrMalformed]).
//   - [Guard.Decide] is pure: its answer depends only on the address and the
//     allow list fixed by [New]. It refuses every address that is not global
//     unicast or that lies in a special range (loopback, private, link-local,
//     cloud metadata, CGNAT, unique-local, 0.0.0.0/8, documentation,
//     benchmarking, multicast, reserved, broadcast, discard), and every IPv6
//     form that tunnels to an IPv4 address it cannot vouch for
//     (IPv4-compatible, NAT64, 6to4, Teredo). IPv4-mapped IPv6 addresses are
//     judged as the IPv4 address they carry. The most specific range wins, so
//     169.254.169.254 is reported as a cloud metadata endpoint, not as
//     link-local. An address in a [WithAllow] range is let through; nothing
//     else is. Every [Decision] carries a human Reason.
//   - [Guard.Resolve] checks every address a name resolves to; one refused
//     address refuses the whole name, so a name that resolves to one public
//     and one internal address is refused.
//   - The address dialled is the address checked: [Guard.DialContext] hands
//     the dialer IP literals from [Guard.Resolve], never the name, and a
//     Control hook re-checks the socket address just before connect.
//
// A [Guard] is immutable after [New] and safe for concurrent use.
package egress
