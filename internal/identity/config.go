package identity

import (
	"crypto/sha256"

	"github.com/fetchd/fetchd/internal/egress"
)

// Caller is one calling service as the policy file names it.
type Caller struct {
	// Name identifies the caller in logs and is its idempotency scope.
	Name string
	// Tokens are the SHA-256 digests of the bearer tokens it may present.
	Tokens [][sha256.Size]byte
	// Certificates match the verified client certificates it may present.
	Certificates []CertMatch
	// AllowTargets are the hosts it may reach; nil means any host the
	// egress guard allows.
	AllowTargets []egress.HostPattern
	// Rate limits its calls; the zero Rate does not limit.
	Rate Rate
}

// CertMatch names a client certificate by exactly one of its identities.
type CertMatch struct {
	URI        string // a URI SAN, e.g. spiffe://example.org/checkout
	DNS        string // a DNS SAN
	CommonName string // the subject common name
}

// Rate is a token bucket: PerSecond calls per second, bursts of Burst.
// PerSecond zero or less means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Anonymous says when a call without credentials is accepted.
type Anonymous int

const (
	AnonymousNever    Anonymous = iota // always UNAUTHENTICATED
	AnonymousLoopback                  // only from a loopback peer address
	AnonymousAlways                    // from anywhere
)

// Config is the caller table of one policy generation.
type Config struct {
	Callers   []Caller
	Anonymous Anonymous
	// AnonymousAllowTargets and AnonymousRate apply to anonymous callers,
	// like Caller.AllowTargets and Caller.Rate.
	AnonymousAllowTargets []egress.HostPattern
	AnonymousRate         Rate
}
