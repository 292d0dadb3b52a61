package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
)

// Details of a send that the transport (net/http's or the direct one)
// repeated on its own, and of the last send of an exchange whose re-send
// was refused.
const (
	resentDetail    = "reused connection closed before response; transport re-sent"
	notResentDetail = "reused connection closed before response; not re-sent"
	handedOnDetail  = "connection closed before the answer was handed over: another request took it and was cancelled"
)

// exchange is one attempt of the loop: the request handed to the transport
// once. The transport may send it more than once (net/http's and the direct
// one re-send a replayable request whose reused connection died before any
// answer); the trace sees every real send,
// and each re-send must be granted as a retry is (run.resend) before it is
// made.
type exchange struct {
	r      *run
	number int           // Attempt.Number of its first record
	nth    int           // the hop's count of sends with its first one (1 for the hop's first)
	wait   time.Duration // the wait before it, and why
	reason string
	start  time.Time

	// ctx is the attempt's context, under the caller's: it ends with the
	// caller's context, or with the cause errAttemptTimeout or
	// errTotalTimeout (the attempt's end), errReadTimeout (silence), all
	// three set by alarm, or errResendRefused (nextTry), whichever comes
	// first. The run's total deadline is one of the alarm's bounds rather
	// than a context of the run's between the caller's and this one: one
	// context and one timer per attempt, and no context of the run's
	// whose children must be tracked, cost an attempt the fewest
	// allocations.
	ctx    context.Context
	cancel context.CancelCauseFunc // ends ctx with a cause
	alarm  alarm
	// trace and connect are the request's trace hooks and connect timeout,
	// kept in the exchange so that they cost no allocation of their own.
	trace   httptrace.ClientTrace
	connect connectTimeout

	resp   *http.Response // headers arrived; body still unread
	err    error
	permit permit // the breaker's permit for the current send; settled once

	mu       sync.Mutex
	repeated []span    // sends that failed and were repeated by the transport
	tryStart time.Time // the current try: the last connection asked for
	tryConn  net.Conn  // its connection, nil until one is had
	tryWrote bool      // its request headers were written
	// refused says why a re-send was not granted (a Stop... constant): the
	// current try is then the last real send, and nothing more is sent.
	refused string
}

type span struct{ start, end time.Time }

// send runs the request once through the transport and returns when response
// headers arrive or the attempt fails. number is the Attempt.Number of its
// first send, nth the hop's count of sends with it; start is the Client's
// clock as the attempt starts.
func (r *run) send(number, nth int, wait time.Duration, reason string, start time.Time) *exchange {
	x := &exchange{r: r, number: number, nth: nth, wait: wait, reason: reason, start: start, permit: r.permit}
	r.permit = permit{}
	x.tryStart = x.start

	// Each attempt gets min(AttemptTimeout, time left): the caller's context
	// ends this one too, and the alarm the run's total timeout.
	x.ctx, x.cancel = context.WithCancelCause(r.caller)
	x.alarm = alarm{cancel: x.cancel, read: r.p.ReadTimeout}
	if r.p.AttemptTimeout > 0 || !r.total.IsZero() {
		// A fresh reading of the wall clock, which the timers run on: the
		// run's total deadline is absolute, and an older reading (start,
		// taken before the breaker and budget) would arm it late.
		now := time.Now()
		end, total := r.attemptEnd(now)
		x.alarm.until(now, end, total)
	}

	ctx, header := x.ctx, r.header
	if o := r.c.obs; o.tracer != nil || o.hosts != nil || o.propagator != nil {
		ctx, header = x.startTelemetry(ctx)
	}
	// r.header is sent, or a copy because it could not be written: either
	// way it is read-only from now on.
	r.handed = true
	connect := r.p.ConnectTimeout
	if connect <= 0 {
		connect = fallbackConnectTimeout
	}
	x.connect = connectTimeout{Context: ctx, d: connect}
	x.setTrace()
	ctx = httptrace.WithClientTrace(&x.connect, &x.trace)

	// The transport is called directly: it never follows a redirect (a 3xx
	// is an answer, returned as it is), and http.Client would only add a
	// copy of the headers per request for redirects that never happen.
	x.resp, x.err = r.target.transport.RoundTrip(r.request(ctx, header))
	if x.err == nil {
		x.alarm.kick() // headers arrived: the silence before the body starts now
	}
	return x
}

