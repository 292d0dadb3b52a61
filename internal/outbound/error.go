package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/fetchd/fetchd/internal/egress"
)

// ErrBodyTooLarge means the response body is over Policy.MaxResponseBytes.
// The error Do returns for it is a *BodyTooLargeError.
var ErrBodyTooLarge = errors.New("outbound: response body too large")

var (
	// Causes given to the per-attempt contexts, so that the attempt loop can
	// tell which of its own timers or refusals ended an attempt.
	errAttemptTimeout = errors.New("outbound: attempt timeout")
	errReadTimeout    = errors.New("outbound: read timeout")
	// errTotalTimeout ends an attempt at the run's total deadline (the
	// Policy's TotalTimeout); it is reported as the context's
	// DeadlineExceeded, like the caller's deadline.
	errTotalTimeout = errors.New("outbound: total timeout")
	// errResendRefused ends an exchange whose transport re-send the run did
	// not grant; a connection handed to it returns it on a write.
	errResendRefused = errors.New("outbound: transport re-send refused")
)

// ExhaustedError reports that no usable upstream answer arrived: every
// attempt that ran failed (refused, reset, timed out), the caller cancelled,
// the deadline ran out, or the egress guard refused the address; or that a
// redirect was to be followed (Policy.MaxRedirects) and its hop failed so,
// or was refused by the guard, by Request.CheckRedirect or by
// Request.HopPolicy.
//
// Err is the last attempt's failure, the context's error, or a
// *RedirectError. errors.Is and errors.As on the ExhaustedError tell the
// cases apart, and should be asked in this order:
//
//   - *RedirectError (errors.As): Request.CheckRedirect or Request.HopPolicy
//     refused a redirect hop; errors.As and errors.Is find the caller's own
//     error through it.
//     Sent is true, and the last Attempt is the redirect's.
//   - egress.ErrDenied: the guard refused the address (PERMISSION_DENIED);
//     errors.As finds the *egress.DeniedError. Attempts may be empty. When
//     the refused address is a redirect hop's, the refusal is logged as an
//     Attempt of class "denied" with the hop's URL, and Sent is true: the
//     hops before it reached the upstream.
//   - context.Canceled: the caller cancelled.
//   - context.DeadlineExceeded: TotalTimeout or the caller's deadline ran
//     out (DEADLINE_EXCEEDED).
//   - otherwise: attempts ran out without an answer, or the target's
//     protection refused to send (an open breaker, a shared Retry-After
//     hold longer than the time left): UNAVAILABLE.
//
// Err never wraps a context error because of a per-attempt timeout, so an
// attempt timeout or read timeout alone never reads as DEADLINE_EXCEEDED.
type ExhaustedError struct {
	Attempts []Attempt
	Err      error
	// Sent is true if any attempt may have reached the upstream: a
	// connection was handed to it, a status arrived, or the transport re-sent
	// it. It is false only when no attempt ever had a connection: a guard
	// refusal, a DNS failure, a refused or timed-out connect, a failed TLS
	// handshake, a wait for a connection (MaxConnsPerHost) or a dial that
	// the attempt timeout, the total timeout or the caller ended, or a first
	// attempt refused by the target's open breaker or shared hold. Once a
	// redirect was followed it is true: the redirect came from the upstream.
	Sent bool
	// Stopped says why the last failure was not retried (a Stop... constant),
	// "" when it was not retryable at all. A first attempt refused by the
	// target's breaker gives "breaker_open" (the attempt's class is
	// "breaker_open"); one refused because the target's shared hold outlives
	// the deadline gives "deadline" (class "target_hold"). Neither wraps a
	// context error: the deadline has not passed.
	Stopped string
}

func (e *ExhaustedError) Error() string {
	if re, ok := e.Err.(*RedirectError); ok {
		return "outbound: " + re.Error() // an answer came: the redirect
	}
	switch n := len(e.Attempts); n {
	case 0:
		return fmt.Sprintf("outbound: %v", e.Err)
	case 1:
		return fmt.Sprintf("outbound: no response after 1 attempt: %v", e.Err)
	default:
		return fmt.Sprintf("outbound: no response after %d attempts: %v", n, e.Err)
	}
}

// Unwrap returns Err.
func (e *ExhaustedError) Unwrap() error { return e.Err }

// RedirectError reports a redirect hop that [Request].CheckRedirect refused,
// or for which [Request].HopPolicy gave no policy. Do returns it as the Err
// of an *ExhaustedError whose Attempts end with the redirect's attempt and
// whose Sent is true. It unwraps to the caller's error, so errors.Is and
// errors.As on what Do returns find the caller's own error.
type RedirectError struct {
	URL    string // the refused hop, with query values redacted (egress.RedactURL)
	Status int    // the redirect's status: 301, 302, 303, 307 or 308
	Err    error  // CheckRedirect's or HopPolicy's error
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("redirect (%d) to %s refused: %v", e.Status, e.URL, e.Err)
}

// Unwrap returns Err.
func (e *RedirectError) Unwrap() error { return e.Err }

