package identity

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Authenticator decides who a gRPC call runs as, from its bearer token, its
// verified client certificate, or neither. It holds one caller table at a
// time; [Authenticator.Update] replaces it atomically. It is safe for
// concurrent use.
type Authenticator struct {
	now func() time.Time

	mu    sync.Mutex            // serialises Update, so each builds on the table before it
	table atomic.Pointer[table] // read without locking by Authenticate
}

// New returns an Authenticator for cfg. It does not validate cfg (the
// policy loader calls [Config.Validate]); a table that cannot tell callers
// apart is refused per call instead, with [ErrAmbiguous]. cfg is copied:
// changing it afterwards changes nothing.
func New(cfg Config, opts ...Option) *Authenticator {
	a := &Authenticator{now: time.Now}
	for _, o := range opts {
		o(a)
	}
	a.table.Store(buildTable(cfg, nil, a.now))
	return a
}

// Update replaces the caller table with cfg, atomically: a call is
// authenticated against the old table or the new one, never a mix.
// Rate-limiter state carries over for a caller (and for anonymous calls)
// whose name and Rate are unchanged; a caller whose Rate changed starts
// with a full bucket. Calls authenticated before Update keep the Identity
// they got.
func (a *Authenticator) Update(cfg Config) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.table.Store(buildTable(cfg, a.table.Load(), a.now))
}

// Authenticate is an auth.AuthFunc: it returns ctx with the caller's
// [Identity] (see [FromContext]) or an [*Error], which gRPC reports as
// UNAUTHENTICATED. It does not rate-limit; the service calls
// [Identity.Allow]. The rules:
//
//   - A bearer token comes from one "authorization: Bearer <token>"
//     metadata value (scheme case-insensitive). More than one value, another
//     scheme, or an empty token is [ErrMalformedAuthorization]; a token no
//     caller holds is [ErrUnknownToken].
//   - A client certificate counts only when the TLS handshake verified it
//     (a verified chain in credentials.TLSInfo); a presented but unverified
//     one is [ErrUnverifiedCertificate]. The leaf must match exactly one
//     caller ([ErrUnknownCertificate], [ErrAmbiguous]).
//   - Given both, both must be valid and name the same caller
//     ([ErrMismatch]); the Identity's Via is then [ViaCertificate].
//   - Given neither, the call is anonymous if [Config.Anonymous] accepts it
//     from this peer, else [ErrCredentialsRequired]. An Anonymous value other
//     than the three constants is treated as [AnonymousNever].
func (a *Authenticator) Authenticate(ctx context.Context) (context.Context, error) {
	id, err := a.table.Load().identify(ctx)
	if err != nil {
		return nil, err
	}
	return NewContext(ctx, id), nil
}

// caller is one entry of a table: the Identity its calls get (Via filled
// in per call) and the certificates that name it.
type caller struct {
	identity Identity
	certs    []CertMatch
}

// tokenEntry is what a token digest names; ambiguous when the table gives
// the same token to two callers.
type tokenEntry struct {
	caller    *caller
	ambiguous bool
}

// limiterKey identifies a limiter across Updates: same key, same limiter.
type limiterKey struct {
	anonymous bool
	name      string
	rate      Rate
}

// table is one generation of the caller table. It is immutable once built.
type table struct {
	callers   []*caller
	tokens    map[[sha256.Size]byte]tokenEntry
	anonMode  Anonymous
	anonymous caller
	limiters  map[limiterKey]*rate.Limiter // for the next Update to carry over
}

