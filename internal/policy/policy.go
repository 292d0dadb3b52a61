package policy

import (
	"slices"
	"time"

	"github.com/fetchd/fetchd/internal/outbound"
)

// DefaultName is the name of the policy used when a request names none.
const DefaultName = "default"

// Policy holds the built-in values of one policy: the defaults a request
// gets when it asks for nothing, the caps its asks are clamped to, and the
// per-target protection every target gets. Default() is the source of every
// built-in number; a policy file (see Load) overrides them key by key.
type Policy struct {
	Name string

	// Defaults for unset timeouts.
	ConnectTimeout time.Duration
	ReadTimeout    time.Duration
	AttemptTimeout time.Duration
	TotalTimeout   time.Duration

	// Caps for asked timeouts.
	MaxConnectTimeout time.Duration
	MaxReadTimeout    time.Duration
	MaxAttemptTimeout time.Duration
	MaxTotalTimeout   time.Duration

	MaxAttempts    int // default attempts
	MaxAttemptsCap int // org cap on attempts

	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	MaxBackoffCap  time.Duration
	Multiplier     float64
	MaxMultiplier  float64
	RetryOn        []int
	MaxRetryAfter  time.Duration

	MaxRequestBytes     int64
	MaxResponseBytes    int64
	MaxRequestBytesCap  int64 // org cap on MaxRequestBytes
	MaxResponseBytesCap int64 // org cap on MaxResponseBytes

	// Per-target settings: the pool size and the protection of a target.
	MaxConns        int
	Budget          outbound.Budget
	Breaker         outbound.Breaker
	ShareRetryAfter bool

	// IdempotencyTTL is how long a completed keyed response is kept for replay.
	IdempotencyTTL time.Duration
	// InFlightWait bounds how long a duplicate keyed call waits for the first
	// one to finish before it is answered ABORTED.
	InFlightWait time.Duration
}

// Default returns the default policy of DESIGN.md: 3 attempts (cap 5);
// connect 3s, read 30s, attempt 10s, total 30s; backoff 100ms doubling to 10s
// with full jitter; Retry-After honoured up to 60s; retry on 429, 500, 502,
// 503, 504; response bodies capped below the gRPC default 4 MiB receive
// limit; per target a retry budget of 20% of requests plus 10 retries/s over
// 10s, a breaker that opens after 5 consecutive failures or a failure ratio
// of 0.5 over at least 20 attempts in 30s (open 30s, 1 half-open probe),
// shared Retry-After, and 64 connections.
func Default() Policy {
	return Policy{
		Name:              DefaultName,
		ConnectTimeout:    3 * time.Second,
		ReadTimeout:       30 * time.Second,
		AttemptTimeout:    10 * time.Second,
		TotalTimeout:      30 * time.Second,
		MaxConnectTimeout: 10 * time.Second,
		MaxReadTimeout:    60 * time.Second,
		MaxAttemptTimeout: 60 * time.Second,
		MaxTotalTimeout:   120 * time.Second,
		MaxAttempts:       3,
		MaxAttemptsCap:    5,
		InitialBackoff:    100 * time.Millisecond,
		MaxBackoff:        10 * time.Second,
		MaxBackoffCap:     60 * time.Second,
		Multiplier:        2,
		MaxMultiplier:     10,
		RetryOn:           []int{429, 500, 502, 503, 504},
		MaxRetryAfter:     60 * time.Second,
		MaxRequestBytes:   4 << 20,
		// 4 MiB is the default gRPC receive limit of callers; leave room for
		// headers, the attempt log and framing so default clients work.
		MaxResponseBytes:    4<<20 - 128<<10,
		MaxRequestBytesCap:  MaxRequestBytesLimit,
		MaxResponseBytesCap: MaxResponseBytesLimit,
		// The same as outbound's WithMaxConnsPerHost default.
		MaxConns: 64,
		Budget:   outbound.Budget{Ratio: 0.2, MinPerSecond: 10, Window: 10 * time.Second},
		Breaker: outbound.Breaker{
			ConsecutiveFailures: 5,
			FailureRatio:        0.5,
			MinRequests:         20,
			Window:              30 * time.Second,
			OpenFor:             30 * time.Second,
			HalfOpenProbes:      1,
		},
		ShareRetryAfter: true,
		IdempotencyTTL:  24 * time.Hour,
		InFlightWait:    2 * time.Second,
	}
}

// Ask is what a caller asked for; zero fields are unset.
type Ask struct {
	ConnectTimeout   time.Duration
	ReadTimeout      time.Duration
	AttemptTimeout   time.Duration
	TotalTimeout     time.Duration
	MaxAttempts      int
	InitialBackoff   time.Duration
	MaxBackoff       time.Duration
	Multiplier       float64
	RetryOn          []int
	IgnoreRetryAfter bool
}

// Resolve returns the outbound policy for ask: unset fields take p's
// defaults, asks above a cap are clamped to it. ShortenedTimeouts is set when
// the ask lowers the connect, read or attempt timeout below p's own. Validation of the ask's shape
// (negative durations, statuses out of range) is the caller's job. It is the
// built-in policy only; Set.Resolve applies a policy file (and agrees with
// this on DefaultSet, which a test checks).
func (p Policy) Resolve(ask Ask) outbound.Policy {
	initial := pick(ask.InitialBackoff, p.InitialBackoff, p.MaxBackoffCap)
	maxBackoff := max(pick(ask.MaxBackoff, p.MaxBackoff, p.MaxBackoffCap), initial)
	mult := p.Multiplier
	if ask.Multiplier != 0 {
		mult = min(max(ask.Multiplier, 1), p.MaxMultiplier)
	}
	attempts := p.MaxAttempts
	if ask.MaxAttempts > 0 {
		attempts = ask.MaxAttempts
	}
	attempts = min(attempts, p.MaxAttemptsCap)
	retryOn := p.RetryOn
	if len(ask.RetryOn) > 0 {
		retryOn = ask.RetryOn
	}
	connect := pick(ask.ConnectTimeout, p.ConnectTimeout, p.MaxConnectTimeout)
	read := pick(ask.ReadTimeout, p.ReadTimeout, p.MaxReadTimeout)
	attempt := pick(ask.AttemptTimeout, p.AttemptTimeout, p.MaxAttemptTimeout)
	return outbound.Policy{
		ConnectTimeout:   connect,
		ReadTimeout:      read,
		AttemptTimeout:   attempt,
		TotalTimeout:     pick(ask.TotalTimeout, p.TotalTimeout, p.MaxTotalTimeout),
		MaxAttempts:      max(attempts, 1),
		InitialBackoff:   initial,
		MaxBackoff:       maxBackoff,
		Multiplier:       mult,
		RetryOn:          slices.Clone(retryOn),
		IgnoreRetryAfter: ask.IgnoreRetryAfter,
		MaxRetryAfter:    p.MaxRetryAfter,
		MaxResponseBytes: p.MaxResponseBytes,
		MaxConns:         p.MaxConns,
		Budget:           p.Budget,
		Breaker:          p.Breaker,
		ShareRetryAfter:  p.ShareRetryAfter,
		ShortenedTimeouts: connect < min(p.ConnectTimeout, p.MaxConnectTimeout) ||
			read < min(p.ReadTimeout, p.MaxReadTimeout) ||
			attempt < min(p.AttemptTimeout, p.MaxAttemptTimeout),
	}
}

// pick returns asked clamped to limit, or def when nothing was asked.
func pick(asked, def, limit time.Duration) time.Duration {
	if asked <= 0 {
		return def
	}
	return min(asked, limit)
}