// attemptEnd returns when an attempt that starts at now (the wall clock)
// must be over: after its AttemptTimeout, or at the run's total deadline
// (total true) when that comes first, or at the same time (the total
// timeout then ends the run). Zero when neither bounds it.
func (r *run) attemptEnd(now time.Time) (end time.Time, total bool) {
	if r.p.AttemptTimeout > 0 {
		end = now.Add(r.p.AttemptTimeout)
	}
	if !r.total.IsZero() && (end.IsZero() || !end.Before(r.total)) {
		return r.total, true
	}
	return end, false
}

// release ends the attempt's contexts, its read timer and its count in
// flight, once the attempt is over: its body read or discarded, or its
// failure recorded.
func (x *exchange) release() {
	x.alarm.stop()
	x.cancel(nil)
	x.endTelemetry()
}

// setTrace sets the hooks that observe every try the transport makes within one exchange. A try that
// wrote its headers and is followed by another try was a real send that
// failed silently and is to be repeated: the new try is a re-send, which
// goes ahead only if the run grants it (nextTry).
//
// Both transports call GetConn and GotConn on the goroutine that called
// RoundTrip, the run's own, so nextTry may use the run's state; WroteHeaders
// may come from the transport's writing goroutine.
func (x *exchange) setTrace() {
	x.trace = httptrace.ClientTrace{
		GetConn: func(string) {
			x.nextTry(nil)
		},
		GotConn: func(info httptrace.GotConnInfo) {
			if x.nextTry(info.Conn) {
				x.alarm.pause() // a repeated send: the earlier silence no longer counts
			}
		},
		WroteHeaders: func() {
			x.mu.Lock()
			if x.refused == "" {
				x.tryWrote = true
			}
			x.mu.Unlock()
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			x.alarm.kick() // the read timeout runs from the request written
		},
	}
}

// nextTry starts the exchange's next try as net/http asks for a connection
// (GetConn: conn is nil) or is handed one (GotConn), and reports whether it
// goes ahead. When the current try wrote its request, the next one is a
// re-send, and the run must grant it first (resend), as it would a retry.
//
// Refused, nothing more is sent: the exchange's context is cancelled with
// errResendRefused, which ends the round trip at the transport's next check
// (before it asks for another connection, and, over HTTP/2, before a
// stream's headers are written), and every HTTP/1 connection handed to the
// exchange from then on refuses to write (refuseWrites), since net/http
// hands an HTTP/1 request to its connection's writer without looking at the
// context again. The current try stays the exchange's last send.
func (x *exchange) nextTry(conn net.Conn) bool {
	x.mu.Lock()
	refused, resend, n := x.refused != "", x.tryWrote, x.nth+len(x.repeated)
	x.mu.Unlock()
	if !refused && resend {
		if stop := x.r.resend(x, n); stop != "" {
			x.mu.Lock()
			x.refused = stop
			x.mu.Unlock()
			x.cancel(errResendRefused)
			refused = true
		}
	}
	if refused {
		if conn != nil {
			refuseWrites(conn)
		}
		return false
	}
	x.mu.Lock()
	if x.tryWrote {
		now := x.r.c.now()
		x.repeated = append(x.repeated, span{x.tryStart, now})
		x.tryStart, x.tryConn, x.tryWrote = now, nil, false
	}
	if conn != nil {
		x.tryConn = conn
	}
	x.mu.Unlock()
	return true
}

// last returns the hop's count of sends up to the exchange's last one (its
// last record). Call it once RoundTrip has returned.
func (x *exchange) last() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.nth + len(x.repeated)
}

// refusal says why a re-send of the exchange was refused (a Stop...
// constant), "" when none was.
func (x *exchange) refusal() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.refused
}

