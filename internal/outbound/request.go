package outbound

import (
	"math"
	"net/http"
	"net/url"
	"time"
)

// Policy is a fully resolved policy for one request. The caller fills every
// field (defaults applied, caps clamped); Do does not invent values of its own
// beyond the few safety clamps listed on each field.
type Policy struct {
	// ConnectTimeout bounds the TCP connect plus the TLS handshake of a new
	// connection. Zero or less: no bound of its own.
	ConnectTimeout time.Duration
	// ReadTimeout is the longest silence tolerated while waiting for response
	// headers (counted from the moment the request is written) and between
	// body reads. Zero or less: no bound of its own.
	ReadTimeout time.Duration
	// AttemptTimeout bounds one attempt, body read included; each attempt
	// gets min(AttemptTimeout, time left). Zero or less: no bound of its own.
	AttemptTimeout time.Duration
	// TotalTimeout bounds everything, backoff included; the context's
	// deadline bounds it too. Zero or less: only the context bounds it.
	TotalTimeout time.Duration

	MaxAttempts    int           // >= 1; less is read as 1
	InitialBackoff time.Duration // the cap of the first backoff
	MaxBackoff     time.Duration // the cap of every backoff
	Multiplier     float64       // >= 1; less (or NaN) is read as 1

	// RetryOn lists the statuses that are retried, e.g. 429, 500, 502, 503,
	// 504. Statuses below 400 are never retried, listed or not.
	RetryOn []int
	// IgnoreRetryAfter makes 429 and 503 use the computed backoff.
	IgnoreRetryAfter bool
	// MaxRetryAfter caps a Retry-After wait (the wait is then recorded with
	// reason "retry_after_capped"). Zero or less caps it to no wait at all.
	MaxRetryAfter time.Duration
	// MaxResponseBytes is the largest response body accepted. Zero or less
	// accepts only an empty body.
	MaxResponseBytes int64
}

// normalized applies the clamps documented on Policy.
func (p Policy) normalized() Policy {
	p.MaxAttempts = max(p.MaxAttempts, 1)
	if !(p.Multiplier >= 1) { // also catches NaN
		p.Multiplier = 1
	}
	p.InitialBackoff = max(p.InitialBackoff, 0)
	p.MaxBackoff = max(p.MaxBackoff, 0)
	p.MaxRetryAfter = max(p.MaxRetryAfter, 0)
	p.MaxResponseBytes = max(p.MaxResponseBytes, 0)
	if p.MaxResponseBytes == math.MaxInt64 {
		p.MaxResponseBytes-- // the body is read up to limit+1
	}
	return p
}

// Request is one outbound call, already validated by the caller.
type Request struct {
	Method string   // an HTTP method token, sent as given (methods are case-sensitive)
	URL    *url.URL // validated and normalised by egress.ParseURL; not modified
	// Header holds the caller's headers, already validated. Hop-by-hop
	// headers, Host and Content-Length are dropped; not modified.
	Header http.Header
	Body   []byte // sent intact on every attempt; not modified
	// Keyed says the caller gave an idempotency key: unsafe methods (POST,
	// PATCH, ...) may then be retried after they may have been sent.
	Keyed  bool
	Policy Policy
}

// Attempt records one real send of the request (or one attempt that failed
// before anything was sent), in order.
type Attempt struct {
	Number int // 1-based, consecutive over the whole log
	Status int // 0 when no response arrived
	// Error is the failure class, "" when a response arrived and was read:
	// one of the Class... constants.
	Error string
	// Detail says what happened in words a person understands. It never
	// echoes the URL's query ("?query") or credentials ("user:password@").
	Detail   string
	Duration time.Duration
	// Backoff is the wait before this attempt; BackoffReason says why:
	// "" (first attempt, or a send the transport repeated on its own),
	// "backoff", "retry_after" or "retry_after_capped".
	Backoff       time.Duration
	BackoffReason string
}

// Response is the final upstream answer: whatever its status, Do returns it
// with a nil error.
type Response struct {
	Status   int
	Header   http.Header // hop-by-hop headers removed
	Body     []byte      // as the upstream sent it (no decompression)
	Attempts []Attempt
}

// Failure classes recorded in Attempt.Error.
const (
	ClassConnectRefused = "connect_refused" // nothing was sent
	ClassConnectTimeout = "connect_timeout" // TCP connect or TLS handshake took too long
	ClassDNS            = "dns"             // the name did not resolve; nothing was sent
	ClassTLS            = "tls"             // the TLS handshake failed (certificate, alert, version)
	ClassReset          = "reset"           // the connection was reset or closed early
	ClassReadTimeout    = "read_timeout"    // the upstream went silent for longer than ReadTimeout
	ClassAttemptTimeout = "attempt_timeout" // the attempt ran longer than AttemptTimeout
	ClassDeadline       = "deadline"        // TotalTimeout or the caller's deadline ran out
	ClassCanceled       = "canceled"        // the caller cancelled
	ClassDenied         = "denied"          // the egress guard refused the address; nothing was sent
	ClassBodyTooLarge   = "body_too_large"  // the response body is over MaxResponseBytes
	ClassProtocol       = "protocol"        // the upstream's answer could not be read as HTTP
	ClassOther          = "other"
)

// Backoff reasons recorded in Attempt.BackoffReason.
const (
	ReasonBackoff          = "backoff"
	ReasonRetryAfter       = "retry_after"
	ReasonRetryAfterCapped = "retry_after_capped"
)
