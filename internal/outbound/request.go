package outbound

import (
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
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
	// ShortenedTimeouts says the caller asked for a connect, read or attempt
	// timeout below the policy's own value. Timeouts of such a run (classes
	// connect_timeout, read_timeout, attempt_timeout) say nothing about the
	// upstream, and count neither way for the target's breaker; any other
	// outcome of the run counts as usual. Without it, one caller asking for
	// 1ms could open a healthy target's breaker for everyone.
	ShortenedTimeouts bool

	MaxAttempts    int           // >= 1; less is read as 1; bounds every send, net/http's own re-sends included
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

	// The fields below protect and pool the target (scheme, host, port) as a
	// whole. They come from the target's rule and the organisation's
	// protection settings, so every request to one target carries the same
	// values until the policy is reloaded; a redirect hop carries the values
	// of its own target when Request.HopPolicy gives them. The budget,
	// breaker and hold they govern are kept per target apart from its
	// transports, bounded by WithMaxProtectedTargets (idle targets forgotten
	// first, those holding calls back last); dropping a transport
	// (WithMaxTargets, a MaxConns change, SetGuard) keeps them. Settings
	// that are not the target's own (a redirect hop to another target run
	// with the request's Policy, without HopPolicy) never replace its
	// transport or its state: the hop uses them as they are.

	// MaxConns bounds the connections to the target, idle or busy; zero or
	// less means the Client's default (WithMaxConnsPerHost). A request that
	// carries a different value than the target's transport was built with
	// gets a new transport (the budget, breaker and hold are kept); the old
	// one's idle connections are closed at once, and its busy ones as their
	// requests finish. Requests that alternate between two values would
	// rebuild it each time. A target has one transport per Request.Guard
	// in use, each bounded by MaxConns.
	MaxConns int
	// MaxRedirects is how many redirect hops are followed; zero or less
	// means none: a 3xx is an answer like any other. When it is positive and
	// the final answer of a hop (after the hop's own retries) is a 301, 302,
	// 303, 307 or 308 with a Location, the Location is resolved against the
	// hop's URL, checked by egress.ParseURL and Request.CheckRedirect, and
	// followed: a POST redirected by 301 or 302, and any method but GET and
	// HEAD redirected by 303, becomes a GET without a body (and without
	// Content-Type and the other body headers); every other redirect keeps
	// the method and the body, an unsafe method included. From the first hop
	// whose target (scheme, host, port) is not the request's own on,
	// Authorization, Cookie and Proxy-Authorization are not sent; every
	// other header, the Idempotency-Key included, is. Each hop runs the
	// whole attempt loop against its own target: the egress guard, the
	// target's pool, budget, breaker and hold, and MaxAttempts of its own,
	// with the policy Request.HopPolicy gives for it (this Policy without
	// one); TotalTimeout and the context bound all hops together, and the
	// hops are counted against this MaxRedirects whatever the hops' own
	// policies say. The redirect's
	// body is drained (up to 4 KiB) and discarded. A redirect that is not
	// followed is the answer: when the hop limit is reached (Stopped
	// "max_redirects"), or when its Location is missing, cannot be parsed,
	// or is refused by egress.ParseURL (another scheme than http and https,
	// credentials, a bad host or port); the attempt's Detail then says why.
	MaxRedirects int
	// Budget bounds the target's retries; the zero Budget bounds nothing. A
	// request that carries different Budget settings than the target's
	// budget was built with (a policy reload) replaces it with a fresh one:
	// the counts start from zero; one whose Budget bounds nothing drops it.
	Budget Budget
	// Breaker is the target's circuit breaker; the zero Breaker never opens.
	// A request that carries different Breaker settings than the target's
	// breaker was built with (a policy reload) replaces it with a fresh,
	// closed one; one whose Breaker never opens drops it. Timeouts of a run
	// with ShortenedTimeouts do not count.
	Breaker Breaker
	// ShareRetryAfter makes a Retry-After on a 429 or 503 from the target
	// hold every call to it until the time named (capped by MaxRetryAfter),
	// not only the call that received it. Every attempt of a request that
	// carries it, first attempts included, waits out the hold in force when
	// its wait begins (recorded as the attempt's Backoff, reason
	// "target_hold", when the hold is longer than its own wait), or is not
	// made when the hold would outlive the deadline. The hold is set and
	// obeyed whatever IgnoreRetryAfter says: that is the caller's ask for
	// its own waits, and does not speak for the target's other callers.
	ShareRetryAfter bool
}

