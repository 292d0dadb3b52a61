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

// Details of a send that net/http repeated on its own, and of the last send
// of an exchange whose re-send was refused.
const (
	resentDetail    = "reused connection closed before response; transport re-sent"
	notResentDetail = "reused connection closed before response; not re-sent"
)

// exchange is one attempt of the loop: the request handed to net/http once.
// net/http may send it more than once (it silently re-sends a replayable
// request whose reused connection died); the trace sees every real send,
// and each re-send must be granted as a retry is (run.resend) before it is
// made.
type exchange struct {
	r      *run
	number int           // Attempt.Number of its first record
	nth    int           // the hop's count of sends with its first one (1 for the hop's first)
	wait   time.Duration // the wait before it, and why
	reason string
	start  time.Time

	// ctx is the attempt's context, under the run's: it ends with the cause
	// errAttemptTimeout (attemptTimer), errReadTimeout (watch) or
	// errResendRefused (nextTry), whichever comes first. One context with
	// timers of its own, rather than one context per bound, costs an
	// attempt the fewest allocations.
	ctx          context.Context
	cancel       context.CancelCauseFunc // ends ctx with a cause
	attemptTimer *time.Timer             // nil without an AttemptTimeout
	watch        watchdog
	// trace and connect are the request's trace hooks and connect timeout,
	// kept in the exchange so that they cost no allocation of their own.
	trace   httptrace.ClientTrace
	connect connectTimeout

	resp   *http.Response // headers arrived; body still unread
	err    error
	permit permit // the breaker's permit for the current send; settled once

	mu       sync.Mutex
	repeated []span    // sends that failed and were repeated by net/http
	tryStart time.Time // the current try: the last connection asked for
	tryConn  net.Conn  // its connection, nil until one is had
	tryWrote bool      // its request headers were written
	// refused says why a re-send was not granted (a Stop... constant): the
	// current try is then the last real send, and nothing more is sent.
	refused string
}

type span struct{ start, end time.Time }

// send runs the request once through net/http and returns when response
// headers arrive or the attempt fails. number is the Attempt.Number of its
// first send, nth the hop's count of sends with it.
func (r *run) send(number, nth int, wait time.Duration, reason string) *exchange {
	x := &exchange{r: r, number: number, nth: nth, wait: wait, reason: reason, start: r.c.now(), permit: r.permit}
	r.permit = permit{}
	x.tryStart = x.start

	// Each attempt gets min(AttemptTimeout, time left): the run's context
	// ends this one too.
	x.ctx, x.cancel = context.WithCancelCause(r.ctx)
	if r.p.AttemptTimeout > 0 {
		x.attemptTimer = time.AfterFunc(r.p.AttemptTimeout, func() { x.cancel(errAttemptTimeout) })
	}
	x.watch = watchdog{d: r.p.ReadTimeout, fire: func() { x.cancel(errReadTimeout) }}

	ctx, header := x.ctx, r.header
	if o := r.c.obs; o.tracer != nil || o.hosts != nil || o.propagator != nil {
		ctx, header = x.startTelemetry(ctx)
	}
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
		x.watch.kick() // headers arrived: the silence before the body starts now
	}
	return x
}

// release ends the attempt's contexts, its read timer and its count in
// flight, once the attempt is over: its body read or discarded, or its
// failure recorded.
func (x *exchange) release() {
	x.watch.stop()
	if x.attemptTimer != nil {
		x.attemptTimer.Stop()
	}
	x.cancel(nil)
	x.endTelemetry()
}

// setTrace sets the hooks that observe every try net/http makes within one exchange. A try that
// wrote its headers and is followed by another try was a real send that
// failed silently and is to be repeated: the new try is a re-send, which
// goes ahead only if the run grants it (nextTry).
//
// net/http calls GetConn and GotConn on the goroutine that called
// RoundTrip, the run's own, so nextTry may use the run's state; WroteHeaders
// may come from the transport's writing goroutine.
func (x *exchange) setTrace() {
	x.trace = httptrace.ClientTrace{
		GetConn: func(string) {
			x.nextTry(nil)
		},
		GotConn: func(info httptrace.GotConnInfo) {
			if x.nextTry(info.Conn) {
				x.watch.pause() // a repeated send: the earlier silence no longer counts
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
			x.watch.kick() // the read timeout runs from the request written
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
// one per repeated send, then the last try with its outcome. It returns
// them (a part of the log) and whether anything may have reached the
// upstream. Nothing did when no try was handed a connection: GotConn comes
// before any request byte is written, over HTTP/1 and HTTP/2 alike, so a
// failed dial or handshake, or a wait for a connection cut short, sent
// nothing.
func (x *exchange) records(status int, class, detail string) (recs []Attempt, sent bool) {
	r := x.r
	end := r.c.now()
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
	if ae := r.contextFailure(); ae != nil {
		return ae
	}
	if x.refusal() != "" {
		// The last real send failed as net/http re-sends for: its reused
		// connection closed or broke before any answer.
		return &attemptError{class: ClassReset, detail: notResentDetail}
	}
	switch context.Cause(x.ctx) {
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
	if ae.class == ClassDenied {
		ae.cause = deniedCause(x.err)
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
			x.watch.kick()
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
	_, _ = io.CopyN(io.Discard, kickReader{x.resp.Body, &x.watch}, drainLimit)
	_ = x.resp.Body.Close()
}

// kickReader resets the read watchdog whenever data arrives.
type kickReader struct {
	r     io.Reader
	watch *watchdog
}

func (k kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.watch.kick()
	}
	return n, err
}

// watchdog calls fire after d of silence: it is started (and restarted) by
// kick, held by pause, and ended for good by stop. A zero d never fires. It
// must not be copied once kicked.
type watchdog struct {
	d    time.Duration
	fire func()

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (w *watchdog) kick() {
	if w.d <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
	case w.t == nil:
		w.t = time.AfterFunc(w.d, w.fire)
	default:
		w.t.Reset(w.d)
	}
}

func (w *watchdog) pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != nil {
		w.t.Stop()
	}
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.t != nil {
		w.t.Stop()
	}
}
