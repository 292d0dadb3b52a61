package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fetchd/fetchd/internal/egress"
)

// Client sends requests upstream with pooled per-target connections,
// timeouts and retries. It is safe for concurrent use; a zero Client is not
// usable, build one with New.
type Client struct {
	guard atomic.Pointer[guarded] // the guard in force; replaced by SetGuard

	now             func() time.Time
	sleep           func(ctx context.Context, d time.Duration) error
	jitter          func(limit time.Duration) time.Duration
	maxTargets      int
	maxProtected    int
	maxConnsPerHost int
	directHTTP      bool // plain-HTTP targets use the direct transport
	tlsConfig       *tls.Config

	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
	propagatorSet  bool // WithPropagator was given: nil then means none
	redactParams   []string

	pool     *pool        // transports
	prots    *protections // the targets' budgets, breakers and holds
	obs      *observer    // spans, trace context and metrics
	literals *literals    // IP literal hosts the guards allowed
}

// New returns a Client whose every connection is checked and dialled by
// guard. A nil guard means egress.New(): only global unicast addresses.
func New(guard *egress.Guard, opts ...Option) *Client {
	c := &Client{
		sleep:           sleepTimer,
		jitter:          fullJitter,
		maxTargets:      defaultMaxTargets,
		maxProtected:    defaultMaxProtected,
		maxConnsPerHost: defaultMaxConnsPerHost,
	}
	for _, opt := range opts {
		opt(c)
	}
	c.validate()
	c.guard.Store(newGuarded(guard))
	c.pool = newPool(c.maxTargets, c.newTransport)
	c.prots = newProtections(c.maxProtected, c.now)
	c.obs = newObserver(c)
	c.literals = newLiterals()
	return c
}

// SetGuard makes g the egress guard of every later dial and IP literal
// check of the requests without a guard of their own (Request.Guard nil);
// nil means egress.New(). It is how a policy reload narrows or widens the
// allowed ranges. It is safe to call concurrently with Do; of two concurrent
// calls, either may win.
//
// No Do that starts after SetGuard returns uses a connection dialled before:
// every target's transport is retired (its idle connections are closed at
// once, its busy ones as the requests on them finish) and replaced by a new
// one on the target's next use; the targets' retry budgets, breakers and
// holds are kept. A Do already running when SetGuard is called may finish
// its attempts on the connections it was using; without a Request.Guard,
// any connection it dials from then on is checked by g, and with one, by
// that guard still. A redirect hop of such a Do gets a new transport too.
func (c *Client) SetGuard(g *egress.Guard) {
	c.guard.Store(newGuarded(g))
	c.pool.renew()
}

// guarded is an egress guard with its dialer.
type guarded struct {
	*egress.Guard
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// newGuarded returns g (egress.New() when nil) with its dialer.
func newGuarded(g *egress.Guard) *guarded {
	if g == nil {
		g = egress.New()
	}
	return &guarded{Guard: g, dial: g.DialContext(&net.Dialer{
		Timeout:   fallbackConnectTimeout, // the per-request connect timeout is shorter
		KeepAlive: 30 * time.Second,
	})}
}

// validate replaces unusable settings with the defaults.
func (c *Client) validate() {
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = sleepTimer
	}
	if c.jitter == nil {
		c.jitter = fullJitter
	}
	if c.maxTargets < 1 {
		c.maxTargets = defaultMaxTargets
	}
	if c.maxProtected < 1 {
		c.maxProtected = defaultMaxProtected
	}
	if c.maxConnsPerHost < 1 {
		c.maxConnsPerHost = defaultMaxConnsPerHost
	}
	if c.tlsConfig == nil {
		c.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		c.tlsConfig = c.tlsConfig.Clone()
	}
	if len(c.tlsConfig.NextProtos) == 0 {
		c.tlsConfig.NextProtos = []string{"h2", "http/1.1"}
	}
}

// Close closes the idle connections of every pool. Requests in flight are
// not interrupted, and the Client stays usable: later requests dial anew.
func (c *Client) Close() { c.pool.closeIdle() }