// Budget is a per-target retry budget (the Finagle, Envoy and Linkerd
// model). Every Do counts one request when its first attempt is made; every
// retry the attempt loop makes counts one retry when it is granted, before
// its wait, and so does every send net/http repeats on its own, before it is
// made (refused, it is not made). Both are
// counted over a sliding Window, in tenths of it. A retry is granted while
// the retries counted are fewer than Ratio times the requests counted, or
// else while the retries this floor granted in the current second (whole
// seconds of the Client's clock since the budget was built) are fewer than
// MinPerSecond. The floor is a rate, not a reserve: it grants at most
// ceil(MinPerSecond) retries in any one such second, never a burst saved up
// over the window. Against an upstream
// that fails everything, traffic is about (1 + Ratio) times the requests,
// plus the floor, not MaxAttempts times. A refused retry ends the run with
// the outcome in hand (Stopped "retry_budget").
type Budget struct {
	Ratio        float64       // e.g. 0.2; in [0, 1]; NaN or less than 0 is read as 0
	MinPerSecond float64       // e.g. 10; >= 0; NaN or less than 0 is read as 0
	Window       time.Duration // e.g. 10s; zero or less disables the budget
}

// Enabled reports whether the budget bounds anything.
func (b Budget) Enabled() bool { return b.Window > 0 }

// Breaker is a per-target circuit breaker. It counts the outcome of every
// attempt it lets through. A failure is a status of 500, 502, 503 or 504, or
// an attempt that failed for a reason that is about the upstream
// (connect_refused, connect_timeout, dns, tls, reset, read_timeout,
// attempt_timeout, protocol), even after a status arrived (the body broke
// off). An attempt ended by the caller, the deadline, the egress guard or
// the body limit, or by an unknown error ("other"), counts neither way, and
// so does a timeout (connect_timeout, read_timeout, attempt_timeout) of a
// run with Policy.ShortenedTimeouts. Any other status is a success.
//
// Closed, it opens after ConsecutiveFailures failures in a row, or when the
// failures over Window reach FailureRatio of the attempts, once there are at
// least MinRequests attempts. While open, attempts to the target, first
// attempts and retries, are refused without anything being sent (class
// "breaker_open", Stopped "breaker_open"). After OpenFor it is half-open: it
// lets HalfOpenProbes attempts through at a time and refuses the others; a
// probe's success closes it with every count reset, a probe's failure opens
// it again for OpenFor. A refused attempt never counts. Only outcomes of
// attempts let through since the last change of state count, so an attempt
// that started before the breaker opened cannot close it. A retry's permit
// is taken when the retry is decided, before its wait: a breaker that opens
// during that wait does not stop it, and a half-open probe place is held
// through it.
type Breaker struct {
	ConsecutiveFailures int           // zero or less: not used
	FailureRatio        float64       // in (0, 1]; zero, less or NaN: not used
	MinRequests         int           // attempts needed in Window before the ratio counts; < 1 is read as 1
	Window              time.Duration // sliding window of the ratio; zero or less: the ratio is not used
	OpenFor             time.Duration // how long it stays open before probing; zero or less: probe at once
	HalfOpenProbes      int           // attempts let through at once while half-open; < 1 is read as 1
}