// records appends the attempt log entries of the exchange to the run's log:
// one per repeated send, then the last try with its outcome, which ended at
// end (the Client's clock). It returns
// them (a part of the log) and whether anything may have reached the
// upstream. Nothing did when no try was handed a connection: GotConn comes
// before any request byte is written, over HTTP/1 and HTTP/2 alike, so a
// failed dial or handshake, or a wait for a connection cut short, sent
// nothing.
func (x *exchange) records(status int, class, detail string, end time.Time) (recs []Attempt, sent bool) {
	r := x.r
	x.mu.Lock()
	repeated, tryStart, onConn := x.repeated, x.tryStart, x.tryConn != nil
	x.mu.Unlock()
	first := len(r.log)
	n := x.number
	for _, s := range repeated {
		r.appendLog(Attempt{Number: n, Error: ClassReset, Detail: resentDetail, Duration: s.end.Sub(s.start)})
		n++
	}
	r.appendLog(Attempt{Number: n, Status: status, Error: class, Detail: detail, Duration: end.Sub(tryStart)})
	recs = r.log[first:]
	recs[0].Backoff, recs[0].BackoffReason = x.wait, x.reason
	sent = len(repeated) > 0 || onConn || status != 0
	return recs, sent
}

// failure names why the exchange failed. The contexts come first: when one
// of them ended, that ended the attempt, whatever error net/http saw as a
// consequence.
func (x *exchange) failure() *attemptError {
	r := x.r
	cause := context.Cause(x.ctx)
	if ae := r.contextFailure(cause == errTotalTimeout); ae != nil {
		return ae
	}
	if x.refusal() != "" {
		// The last real send failed as net/http re-sends for: its reused
		// connection closed or broke before any answer.
		return &attemptError{class: ClassReset, detail: notResentDetail}
	}
	switch cause {
	case errAttemptTimeout:
		return &attemptError{class: ClassAttemptTimeout, detail: fmt.Sprintf("attempt took longer than %s", r.p.AttemptTimeout)}
	case errReadTimeout:
		return &attemptError{class: ClassReadTimeout, detail: fmt.Sprintf("no data from the upstream for %s", r.p.ReadTimeout)}
	}
	x.mu.Lock()
	conn := x.tryConn
	x.mu.Unlock()
	var connErr error
	if conn != nil {
		connErr = connReadErr(conn)
	}
	ae := &attemptError{class: classify(x.err, conn != nil, connErr), detail: describe(x.err, r.url)}
	switch {
	case ae.class == ClassDenied:
		ae.cause = deniedCause(x.err)
	case ae.class == ClassReset && conn != nil && handedOn(x.err):
		ae.detail = handedOnDetail // x.err is another request's cause: it would mislead
	}
	return ae
}

// deniedCause returns the guard's own error out of a transport error chain
// (which also holds the URL), so that callers can errors.As it.
func deniedCause(err error) error {
	var de *egress.DeniedError
	if errors.As(err, &de) {
		return de
	}
	return egress.ErrDenied
}