// Do sends req and returns the final upstream answer, retrying as the policy
// allows. Any status is an answer: a 404, or a 503 once retries are spent,
// comes back as a *Response with a nil error; its Stopped says why a
// retryable answer was not retried.
//
// Before every attempt the target's circuit breaker must let it through and
// the target's shared Retry-After hold (ShareRetryAfter) is waited out; every
// retry must moreover be granted by the target's retry budget. A send that
// net/http repeats on its own is a retry without a wait: it uses up one of
// MaxAttempts and needs the breaker and the budget, or it is not made. With
// Policy.MaxRedirects, redirects are followed hop by hop, each hop against
// its own target, with its own policy (Request.HopPolicy). Every connection
// is checked and dialled by the run's egress guard (Request.Guard, else the
// Client's). See the package documentation.
//
// Errors:
//   - *ExhaustedError: no answer (connection failures, timeouts, the caller's
//     cancel or deadline, the total timeout, a guard refusal, an open
//     circuit breaker, a hold longer than the time left), or a redirect hop
//     that was refused (Request.CheckRedirect or Request.HopPolicy: its Err
//     is a *RedirectError);
//     see its documentation for how to tell these apart;
//   - *BodyTooLargeError (errors.Is ErrBodyTooLarge): the body is over
//     Policy.MaxResponseBytes.
//
// Both carry the attempt log. Do never modifies req.
func (c *Client) Do(ctx context.Context, req *Request) (*Response, error) {
	if req == nil || req.URL == nil {
		return nil, errors.New("outbound: request has no URL")
	}
	r := &run{c: c, req: req, p: req.Policy.normalized(), caller: ctx, method: req.Method, url: req.URL, body: req.Body}
	if r.method == "" {
		r.method = http.MethodGet
	}
	if r.p.TotalTimeout > 0 {
		// As context.WithTimeout reckons it: a caller's deadline that comes
		// first is the run's bound, and its own expiry tells.
		r.total = time.Now().Add(r.p.TotalTimeout)
		if d, ok := ctx.Deadline(); ok && !d.After(r.total) {
			r.total = time.Time{}
		}
	}
	defer r.end()
	r.header = requestHeader(req.Header)

	resp, err := r.hop()
	for r.next != nil {
		r.follow()
		resp, err = r.hop()
	}
	return resp, err
}

// hop runs the attempt loop against r.url, with its target's transport and
// protection. When its answer is a redirect to follow, it returns nil, nil
// with r.next set.
//
// The hop's settings are the target's own unless it is a redirect hop to
// another target run with the request's own Policy (no Request.HopPolicy):
// such a hop takes the target's transport and protection state as they are,
// and never replaces them (see protection.budgetFor).
func (r *run) hop() (*Response, error) {
	if ae := r.checkLiteral(); ae != nil {
		if ae.class == ClassDenied {
			r.egressDenied(ae.cause)
		}
		if r.hops == 0 {
			return nil, &ExhaustedError{Err: ae}
		}
		r.appendLog(Attempt{Number: len(r.log) + 1, Error: ae.class, Detail: ae.detail})
		return nil, r.exhausted(ae, "")
	}
	// After the literal check: a refused address gets no host label, so
	// refused targets cannot use up the bounded label set.
	if o := r.c.obs; o.tracer != nil || o.hosts != nil {
		r.tel = o.hop(r.method, r.url)
	}
	key := targetKey(r.url)
	own := r.hops == 0 || r.req.HopPolicy != nil || key == targetKey(r.req.URL)
	maxConns := r.p.MaxConns
	if maxConns <= 0 {
		maxConns = r.c.maxConnsPerHost
	}
	r.target = r.c.pool.get(key, r.url.Scheme, maxConns, r.req.Guard, own)
	defer r.target.done()
	r.prot = r.c.prots.get(key)
	defer r.prot.release()
	r.budget = r.prot.budgetFor(r.p.Budget, r.c.now, own)
	r.breaker = r.prot.breakerFor(r.p.Breaker, r.c.now, own)
	defer r.permit.cancel() // a permit taken for an attempt never sent
	return r.loop()
}

