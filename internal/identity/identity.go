package identity

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/fetchd/fetchd/internal/egress"
)

// AnonymousName is the Name of every anonymous [Identity]. It is the same
// string as idempotency.AnonymousScope (this package does not import
// idempotency; a test pins the equality), so anonymous calls keep sharing
// the scope they had before fetchd knew its callers. [Config.Validate]
// refuses a caller with this name.
const AnonymousName = "anonymous"

// How a call was authenticated, as [Identity.Via] reports it.
const (
	ViaToken       = "token"       // a bearer token alone
	ViaCertificate = "certificate" // a verified client certificate (with or without a matching token)
	ViaAnonymous   = "anonymous"   // no credentials
)

// Identity is who a call runs as. [Authenticator.Authenticate] gives each
// call its own Identity, fixed when the call was authenticated: a later
// [Authenticator.Update] does not change it.
//
// An Identity built as a literal (in tests of other packages) permits every
// host and is not rate limited. Its methods are safe for concurrent use.
type Identity struct {
	// Name is the caller's name from the policy, or [AnonymousName].
	Name string
	// Anonymous is true when the call carried no credentials.
	Anonymous bool
	// Via is [ViaToken], [ViaCertificate] or [ViaAnonymous].
	Via string

	allow   []egress.HostPattern // nil = any host; empty non-nil = none
	limiter *rate.Limiter        // nil = unlimited; shared by calls of the same caller
	rate    Rate                 // what limiter enforces, for messages
	now     func() time.Time     // nil = time.Now
}

// Permits reports whether the caller may reach host, a normalised URL host
// (url.URL.Hostname() after egress.ParseURL). An Identity whose allowance
// is nil permits every host; an empty allowance permits none. A nil
// *Identity permits nothing.
func (id *Identity) Permits(host string) bool {
	if id == nil {
		return false
	}
	if id.allow == nil {
		return true
	}
	for _, p := range id.allow {
		if p.Match(host) {
			return true
		}
	}
	return false
}

// Allow takes one token from the caller's rate limiter and reports whether
// there was one. It is true when the caller is not limited, and false for a
// nil *Identity. All calls of one caller (all anonymous calls together)
// draw from one limiter.
func (id *Identity) Allow() bool {
	if id == nil {
		return false
	}
	if id.limiter == nil {
		return true
	}
	now := time.Now
	if id.now != nil {
		now = id.now
	}
	return id.limiter.AllowN(now(), 1)
}

// RateLimit returns the limit [Identity.Allow] enforces, for the message
// shown when it refuses: the zero Rate when the caller is not limited,
// otherwise PerSecond > 0 and Burst >= 1.
func (id *Identity) RateLimit() Rate {
	if id == nil {
		return Rate{}
	}
	return id.rate
}

type contextKey struct{}

// NewContext returns a copy of ctx carrying id. The interceptors do this for
// every authenticated call; tests of other packages use it directly.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the Identity that [NewContext] put in ctx. The second
// result is false (and the Identity nil) when there is none, which for a
// FetchService call means the interceptors are not installed.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(contextKey{}).(*Identity)
	return id, ok && id != nil
}