// BodyTooLargeError reports a response whose body is over the policy's limit.
// errors.Is(err, ErrBodyTooLarge) holds for it. It is never retried: the
// upstream answered, and the connection was closed rather than drained.
type BodyTooLargeError struct {
	Limit    int64 // Policy.MaxResponseBytes
	Status   int   // the status of the oversized response
	Attempts []Attempt
}

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("outbound: response body (status %d) is over the %d-byte limit", e.Status, e.Limit)
}

// Unwrap returns ErrBodyTooLarge.
func (e *BodyTooLargeError) Unwrap() error { return ErrBodyTooLarge }

// attemptError is one attempt's failure as Do reports it: a class and a
// person-readable detail. It unwraps only to what callers branch on (the
// egress error, the context error), never to a transport error that might
// carry a misleading context.DeadlineExceeded.
type attemptError struct {
	class  string
	detail string
	cause  error // egress error for "denied", context error for "canceled"/"deadline", else nil
}

func (e *attemptError) Error() string {
	if e.detail == "" {
		return e.class
	}
	return e.class + ": " + e.detail
}

func (e *attemptError) Unwrap() error { return e.cause }

// dialError marks an error returned by fetchd's dialers, so that a failure
// while connecting is told apart from one on an established connection.
type dialError struct {
	err       error
	handshake bool // the TCP connection was up; the TLS handshake failed
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// classify names an error returned by the transport, from its types only.
// onConn says the failing try had a connection; connErr is the first read
// error seen on that connection, if any: net/http reports a connection the
// server closed with untyped errors, and the connection's own read error says
// what really happened. An untyped error on a connection that is still
// readable means the answer could not be parsed: a protocol error.
//
// The contexts are not consulted here; the caller checks them first.
func classify(err error, onConn bool, connErr error) string {
	var de *dialError
	dial := errors.As(err, &de)
	switch {
	case errors.Is(err, egress.ErrDenied):
		return ClassDenied
	case egress.IsDNSError(err):
		return ClassDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassConnectRefused
	case dial && isTimeout(err):
		return ClassConnectTimeout
	case isReset(err):
		return ClassReset
	case dial && de.handshake, isTLS(err):
		return ClassTLS
	case dial:
		return ClassOther
	case connErr != nil && isReset(connErr), errors.Is(err, net.ErrClosed):
		// A closed connection: the server's close, or one fetchd closed
		// after refusing a re-send on it (refuseWrites).
		return ClassReset
	case onConn && handedOn(err):
		// Another request's cancellation closed the connection before the
		// answer on it was handed over.
		return ClassReset
	case isTimeout(err):
		return ClassOther // a timeout none of fetchd's timers caused
	case onConn:
		return ClassProtocol
	default:
		return ClassOther
	}
}

// handedOn reports an error on a connection that is a context's
// cancellation cause: the caller's (context.Canceled, DeadlineExceeded) or one
// fetchd ends an attempt with. The attempt's own contexts were live (the
// caller of classify checks them first), so it is another request's: net/http
// puts a connection back in its pool, or hands it to a request waiting for
// one, as soon as it has read an answer without a body, and only then hands
// the answer to the request it belongs to. A request that takes the
// connection in between and is cancelled (its caller, a timeout, a refused
// re-send: refuseWrites) closes it, and the request whose answer was read
// gets the other's cause instead of the answer, which net/http does not
// re-send. Its connection closed before the answer arrived: a reset.
func handedOn(err error) bool {
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded, errAttemptTimeout, errReadTimeout, errTotalTimeout, errResendRefused} {
		if errors.Is(err, cause) {
			return true
		}
	}
	return false
}

// isTimeout reports a timeout anywhere in err's chain. errors.As would stop
// at the first net.Error, and *url.Error is one whose Timeout only looks one
// level down.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || inChain(err, func(e error) bool {
		t, ok := e.(interface{ Timeout() bool })
		return ok && t.Timeout()
	})
}

// inChain reports whether f holds for err or any error it wraps.
func inChain(err error, f func(error) bool) bool {
	for err != nil {
		if f(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if inChain(e, f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF)
}

func isTLS(err error) bool {
	var (
		rh  tls.RecordHeaderError
		cv  *tls.CertificateVerificationError
		ae  tls.AlertError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		ech *tls.ECHRejectionError
	)
	return errors.As(err, &rh) || errors.As(err, &cv) || errors.As(err, &ae) ||
		errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &ech)
}

// describe renders err for Attempt.Detail: without a *url.Error wrapper
// (which repeats the URL), with the URL's query and credentials removed
// should any layer below have echoed them, and clipped.
func describe(err error, u *url.URL) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return redact(err.Error(), u)
}

// redact removes the query and credentials of u from s wherever s echoes
// them as a URL does: "?query" becomes "?REDACTED" and "user:password@"
// becomes "REDACTED@". Only these delimited forms are replaced, so a short
// query such as "e" does not eat every "e" of the text. Then s is clipped.
func redact(s string, u *url.URL) string {
	if u != nil {
		if u.RawQuery != "" {
			s = strings.ReplaceAll(s, "?"+u.RawQuery, "?REDACTED")
		}
		if u.User != nil {
			if ui := u.User.String(); ui != "" {
				s = strings.ReplaceAll(s, ui+"@", "REDACTED@")
			}
		}
	}
	const limit = 512
	if len(s) > limit {
		cut := limit
		for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