// checkLiteral asks the run's guard (Request.Guard, else the Client's) about
// a host that is an IP literal before anything is dialled, so that a refused
// literal fails at once. A literal the guard allowed is remembered for it
// (literals): the guard's answer cannot change. Names are checked when
// dialled, by the guard's dialer.
func (r *run) checkLiteral() *attemptError {
	u := r.url
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err != nil {
		return nil
	}
	g := r.req.Guard
	if g == nil {
		g = r.c.guard.Load().Guard
	}
	if r.c.literals.allowed(g, host) {
		return nil
	}
	// A literal needs no lookup: Resolve does not use the context.
	if _, err := g.Resolve(r.caller, host); err != nil {
		ae := &attemptError{class: ClassOther, detail: redact(err.Error(), u), cause: err}
		if errors.Is(err, egress.ErrDenied) {
			ae.class = ClassDenied
		}
		return ae
	}
	r.c.literals.allow(g, host)
	return nil
}

// run is the state of one Do.
type run struct {
	c      *Client
	req    *Request
	p      Policy
	caller context.Context // the caller's context
	// total is the run's deadline by TotalTimeout (the wall clock); zero
	// without one. The caller's context and total bound the run: every
	// attempt ends at total (its alarm), and every wait (waitContext).
	total      time.Time
	waitCtx    context.Context // the caller's context bounded by total; built for the first wait
	waitCancel context.CancelFunc

	// What the current hop sends: req's own at first; a redirect may change
	// each of them (follow).
	method string
	url    *url.URL
	// header is owned by the run; replaced, never modified, by follow, once
	// handed to net/http. Until then (handed false), the first exchange
	// that writes its trace context into the headers writes it into header
	// itself (traceHeader).
	header http.Header
	handed bool // header was handed to net/http (or copied for it): it is read-only
	// traced says header carries trace context fields written by an
	// exchange, not the caller's: the run's own headers are header without
	// the propagator's fields.
	traced bool
	body   []byte

	// The current hop's target and its protection.
	target  *target
	prot    *protection
	budget  *budget  // nil: retries unbounded
	breaker *breaker // nil: never refuses
	permit  permit   // the breaker's permit for the next attempt, until it is sent

	hops       int      // redirects followed so far
	hopURL     string   // r.url redacted, for Attempt.URL; "" before the first redirect
	next       *url.URL // the redirect that loop asks to follow; nil when none
	nextStatus int      // its status
	nextPolicy *Policy  // its policy, from Request.HopPolicy; nil without
	crossed    bool     // a hop left the request's own target: credentials dropped

	log  []Attempt
	sent bool

	tel *hopTelemetry // the current hop's; nil while spans and metrics are off
}