func buildTable(cfg Config, old *table, now func() time.Time) *table {
	t := &table{
		tokens:   make(map[[sha256.Size]byte]tokenEntry),
		anonMode: cfg.Anonymous,
		limiters: make(map[limiterKey]*rate.Limiter),
	}
	limiter := func(k limiterKey) *rate.Limiter {
		if k.rate == (Rate{}) {
			return nil
		}
		if l, ok := t.limiters[k]; ok {
			return l
		}
		l, ok := old.limiter(k)
		if !ok {
			l = rate.NewLimiter(rate.Limit(k.rate.PerSecond), k.rate.Burst)
		}
		t.limiters[k] = l
		return l
	}
	for _, cc := range cfg.Callers {
		r := cc.Rate.normalized()
		c := &caller{
			identity: Identity{
				Name:    cc.Name,
				allow:   slices.Clone(cc.AllowTargets),
				limiter: limiter(limiterKey{name: cc.Name, rate: r}),
				rate:    r,
				now:     now,
			},
			certs: slices.Clone(cc.Certificates),
		}
		t.callers = append(t.callers, c)
		for _, h := range cc.Tokens {
			e, seen := t.tokens[h]
			switch {
			case !seen:
				t.tokens[h] = tokenEntry{caller: c}
			case e.caller != c:
				t.tokens[h] = tokenEntry{ambiguous: true}
			}
		}
	}
	r := cfg.AnonymousRate.normalized()
	t.anonymous = caller{identity: Identity{
		Name:      AnonymousName,
		Anonymous: true,
		Via:       ViaAnonymous,
		allow:     slices.Clone(cfg.AnonymousAllowTargets),
		limiter:   limiter(limiterKey{anonymous: true, name: AnonymousName, rate: r}),
		rate:      r,
		now:       now,
	}}
	return t
}

func (t *table) limiter(k limiterKey) (*rate.Limiter, bool) {
	if t == nil {
		return nil, false
	}
	l, ok := t.limiters[k]
	return l, ok
}

// normalized is the Rate a limiter enforces: the zero Rate (no limit) unless
// PerSecond is a positive finite number, and then a Burst of at least 1
// (a burst of 0 would refuse every call).
func (r Rate) normalized() Rate {
	if !(r.PerSecond > 0) || math.IsInf(r.PerSecond, 1) {
		return Rate{}
	}
	if r.Burst < 1 {
		r.Burst = 1
	}
	return r
}

// identify applies the rules documented on Authenticate.
func (t *table) identify(ctx context.Context) (*Identity, error) {
	byToken, err := t.fromToken(ctx)
	if err != nil {
		return nil, err
	}
	p, _ := peer.FromContext(ctx)
	byCert, err := t.fromCertificate(p)
	if err != nil {
		return nil, err
	}
	switch {
	case byToken != nil && byCert != nil && byToken != byCert:
		return nil, refuse(ErrMismatch, "the bearer token and the client certificate belong to different callers; send the credentials of one caller")
	case byCert != nil:
		return byCert.newIdentity(ViaCertificate), nil
	case byToken != nil:
		return byToken.newIdentity(ViaToken), nil
	}
	if err := t.acceptAnonymous(p); err != nil {
		return nil, err
	}
	return t.anonymous.newIdentity(ViaAnonymous), nil
}

// newIdentity returns a fresh copy of c's Identity, so no two calls share
// one and no call sees a later table.
func (c *caller) newIdentity(via string) *Identity {
	id := c.identity
	id.Via = via
	return &id
}

// headerAuthorization is the metadata key of the bearer token.
const headerAuthorization = "authorization"

// fromToken returns the caller the request's bearer token names, nil when
// there is no authorization metadata.
//
// Looking the token up by its SHA-256 digest in a map is not a timing
// oracle worth guarding against: the map hashes and compares the digest,
// whose bytes the attacker cannot steer (choosing a token whose digest
// shares a prefix with a stored one is a preimage search), so timing can at
// best hint at bytes of a stored digest, and a digest is no help in finding
// its token. The token itself is never compared.
func (t *table) fromToken(ctx context.Context) (*caller, error) {
	vals := metadata.ValueFromIncomingContext(ctx, headerAuthorization)
	switch len(vals) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, refuse(ErrMalformedAuthorization, fmt.Sprintf(
			`send one authorization metadata value, not %d: "authorization: Bearer <token>"`, len(vals)))
	}
	// AuthFromMD reads the first value, cuts the scheme at the first space
	// and compares it case-insensitively. Its own messages do not say what
	// form is expected, so any failure gets ours.
	token, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil || token == "" || strings.ContainsAny(token, " \t") {
		return nil, refuse(ErrMalformedAuthorization,
			`malformed authorization metadata: send "authorization: Bearer <token>" (scheme Bearer, one space, then the token)`)
	}
	e, ok := t.tokens[HashToken(token)]
	switch {
	case !ok:
		return nil, refuse(ErrUnknownToken, "unknown bearer token: check the token, or ask the policy owner to give its hash to a caller")
	case e.ambiguous:
		return nil, refuse(ErrAmbiguous, "bearer token is configured for more than one caller; the policy must give each token to one caller")
	}
	return e.caller, nil
}