// Enabled reports whether the breaker can ever open.
func (b Breaker) Enabled() bool { return b.ConsecutiveFailures > 0 || b.FailureRatio > 0 }

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
	p.Budget = p.Budget.normalized()
	p.Breaker = p.Breaker.normalized()
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
	// CheckRedirect, when set, is asked about each redirect hop (already
	// parsed by egress.ParseURL; a copy, which it may keep or change to no
	// effect) before it is followed. It is called on the goroutine of Do,
	// never for a redirect that is not followed (Policy.MaxRedirects
	// reached, a malformed Location). An error stops the run: Do returns an
	// *ExhaustedError whose Err is a *RedirectError wrapping it. The egress
	// guard checks every hop anyway.
	CheckRedirect func(u *url.URL) error
	// HopPolicy, when set, gives the policy a redirect hop to u runs with:
	// the caller resolves the target rule of u's host (and the caller's ask)
	// as it did for URL, so that the hop's target is protected and pooled
	// by its own settings (MaxConns, Budget, Breaker, ShareRetryAfter) and
	// runs with its own timeouts, attempts and limits. Two fields are not
	// taken from it: TotalTimeout (the run's total deadline already bounds
	// every hop) and MaxRedirects (the hops left are counted from Policy's). It
	// gets a copy of u (already checked by egress.ParseURL and
	// CheckRedirect), is called on the goroutine of Do after CheckRedirect,
	// and an error stops the run as CheckRedirect's does (a *RedirectError
	// wrapping it). Nil means Policy for every hop, which is only right for
	// tests and single-target use: a hop to another target then uses that
	// target's transport and protection state as they are, and builds them
	// from Policy only where there are none; it never replaces them.
	HopPolicy func(u *url.URL) (Policy, error)
	// Guard, when set, is the egress guard of this run: it checks an IP
	// literal host before anything is dialled, and dials every connection
	// of the run, retries and redirect hops included, whatever SetGuard
	// does meanwhile. Its connections are pooled apart from those of other
	// guards, so that no run reuses a connection its own guard did not
	// allow. Nil means the Client's guard (New, SetGuard), read at each
	// literal check and each dial.
	Guard *egress.Guard
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
	// "" (no wait: a first attempt, or a send the transport repeated on its
	// own), "backoff", "retry_after", "retry_after_capped" or "target_hold"
	// (the target's shared Retry-After, longer than the attempt's own wait;
	// a first attempt may have it too).
	Backoff       time.Duration
	BackoffReason string
	// URL is the URL of the redirect hop the attempt was sent to, with query
	// values redacted (egress.RedactURL); "" for the request's own URL, that
	// is, for every attempt before the first redirect is followed.
	URL string
}

// Response is the final upstream answer: whatever its status, Do returns it
// with a nil error.
type Response struct {
	Status   int
	Header   http.Header // hop-by-hop headers removed
	Body     []byte      // as the upstream sent it (no decompression)
	Attempts []Attempt
	// Stopped says why a retryable answer was not retried (one of the
	// Stop... constants): its attempts were spent, the target's budget or
	// breaker refused the retry, the wait would outlive the deadline, or the
	// method is unsafe and the request unkeyed; or why a redirect was not
	// followed: Policy.MaxRedirects hops were followed already
	// ("max_redirects"). "" when the answer was final by itself (a 200, a
	// 404, a status not in RetryOn, a redirect with an unusable Location).
	Stopped string
}

// Why the attempt loop stopped with a retryable outcome, in Response.Stopped
// and ExhaustedError.Stopped.
const (
	StopMaxAttempts  = "max_attempts"  // MaxAttempts were spent
	StopBudget       = "retry_budget"  // the target's retry budget refused the retry
	StopBreaker      = "breaker_open"  // the target's circuit breaker is open
	StopDeadline     = "deadline"      // the wait before the retry (or the target's hold) would outlive the deadline or leave too little of it
	StopUnsafe       = "unsafe_method" // an unkeyed POST/PATCH that may have been sent
	StopMaxRedirects = "max_redirects" // the redirect hop limit was reached; the 3xx is the answer
)

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
	ClassBreakerOpen    = "breaker_open"    // the target's circuit breaker refused the attempt; nothing was sent
	ClassTargetHold     = "target_hold"     // the target asked for a pause (shared Retry-After) longer than the time left; nothing was sent
	ClassOther          = "other"
)

// Backoff reasons recorded in Attempt.BackoffReason.
const (
	ReasonBackoff          = "backoff"
	ReasonRetryAfter       = "retry_after"
	ReasonRetryAfterCapped = "retry_after_capped"
	ReasonTargetHold       = "target_hold" // another call's Retry-After holds the target
)