// loop runs attempts until one gives a final answer, a failure is final, the
// attempts are spent, the next wait would outlive the deadline, or the
// target's breaker or budget refuses the next attempt.
func (r *run) loop() (*Response, error) {
	wait, reason, start, ex := r.first()
	if ex != nil {
		return nil, ex
	}
	for next := 1; ; {
		x := r.send(len(r.log)+1, next, wait, reason, start)
		n := x.last() // the hop's sends so far: net/http's re-sends count
		next = n + 1
		var stop string // why a retryable answer is not retried
		if x.err == nil {
			status := x.resp.StatusCode
			r.share(x)
			switch {
			case retryable(r.method, r.req.Keyed, status, "", r.p.RetryOn, false):
				x.permit.settle(verdict(status, "", r.p.ShortenedTimeouts), r.c.now()) // before the breaker is asked again
				var w time.Duration
				var why string
				if w, why, stop = r.retry(n, status, x.resp.Header, r.floor(x)); stop == "" {
					x.discard()
					r.record(x, status, "", "")
					x.release()
					r.retried(why)
					if err := r.c.sleep(r.waitContext(), w); err != nil {
						return nil, r.interrupted(err)
					}
					wait, reason, start = w, why, r.c.now()
					continue
				}
			case retryable(r.method, true, status, "", r.p.RetryOn, false):
				stop = StopUnsafe
			}
			var detail string // why a redirect is not followed
			if stop == "" && r.p.MaxRedirects > 0 && isRedirect(status) {
				var (
					next *url.URL
					err  error
				)
				next, stop, detail, err = r.redirect(status, x.resp.Header)
				if next != nil || err != nil {
					x.discard()
					r.record(x, status, "", "")
					x.release()
					if err != nil {
						return nil, &ExhaustedError{Attempts: r.log, Err: err, Sent: r.sent}
					}
					r.next, r.nextStatus = next, status
					return nil, nil
				}
			}
			body, err := x.readBody(r.p.MaxResponseBytes)
			if err == nil {
				r.record(x, status, "", detail)
				x.release()
				r.stopped(stop)
				// The response is the caller's from here: its header is
				// not copied (ownResponseHeader).
				return &Response{Status: status, Header: ownResponseHeader(x.resp.Header), Body: body, Attempts: r.log, Stopped: stop}, nil
			}
			if errors.Is(err, ErrBodyTooLarge) {
				r.record(x, status, ClassBodyTooLarge, fmt.Sprintf("response body over %d bytes", r.p.MaxResponseBytes))
				x.release()
				return nil, &BodyTooLargeError{Limit: r.p.MaxResponseBytes, Status: status, Attempts: r.log}
			}
			x.err = err // the body broke off: a failed attempt that had a status
		}

		var (
			status int
			header http.Header
		)
		if x.resp != nil {
			status, header = x.resp.StatusCode, x.resp.Header
		}
		ae := x.failure()
		sent := r.record(x, status, ae.class, ae.detail)
		x.release()
		if stop != "" {
			// The answer was not to be retried, then its body broke off: the
			// decision stands.
			r.stopped(stop)
			return nil, r.exhausted(ae, stop)
		}
		switch refused := x.refusal(); {
		case refused != "" && ae.class == ClassReset:
			// The transport's re-send was refused: a retry would be too.
			stop = refused
		case retryable(r.method, r.req.Keyed, status, ae.class, r.p.RetryOn, !sent):
			var w time.Duration
			var why string
			if w, why, stop = r.retry(n, status, header, 0); stop == "" {
				r.retried(why)
				if err := r.c.sleep(r.waitContext(), w); err != nil {
					return nil, r.interrupted(err)
				}
				wait, reason, start = w, why, r.c.now()
				continue
			}
		case retryable(r.method, true, status, ae.class, r.p.RetryOn, !sent):
			stop = StopUnsafe
		}
		r.stopped(stop)
		return nil, r.exhausted(ae, stop)
	}
}

// first admits the first attempt: the target's breaker must let it
// through, and a shared hold on the target is waited out if it ends in time,
// with at least min(AttemptTimeout, ConnectTimeout) left after it. It
// returns the wait before the first attempt and its reason, and the
// Client's clock when the attempt may start; or why the attempt was
// refused. The request is counted in the budget once admitted.
func (r *run) first() (time.Duration, string, time.Time, *ExhaustedError) {
	now := r.c.now()
	if why, ok := r.admit(now); !ok {
		return 0, "", now, r.refused(ClassBreakerOpen, why, StopBreaker)
	}
	var (
		wait   time.Duration
		reason string
	)
	if h := r.held(now); h > 0 {
		floor := max(r.p.ConnectTimeout, 0)
		if r.p.AttemptTimeout > 0 {
			floor = min(floor, r.p.AttemptTimeout)
		}
		if !r.fits(h, floor) {
			r.permit.cancel()
			return 0, "", now, r.refused(ClassTargetHold, r.holdDetail(h, floor), StopDeadline)
		}
		if err := r.c.sleep(r.waitContext(), h); err != nil {
			return 0, "", now, r.interrupted(err)
		}
		wait, reason = h, ReasonTargetHold
		now = r.c.now()
	}
	if r.budget != nil {
		r.budget.request(now)
	}
	return wait, reason, now, nil
}

// retry decides whether attempt n, whose outcome is retryable, is retried.
// It returns the wait before the retry and its reason, or, when the retry is
// not made, why (a Stop... constant). floor is the time that must be left
// after the wait (see floor). Everything is decided before the wait: the
// target's hold as it stands now lengthens the wait, the breaker's permit is
// taken now, and the budget counts the retry now.
func (r *run) retry(n, status int, h http.Header, floor time.Duration) (time.Duration, string, string) {
	if n >= r.p.MaxAttempts {
		return 0, "", StopMaxAttempts
	}
	now := r.c.now()
	w, why := delay(r.p, n, status, h, now, r.c.jitter)
	if held := r.held(now); held > w {
		w, why = held, ReasonTargetHold
	}
	if !r.fits(w, floor) {
		return 0, "", StopDeadline
	}
	if _, ok := r.admit(now); !ok {
		return 0, "", StopBreaker
	}
	if r.budget != nil && !r.budget.retry(now) {
		r.permit.cancel()
		return 0, "", StopBudget
	}
	return w, why, ""
}