// readBody reads the response body up to limit bytes. Over the limit it
// returns ErrBodyTooLarge and closes the body unread, which closes the
// connection rather than draining it.
func (x *exchange) readBody(limit int64) ([]byte, error) {
	body := x.resp.Body
	defer body.Close()
	if body == http.NoBody || bodiless(x.r.method, x.resp.StatusCode) {
		return []byte{}, nil
	}
	n := x.resp.ContentLength
	if n > limit {
		return nil, ErrBodyTooLarge
	}
	size := int64(bodyChunk)
	if n >= 0 {
		// Room for the read that sees EOF: one allocation. Not more than
		// bodyTrust up front, though: an upstream that announces a large
		// body and sends it slowly gets memory as its bytes arrive.
		size = min(n+1, bodyTrust)
	}
	b, err := x.readAll(body, min(size, limit+1), limit)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

// bodyChunk is the first buffer of a body of unknown length; bodyTrust the
// largest first buffer a Content-Length gets.
const (
	bodyChunk = 512
	bodyTrust = 256 << 10
)

// readAll reads body to EOF, or until it has read limit+1 bytes, into a
// buffer of size bytes at first, and kicks the read watchdog whenever data
// arrives.
func (x *exchange) readAll(body io.Reader, size, limit int64) ([]byte, error) {
	b := make([]byte, 0, max(size, 1))
	for int64(len(b)) <= limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow, as io.ReadAll does
		}
		n, err := body.Read(b[len(b):min(int64(cap(b)), limit+1)])
		b = b[:len(b)+n]
		if n > 0 {
			x.alarm.kick()
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// bodiless reports a response that has no body whatever its headers say
// (RFC 9110 section 6.4.1): the answer to HEAD, and 1xx, 204 and 304. Its
// Content-Length describes a body never sent, and the HTTP/2 transport gives
// it an empty body of its own, which is not http.NoBody.
func bodiless(method string, status int) bool {
	return method == http.MethodHead || status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
}

// discard drains a little of a body that is not wanted, so that a short one
// leaves its connection reusable, and closes it.
func (x *exchange) discard() {
	_, _ = io.CopyN(io.Discard, kickReader{x.resp.Body, &x.alarm}, drainLimit)
	_ = x.resp.Body.Close()
}

// kickReader restarts the read watchdog whenever data arrives.
type kickReader struct {
	r     io.Reader
	alarm *alarm
}

func (k kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.alarm.kick()
	}
	return n, err
}

// alarm ends an attempt's context, with the cause of the first of its
// bounds to pass: the attempt's end (until: its AttemptTimeout, or the run's
// total deadline), or read of silence (a watchdog: started and restarted by
// kick, held by pause; zero or less never fires). One timer serves every
// bound: it is set for the earliest, a kick only moves the silence's end
// (and sets the timer when the silence now ends first), and a timer that
// fires before anything is due is set again for what is left. stop ends it
// for good. Times are the wall clock's (time.Now), which the timers run on,
// never the Client's. It must not be copied once set.
type alarm struct {
	cancel context.CancelCauseFunc
	read   time.Duration // the longest silence; zero or less: no watchdog
	end    time.Time     // when the attempt must be over; zero: never
	total  bool          // end is the run's total deadline (errTotalTimeout), not the attempt's own (errAttemptTimeout)

	mu      sync.Mutex
	stopped bool
	t       *time.Timer
	at      time.Time // when t fires; zero while it is not set
	quiet   time.Time // when the silence gets too long; zero while the watchdog is not running
}

// until makes end a bound of the alarm (see attemptEnd for total), now
// being the wall clock. An end already passed ends the attempt at once,
// before anything is sent.
func (a *alarm) until(now, end time.Time, total bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.end, a.total = end, total
	if !now.Before(end) {
		a.stopped = true
		a.cancel(a.endCause())
		return
	}
	a.set(now, end)
}

// endCause is the cause the attempt ends with at a.end.
func (a *alarm) endCause() error {
	if a.total {
		return errTotalTimeout
	}
	return errAttemptTimeout
}

// set makes the timer fire at at. a.mu is held.
func (a *alarm) set(now, at time.Time) {
	if a.t == nil {
		a.t = time.AfterFunc(at.Sub(now), a.fire)
	} else {
		a.t.Reset(at.Sub(now))
	}
	a.at = at
}

// fire ends the attempt with the cause of the bound that passed, the
// attempt's end before the silence when both did; or, woken before either
// (the silence was broken since the timer was set, or the watchdog was
// held), sets the timer for the earliest one left.
func (a *alarm) fire() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	now := time.Now()
	a.at = time.Time{}
	var cause error
	switch {
	case !a.end.IsZero() && !now.Before(a.end):
		cause = a.endCause()
	case !a.quiet.IsZero() && !now.Before(a.quiet):
		cause = errReadTimeout
	default:
		next := a.end
		if !a.quiet.IsZero() && (next.IsZero() || a.quiet.Before(next)) {
			next = a.quiet
		}
		if !next.IsZero() {
			a.set(now, next)
		}
		a.mu.Unlock()
		return
	}
	a.stopped = true
	a.mu.Unlock()
	a.cancel(cause)
}

// kick starts the watchdog, or restarts it: the silence counts from now.
func (a *alarm) kick() {
	if a.read <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	now := time.Now()
	a.quiet = now.Add(a.read)
	if a.at.IsZero() || a.quiet.Before(a.at) {
		a.set(now, a.quiet)
	}
}

// pause holds the watchdog until the next kick. The timer is left as it
// is: should it fire first, nothing is due.
func (a *alarm) pause() {
	a.mu.Lock()
	a.quiet = time.Time{}
	a.mu.Unlock()
}

// stop ends the alarm for good: it never fires again.
func (a *alarm) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.t != nil {
		a.t.Stop()
	}
}
