// Package outbound is fetchd's HTTP engine: pooled per-target transports, the
// attempt loop, backoff, Retry-After, timeouts, retry decisions and failure
// classes. It is given a validated [Request] and a resolved [Policy]; it
// neither validates callers nor maps errors to gRPC codes.
//
// Invariants:
//
//   - Every connection is dialled by the egress guard's dialer, which
//     resolves the name, checks every address and dials the checked address.
//     An IP literal host is checked before anything is dialled. A guard
//     refusal is never retried. No proxy is taken from the environment.
//     The guard of a run is Request.Guard, for every literal check and every
//     dial of the run (retries and redirect hops included), whatever
//     [Client.SetGuard] does meanwhile; without one, the Client's guard in
//     force at each check and dial. Transports are kept per guard, so a
//     connection is only ever reused by runs of the guard that dialled it.
//     [Client.SetGuard] replaces the Client's guard: no Do that starts after
//     it returns uses a connection dialled before (every target's transport
//     is retired and its idle connections closed).
//   - Redirects are not followed (a 3xx is an answer) unless
//     Policy.MaxRedirects says so, and then each hop is checked again:
//     egress.ParseURL, then Request.CheckRedirect, then the egress guard
//     when it is dialled, each hop against its own target (pool, budget,
//     breaker, hold, MaxAttempts) with the policy Request.HopPolicy gives
//     for it (TotalTimeout and MaxRedirects stay the request's). A hop run
//     with another target's settings (no HopPolicy) never replaces its
//     target's transport, budget or breaker. Authorization, Cookie and
//     Proxy-Authorization are dropped from the first hop that leaves the
//     request's own (scheme, host, port) on. Following a redirect is not a
//     retry: a 307 or 308 re-sends the method and body, unsafe or not, to
//     the new URL, because the upstream answered by asking for exactly
//     that; POST on 301 or 302, and anything but GET or HEAD on 303, becomes
//     a GET without body. Every attempt after a redirect names its hop
//     (Attempt.URL, query values redacted); the log is numbered across hops.
//     A redirect that is not followed (hop limit, unusable Location) is the
//     answer, and the hop limit says so in Stopped ("max_redirects").
//   - Do never retries a request with an unsafe method (anything but GET,
//     HEAD, OPTIONS, TRACE, PUT, DELETE) that may have reached the upstream,
//     unless the caller gave an idempotency key ([Request].Keyed). Without a
//     key it retries such a request only after an attempt that provably sent
//     nothing: no connection was ever handed to it (the trace's GotConn comes
//     before any request byte is written, over HTTP/1 and HTTP/2) and the
//     transport did not re-send it. That covers a refused, failed or
//     timed-out connect or TLS handshake, a DNS failure, and a wait for a
//     connection (MaxConnsPerHost) or a dial that the attempt timeout cut
//     short. A status answer to it is never retried: the upstream processed
//     it. The one re-send fetchd does not decide on itself: the transport
//     (net/http's, or the direct one alike) re-sends on its own a request
//     that carries an Idempotency-Key or X-Idempotency-Key header (below; it
//     is bounded as a retry is). An attempt in which it did
//     is not retried without Keyed, whatever failure ended it (a refused
//     re-dial included), and whoever adds that header to an unsafe request
//     should set Keyed, since the header already promises the upstream
//     deduplicates.
//   - The attempt log records every real send, and MaxAttempts bounds them
//     all. net/http silently re-sends a replayable request (GET, HEAD,
//     OPTIONS, TRACE, or any method carrying an Idempotency-Key or
//     X-Idempotency-Key header) when a reused connection dies under it
//     before any answer, at once and for as long as pooled connections keep
//     failing, and the direct transport (WithDirectHTTP) makes the same
//     re-sends, with the same trace hooks, and checks the context before
//     each; an httptrace.ClientTrace per attempt sees each send, and a
//     re-sent one is logged as its own [Attempt] with class "reset" (and
//     makes [ExhaustedError].Sent true). Each such re-send is a retry
//     without a wait: the failed send counts for the target's breaker as a
//     reset, then MaxAttempts must have a send left for the re-send, the
//     breaker must let it through and the retry budget must grant it; it is
//     counted in fetchd.outbound.retries (reason "transport_resend"). It
//     does not wait for the target's shared hold: it cannot wait. Granted,
//     it goes ahead at once, and fetchd's own retries after the attempt
//     have that many sends fewer left. Refused, it is never sent. The
//     decision is taken in the trace's GetConn, which net/http calls on the
//     caller's goroutine at the start of every try, before it takes a
//     connection (or in GotConn, should a connection come without one). A
//     refusal cancels the attempt's context (cause errResendRefused), and
//     every HTTP/1 connection handed to the attempt from then on fails its
//     writes without writing a byte: the transport hands an HTTP/1 request
//     to its connection's writer without looking at the context again.
//     HTTP/2 looks at the context before it writes a stream's headers; its
//     connection, which other requests share, is left alone. The
//     transport's own check of the context, before it asks for another
//     connection, ends the round trip. The attempt's outcome is then the
//     last real send's: class "reset", with Stopped saying why it was not
//     re-sent ("max_attempts", "retry_budget" or "breaker_open"); fetchd
//     does not retry it either. So with MaxAttempts 1, a request whose
//     pooled connection died fails so rather than being re-sent.
//   - Every target (scheme, host, port) is protected as a whole, for every
//     call to it: a retry budget (Policy.Budget) grants each retry before
//     its wait (and each transport re-send before it is made), or the run
//     ends with the outcome in hand; a circuit breaker (Policy.Breaker) lets
//     each attempt through, first attempts, retries and re-sends alike, or
//     refuses it before anything is sent; a shared hold
//     (Policy.ShareRetryAfter) set by a 429 or 503 with Retry-After makes
//     every attempt to the target wait until it ends, or not be made when it
//     would outlive the deadline. A refused first attempt is logged as one
//     Attempt (class "breaker_open" or "target_hold") and the run ends with
//     an *ExhaustedError whose Sent is false; a refused retry ends the run
//     with the previous outcome. Every retryable outcome that is not retried
//     says why in Stopped. Everything about a retry (budget, breaker permit,
//     hold) is decided before its wait, never after it. The breaker counts
//     what an outcome says about the upstream only: a timeout of a run whose
//     caller shortened its timeouts (Policy.ShortenedTimeouts) counts
//     neither way, so no caller can open a breaker for everyone with its own
//     impatience.
//   - That protection state is kept per target apart from the transports,
//     bounded by WithMaxProtectedTargets (default 4096): dropping a
//     transport (WithMaxTargets, a MaxConns change, SetGuard) never forgets
//     it, and calls to other targets (other ports of a host) can only make
//     it go in this order: idle targets first (nothing to lose), then active
//     ones, least recently used first, and targets holding calls back (an
//     open or half-open breaker, a hold in force) only when every target
//     kept is. Each Do reads its settings from its own Policy; settings that
//     are the target's own and differ from those its budget or breaker was
//     built with (a policy reload) replace that piece with a fresh one, and
//     a MaxConns that differs from the one its transport was built with
//     replaces the transport (the old one closes its connections as its
//     requests finish). All of it reads the Client's clock (WithNow), never
//     the wall clock directly, and is safe for concurrent use: the pool's
//     and the protection table's mutexes are each held only to find (or
//     build) an entry, and for a sweep of the table when it is full (O(n),
//     at most once per n/64 new targets); the budget and the breaker each
//     have a mutex of their own, the hold is lock-free.
//   - Time: TotalTimeout and the caller's deadline bound everything, backoff
//     included; each attempt gets min(AttemptTimeout, time left); the connect
//     timeout bounds dial and TLS handshake; the read timeout is the longest
//     silence after the request is written and between body reads. A wait
//     that would end at or after the deadline is not slept: Do returns the
//     last answer (or the failure) at once. A retry after an answer must
//     moreover have, once its wait is over, at least min(AttemptTimeout,
//     max(ConnectTimeout, the answered attempt's duration)) left: the
//     upstream is likely as slow again, and a new connection may be needed.
//     With less, Do returns the answer at once rather than start an attempt
//     the deadline would most likely cut off. A first attempt held by the
//     target's shared hold must likewise have min(AttemptTimeout,
//     ConnectTimeout) left after the wait. A cancelled caller context
//     cancels the upstream request at once.
//   - Bodies: the request body is sent intact on every attempt. A response
//     to HEAD, and a 1xx, 204 or 304, has an empty body whatever its
//     Content-Length says. Any other response body is read up to
//     Policy.MaxResponseBytes; over it, Do returns a *[BodyTooLargeError]
//     and closes the connection. A response discarded for a retry is drained
//     up to 4 KiB and closed, so a short one leaves its connection reusable.
//   - Telemetry (OpenTelemetry; providers given by [WithTracerProvider],
//     [WithMeterProvider], [WithPropagator]; the OTel globals are never read
//     or set). Every real send is a CLIENT span, child of the span in the Do
//     context: named by the method ("HTTP" for a method the HTTP conventions
//     do not know, with http.request.method "_OTHER" and
//     http.request.method_original), with http.request.method,
//     server.address, server.port (the scheme's default when the URL has
//     none), url.full (no userinfo, no fragment, the values of
//     telemetry.DefaultRedactedQueryParams and [WithRedactedQueryParams]
//     replaced by "REDACTED"), http.response.status_code when a status
//     arrived, network.peer.address and .port when a connection was had,
//     http.request.resend_count (the attempt's Number - 1, from the second
//     send of the run on: retries, transport re-sends and redirect hops all
//     count) and error.type: the status when it is 400 or more, else the
//     attempt's failure class; none on success. Its status is Error with
//     error.type (the description is the class and the attempt's Detail,
//     never the URL's query, for a failure; empty for a status), else
//     Unset. The wait before the exchange is on its first send's span:
//     fetchd.backoff.duration (seconds) and fetchd.backoff.reason (as
//     Attempt.BackoffReason). No header and no body is ever recorded. The
//     span of an exchange is started before the request is handed to
//     net/http and represents its last send; it starts when the exchange
//     does, so it also covers the sends net/http repeated on its own before
//     it. Each of those gets a span of its own afterwards, with its own
//     start and end, error.type "reset" and fetchd.transport_resend=true;
//     the upstream saw the live span's ID in traceparent for every send of
//     the exchange. The trace context of each exchange (the live span's;
//     without a tracer, the Do context's own, if valid) is written into a
//     copy of the request headers by the propagator (default W3C
//     traceparent/tracestate), replacing the caller's headers of the same
//     names: the run's own copy for the first exchange that writes one, a
//     copy of that for every later one, so that no headers are written once
//     handed to net/http; without a valid span context, or with
//     WithPropagator(nil), the run's headers are sent as they are. Nothing
//     that was never sent gets a CLIENT span: a first attempt refused by
//     the breaker or the hold adds the event fetchd.attempt.refused
//     (fetchd.attempt.refused.reason breaker_open or target_hold) to the
//     Do context's span, and an IP literal the guard refuses adds
//     fetchd.egress.denied (fetchd.egress.denied.reason, one of the
//     Denied... classes, never the address). A name the guard refuses when
//     it is dialled did ask for a connection: its attempt has a span
//     (error.type "denied") and the event is added too. A retryable outcome
//     that is not retried adds fetchd.retry.stopped
//     (fetchd.retry.stopped.reason, the Stopped value). Metrics, labels
//     bounded (target.host through telemetry.HostLabels, 256 hosts):
//     fetchd.outbound.attempts (target.host, outcome: the failure class,
//     else the status class "2xx"...; one per attempt that has a span),
//     fetchd.outbound.retries (target.host, reason: the wait's reason, or
//     "transport_resend"; one per retry or transport re-send granted),
//     fetchd.outbound.refusals (target.host, reason: breaker_open or
//     target_hold for a refused first attempt; retry_budget, breaker_open
//     or deadline for a refused retry or re-send),
//     fetchd.egress.denied (reason: a Denied... class) and
//     fetchd.outbound.requests.in_flight (target.host; up from an
//     attempt's start until its body is read or discarded). Each count is
//     one atomic add, read when metrics are collected, and carries no
//     exemplar (telemetry.Counter). With the default no-op providers no
//     span or attribute is built and no metric recorded: a Do costs what
//     it did without telemetry (BenchmarkDo).
//   - Failure classes come from error types (errors.Is/As) and from which of
//     fetchd's own contexts ended the attempt, never from error text.
//     Details never echo the URL's query ("?query") or credentials
//     ("user:password@"). A connection is pooled (or handed to a request
//     waiting for one) as soon as an answer without a body is read on it,
//     a moment before net/http hands that answer over; a request that takes
//     it then and is cancelled (its caller, a timeout, a refused re-send)
//     closes it, and the request whose answer it was fails with the other's
//     cancellation cause and is not re-sent. That attempt is a "reset": its
//     connection closed before the answer arrived.
//
// Ownership: Do reads the Request and never modifies or retains it (a
// redirect's changes to method, body and headers apply to the run's own
// copies), nor a Policy that Request.HopPolicy returns; the returned
// Response and its slices belong to the caller. Do keeps a reference to
// Request.Guard in its pool of transports (until they are evicted or
// retired). Do closes every upstream response body it opens. [Client.Close] closes idle
// connections; it does not interrupt requests in flight.
//
// Concurrency: a [Client] is safe for concurrent use; one Client should serve
// the whole process so that connections are pooled and targets protected as
// a whole. Pools are per (scheme, host, port) and Request.Guard, bounded in
// number (WithMaxTargets; least recently used evicted, its idle connections
// closed, its target's protection state kept) and in connections per host
// (Policy.MaxConns, or WithMaxConnsPerHost). [Client.SetGuard] may be called
// at any time, concurrently with Do.
//
// Errors: [ExhaustedError] and [BodyTooLargeError] carry the attempt log.
// Ask, in this order: errors.As(err, *[RedirectError]) (and for the
// caller's own CheckRedirect error), errors.Is(err, egress.ErrDenied) (with
// ExhaustedError.Sent true when it was a redirect hop), errors.Is(err,
// ErrBodyTooLarge), errors.Is(err, context.Canceled), errors.Is(err,
// context.DeadlineExceeded); anything else is an *ExhaustedError whose
// attempts found no answer or that the target's protection did not send
// (its Stopped and last Attempt say which).
package outbound