// resend decides whether net/http may send x's request again at once, after
// the hop's send n (x's current try) failed on a reused connection and the
// transport is about to repeat it. A re-send is a retry without a wait: the
// failed send is settled with the breaker as a reset, then, as for any
// retry (retry), MaxAttempts must not be spent, the breaker must let it
// through (its permit becomes x's) and the budget must grant it. It returns
// "" when granted, else why not (a Stop... constant). It runs on the run's
// goroutine, within RoundTrip (nextTry).
func (r *run) resend(x *exchange, n int) string {
	now := r.c.now()
	x.permit.settle(verdict(0, ClassReset, r.p.ShortenedTimeouts), now)
	if n >= r.p.MaxAttempts {
		return StopMaxAttempts
	}
	if _, ok := r.admit(now); !ok {
		return StopBreaker
	}
	if r.budget != nil && !r.budget.retry(now) {
		r.permit.cancel()
		return StopBudget
	}
	x.permit, r.permit = r.permit, permit{}
	r.retried(reasonTransportResend)
	return ""
}

// admit asks the target's breaker for a permit for the next attempt and
// keeps it in r.permit. Refused, it says why.
func (r *run) admit(now time.Time) (string, bool) {
	if r.breaker == nil {
		return "", true
	}
	p, why := r.breaker.acquire(now)
	if why != "" {
		return why, false
	}
	r.permit = p
	return "", true
}

// held returns how long the target's shared hold still lasts, 0 when the
// policy does not share Retry-After.
func (r *run) held(now time.Time) time.Duration {
	if !r.p.ShareRetryAfter {
		return 0
	}
	return r.prot.hold.left(now)
}

// share extends the target's hold by the Retry-After of x's answer, when the
// policy shares it. Only a 429 or a 503 can hold the target: the clock is
// not read for anything else.
func (r *run) share(x *exchange) {
	if !r.p.ShareRetryAfter || !holding(x.resp.StatusCode) {
		return
	}
	now := r.c.now()
	r.prot.hold.extend(now, heldFor(x.resp.StatusCode, x.resp.Header, now, r.p.MaxRetryAfter))
}

// holdDetail explains a hold of h that does not end in time.
func (r *run) holdDetail(h, floor time.Duration) string {
	deadline, _ := r.deadline()
	left := max(deadline.Sub(r.c.now()), 0)
	msg := fmt.Sprintf("%s asked callers to wait %s more (Retry-After); ", r.target.key, human(h))
	if h >= left {
		return msg + fmt.Sprintf("only %s of the deadline is left", human(left))
	}
	return msg + fmt.Sprintf("%s of the deadline is left, and an attempt after the wait needs %s", human(left), human(floor))
}

// refused records an attempt that the target's protection refused before
// anything was sent, and returns the error that ends the run.
func (r *run) refused(class, detail, stop string) *ExhaustedError {
	r.attemptRefused(class)
	r.appendLog(Attempt{Number: len(r.log) + 1, Error: class, Detail: detail})
	return r.exhausted(&attemptError{class: class, detail: detail}, stop)
}

// record appends the exchange's entries to the attempt log, tells the
// breaker how the attempt went (unless it was told already), and reports
// whether the exchange may have reached the upstream.
func (r *run) record(x *exchange, status int, class, detail string) bool {
	now := r.c.now() // the attempt's end, for all three
	x.permit.settle(verdict(status, class, r.p.ShortenedTimeouts), now)
	recs, sent := x.records(status, class, detail, now)
	x.observe(recs, now)
	r.sent = r.sent || sent
	return sent
}

// appendLog appends entries of the current hop to the attempt log, with the
// hop's URL once a redirect was followed.
func (r *run) appendLog(as ...Attempt) {
	if r.hopURL != "" {
		for i := range as {
			as[i].URL = r.hopURL
		}
	}
	r.log = append(r.log, as...)
}

// fits reports whether a wait of w ends before the deadline with at least
// floor still left after it.
func (r *run) fits(w, floor time.Duration) bool {
	deadline, ok := r.deadline()
	if !ok {
		return true
	}
	left := deadline.Sub(r.c.now()) // saturates
	return w < left && left-w >= floor
}

// floor is the least time a retry after x's answer must have left once its
// wait is over: as long as x took (the upstream is likely as slow again), or
// the connect timeout if that is longer (the retry may need a new
// connection), but never more than the attempt timeout (no attempt gets
// more). With less left, the retry would most likely be cut off by the
// deadline, and the answer in hand is worth more than DEADLINE_EXCEEDED.
func (r *run) floor(x *exchange) time.Duration {
	f := max(r.p.ConnectTimeout, r.c.now().Sub(x.start), 0)
	if r.p.AttemptTimeout > 0 {
		f = min(f, r.p.AttemptTimeout)
	}
	return f
}

// exhausted reports a run that ends without an answer; stop says why its
// last failure was not retried ("" when it was not retryable).
func (r *run) exhausted(ae *attemptError, stop string) *ExhaustedError {
	return &ExhaustedError{Attempts: r.log, Err: ae, Sent: r.sent, Stopped: stop}
}

// interrupted reports a wait that ended early.
func (r *run) interrupted(err error) *ExhaustedError {
	ae := r.contextFailure(r.waitCtx != nil && r.waitCtx.Err() != nil)
	if ae == nil {
		ae = &attemptError{class: ClassOther, detail: "backoff wait failed: " + err.Error(), cause: err}
	}
	return r.exhausted(ae, "")
}

// contextFailure reports the caller's cancel or deadline, or the total
// timeout, if one of them has ended the run. expired says the total
// timeout was seen to run out: by the attempt's alarm (its cause
// errTotalTimeout) or by the wait's context.
func (r *run) contextFailure(expired bool) *attemptError {
	if err := r.caller.Err(); err != nil {
		if errors.Is(err, context.Canceled) {
			return &attemptError{class: ClassCanceled, detail: "the caller cancelled the request", cause: err}
		}
		return &attemptError{class: ClassDeadline, detail: "the caller's deadline passed", cause: err}
	}
	if expired {
		return &attemptError{class: ClassDeadline, detail: fmt.Sprintf("total timeout of %s ran out", r.p.TotalTimeout), cause: context.DeadlineExceeded}
	}
	return nil
}

// deadline returns the run's deadline: the caller's, or total when that
// comes first, as context.WithDeadline would have it.
func (r *run) deadline() (time.Time, bool) {
	d, ok := r.caller.Deadline()
	if r.total.IsZero() || ok && d.Before(r.total) {
		return d, ok
	}
	return r.total, true
}

// waitContext returns the context a wait is spent under: the caller's,
// bounded by the total timeout. It is built for the run's first wait, and
// ended when the run is (end).
func (r *run) waitContext() context.Context {
	if r.total.IsZero() {
		return r.caller
	}
	if r.waitCtx == nil {
		r.waitCtx, r.waitCancel = context.WithDeadline(r.caller, r.total)
	}
	return r.waitCtx
}

// end releases what the run holds once Do returns: the wait's context.
func (r *run) end() {
	if r.waitCancel != nil {
		r.waitCancel()
	}
}

// request builds the http.Request of one attempt, with header (the run's
// own, or one carrying the attempt's trace context: traceHeader). The body
// is rebuilt from the bytes every time (and GetBody lets net/http rebuild
// it too), so every send carries it intact. The URL is shared, not copied: a
// RoundTripper must not modify the request (http.RoundTripper), and neither
// of the runs' transports does (net/http's Transport; the direct transport,
// which writes it with Request.Write).
func (r *run) request(ctx context.Context, header http.Header) *http.Request {
	hr := &http.Request{
		Method:     r.method,
		URL:        r.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     header,
	}
	if body := r.body; len(body) > 0 {
		hr.ContentLength = int64(len(body))
		hr.Body = io.NopCloser(bytes.NewReader(body))
		hr.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return hr.WithContext(ctx)
}
