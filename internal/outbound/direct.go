package outbound

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// directTransport is an http.RoundTripper for plain-HTTP (http://) HTTP/1.1
// targets that makes each exchange on the calling goroutine: the request is
// written with Request.Write and the answer read with http.ReadResponse over
// a pooled connection. net/http's Transport hands every request to a
// connection's writing goroutine, and the answer and the body's end back and
// forth with its reading one, which costs fetchd 12-15 µs of CPU a request;
// here no goroutine runs per connection or per request.
//
// One directTransport serves one target: the first request fixes the
// host:port dialled (port 80 by default), and a request for another is
// refused. It re-sends a request in a subset of the cases net/http's
// Transport does: at once, on another connection, when the request was
// written whole on a reused connection that then closed or failed before
// the first byte of an answer, and the request is replayable (GET, HEAD,
// OPTIONS, TRACE, or any method with an Idempotency-Key or
// X-Idempotency-Key header) with a body it can have again (none, or
// GetBody). Unlike net/http, it does not re-send a request whose write
// failed, even with nothing written. Each re-send starts with the trace's GetConn,
// as net/http's do, and is not made once the request's context has ended:
// the outbound engine grants it there, as a retry, or refuses it by
// cancelling the context. It does no TLS, HTTP/2,
// proxying, compression, 100-continue or protocol upgrade (a 101 answer is
// returned, and its connection closed). It is safe for concurrent use.
//
// A connection serves another request once the answer's body has been read
// to EOF, unless the request or the answer asked to close it; a body closed
// before its end, or interrupted by the end of the request's context, closes
// its connection. A body neither read to its end nor closed keeps its
// connection's place for good, as with net/http. An idle connection is
// checked before it is reused with a non-blocking peek on its socket
// (recvfrom with MSG_PEEK|MSG_DONTWAIT, on Unix systems; elsewhere it is skipped).
type directTransport struct {
	dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	maxConns       int           // open or being dialled, idle or not; zero or less: no limit
	idleTimeout    time.Duration // zero or less: an idle connection is kept until it closes
	maxHeaderBytes int
	now            func() time.Time // the clock of idle times
	// large, when set, sends the requests whose bodies are over
	// directMaxBody (see RoundTrip); it is net/http's Transport for the
	// same target.
	large roundTripper

	mu    sync.Mutex
	addr  string        // the target's host:port, fixed by the first request
	idle  []*directConn // oldest first; taken from the end
	conns int           // open or being dialled, idle or not
	wants []*directWant // requests waiting for a connection, first come first
	// reaper looks at the idle connections every directProbeEvery while
	// there are some, with no request to look at them: it closes those
	// left idle past idleTimeout and those the upstream closed (reap);
	// reaping: it is armed.
	reaper  *time.Timer
	reaping bool
	// closing: CloseIdleConnections was called, and connections freed
	// since are closed, not pooled, until a request asks for one (as with
	// net/http).
	closing bool
}

var _ http.RoundTripper = (*directTransport)(nil)

// newDirectTransport returns a transport that dials with dial ("tcp" and the
// target's host:port), keeps at most maxConns connections (zero or less: no
// limit), closes a connection idle for longer than idleTimeout when it is
// next looked at (zero or less: never), and refuses response headers over
// maxHeaderBytes (zero or less: net/http's default of 10 MiB).
func newDirectTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error), maxConns int, idleTimeout time.Duration, maxHeaderBytes int) *directTransport {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = 10 << 20
	}
	return &directTransport{dial: dial, maxConns: maxConns, idleTimeout: idleTimeout, maxHeaderBytes: maxHeaderBytes, now: time.Now}
}

// directMaxBody is the largest request body the direct transport writes
// itself (see large): well under the loopback and typical TCP socket
// buffers, so that writing it never waits for the upstream to read.
const directMaxBody = 64 << 10

// errHeadersTooLarge fails a round trip whose response headers (with those
// of any 1xx answers before them) are over the transport's maxHeaderBytes.
var errHeadersTooLarge = errors.New("outbound: response headers too large")

var errBodyClosed = errors.New("outbound: read on closed response body")

// aLongTimeAgo is a deadline in the past: set on a connection, it ends every
// read and write on it at once.
var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip sends req and returns its answer once the headers are read. The
// request's context bounds the whole exchange, the body's reading included:
// its end interrupts the I/O, closes the connection and fails the round trip
// (or the body's Read) with an error that is the context's cause and answers
// errors.Is for ctx.Err(). Other errors keep their types (*net.OpError,
// io.ErrUnexpectedEOF...) behind a short prefix. req.Body is always closed.
func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.large != nil && req.ContentLength > directMaxBody {
		// Written before the answer is read, a body larger than the
		// sockets' buffers would leave an upstream that answers early (a
		// 413) and stops reading with the write blocked until the attempt
		// times out, its answer lost; net/http's Transport reads while it
		// writes.
		return t.large.RoundTrip(req)
	}
	ctx := req.Context()
	addr, err := directAddr(req)
	if err == nil {
		err = validRequest(req)
	}
	if err == nil && ctx.Err() != nil {
		err = canceled(ctx)
	}
	if err != nil {
		closeBody(req)
		return nil, err
	}
	trace := httptrace.ContextClientTrace(ctx)
	orig := req
	for {
		if trace != nil && trace.GetConn != nil {
			trace.GetConn(addr)
		}
		if err := ctx.Err(); err != nil {
			// A re-send the trace refused, or the end of the caller's
			// context between two sends.
			closeBody(req)
			return nil, canceled(ctx)
		}
		pc, idleAt, err := t.getConn(ctx, addr)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		if trace != nil && trace.GotConn != nil {
			info := httptrace.GotConnInfo{Conn: pc.conn, Reused: pc.reused}
			if !idleAt.IsZero() {
				info.WasIdle, info.IdleTime = true, t.now().Sub(idleAt)
			}
			trace.GotConn(info)
		}
		stop := context.AfterFunc(ctx, func() { pc.conn.SetDeadline(aLongTimeAgo) })
		resp, keep, err := pc.exchange(req, trace)
		if err != nil {
			stop()
			t.closeConn(pc)
			if ctx.Err() != nil {
				return nil, canceled(ctx)
			}
			if pc.reused && pc.wrote && !pc.answered {
				// Written whole on a connection that served a request
				// before, and closed or broken before any answer: the
				// upstream most likely closed it as idle while the request
				// was on its way, as net/http's Transport assumes.
				if again := resendable(req); again != nil {
					req = again
					continue
				}
			}
			return nil, err
		}
		resp.Request = orig // as net/http's Transport does after a re-send
		return t.answer(req, pc, resp, stop, keep, trace), nil
	}
}

// answer returns resp, whose exchange on pc ended well, with a body that
// gives pc back (or closes it) once read; a bodiless answer gives it back
// at once.
func (t *directTransport) answer(req *http.Request, pc *directConn, resp *http.Response, stop func() bool, keep bool, trace *httptrace.ClientTrace) *http.Response {
	ctx := req.Context()
	if resp.Body == http.NoBody {
		t.release(pc, stop, keep, trace)
		return resp
	}
	resp.Body = &directBody{pc: pc, body: resp.Body, ctx: ctx, stop: stop, keep: keep, trace: trace}
	return resp
}

// closeBody closes req's body, if it has one: a RoundTrip that returns
// without writing req must still close it.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// resendable returns the request to send again after its reused connection
// failed before any answer, as net/http's Transport decides it
// (Request.isReplayable): a GET, HEAD, OPTIONS or TRACE, or a request with an
// Idempotency-Key or X-Idempotency-Key header, whose body is empty or can be
// had again (GetBody). It is req, or a copy with a fresh body; nil when
// req is not to be sent again.
func resendable(req *http.Request) *http.Request {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		if _, ok := req.Header["Idempotency-Key"]; !ok {
			if _, ok := req.Header["X-Idempotency-Key"]; !ok {
				return nil
			}
		}
	}
	if req.Body == nil || req.Body == http.NoBody {
		return req
	}
	if req.GetBody == nil {
		return nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil
	}
	again := *req
	again.Body = body
	return &again
}

// directAddr returns the host:port req is for.
func directAddr(req *http.Request) (string, error) {
	u := req.URL
	if u == nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("outbound: direct transport: not an http:// URL: %q", req.URL.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}

// validRequest refuses, before any connection is taken (nothing is sent),
// what net/http's Transport refuses and Request.Write would write as it is:
// a method that is not a token, and header names or values that are not
// valid, such as ones holding a line break.
func validRequest(req *http.Request) error {
	if req.Method != "" && !httpguts.ValidHeaderFieldName(req.Method) {
		return fmt.Errorf("outbound: direct transport: invalid method %q", req.Method)
	}
	for name, values := range req.Header {
		if !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("outbound: direct transport: invalid header name %q", name)
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("outbound: direct transport: invalid value of header %q", name)
			}
		}
	}
	return nil
}

// canceled is the error of an exchange that ctx ended: its cause, which
// also answers errors.Is for ctx.Err().
func canceled(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if errors.Is(cause, err) {
		return cause
	}
	return fmt.Errorf("%w (%w)", cause, err)
}

// CloseIdleConnections closes the idle connections. Busy ones are closed
// when their exchanges end, unless a request asked for a connection since,
// as with net/http.
func (t *directTransport) CloseIdleConnections() {
	if t.large != nil {
		t.large.CloseIdleConnections()
	}
	t.mu.Lock()
	t.closing = true
	idle := t.idle
	t.idle = nil
	t.conns -= len(idle) // no request waits while some are idle
	t.mu.Unlock()
	for _, pc := range idle {
		pc.conn.Close()
	}
}

// directWant is a request waiting for a connection. Whoever frees one hands
// it over under t.mu, and closes ready: pc, or, when pc is nil, the place of
// a connection that closed, for the request to dial.
type directWant struct {
	ready chan struct{}
	pc    *directConn
}

// getConn returns a connection to addr: the idle one used last that is
// still open, a new one, or, at maxConns, the first one freed after the
// requests that waited before this one. idleAt is when it went idle, zero
// unless it was taken from the idle ones.
func (t *directTransport) getConn(ctx context.Context, addr string) (pc *directConn, idleAt time.Time, err error) {
	for {
		t.mu.Lock()
		t.closing = false
		if t.addr != addr {
			if t.addr != "" {
				t.mu.Unlock()
				return nil, time.Time{}, fmt.Errorf("outbound: direct transport of %s asked for %s", t.addr, addr)
			}
			t.addr = addr
		}
		if stale := t.expiredLocked(t.now()); stale != nil {
			t.mu.Unlock()
			for _, pc := range stale {
				pc.conn.Close()
			}
			continue
		}
		if n := len(t.idle); n > 0 {
			pc := t.idle[n-1]
			t.idle[n-1] = nil
			t.idle = t.idle[:n-1]
			t.mu.Unlock()
			if !pc.alive() {
				t.closeConn(pc)
				continue
			}
			return pc, pc.idleAt, nil
		}
		if t.maxConns <= 0 || t.conns < t.maxConns {
			t.conns++
			t.mu.Unlock()
			pc, err := t.dialConn(ctx, addr)
			return pc, time.Time{}, err
		}
		w := &directWant{ready: make(chan struct{})}
		t.wants = append(t.wants, w)
		t.mu.Unlock()
		select {
		case <-w.ready:
		case <-ctx.Done():
		}
		if ctx.Err() != nil { // even if handed something: it would only be spoilt
			t.mu.Lock()
			i := slices.Index(t.wants, w)
			if i >= 0 {
				t.wants = slices.Delete(t.wants, i, i+1)
			}
			t.mu.Unlock()
			if i < 0 { // handed something meanwhile: pass it on
				if w.pc != nil {
					t.put(w.pc)
				} else {
					t.freeSlot()
				}
			}
			return nil, time.Time{}, canceled(ctx)
		}
		if w.pc != nil {
			return w.pc, time.Time{}, nil
		}
		pc, err := t.dialConn(ctx, addr)
		return pc, time.Time{}, err
	}
}

// expiredLocked takes the connections idle for longer than idleTimeout out
// of the idle ones, for the caller to close once t.mu is released. They are
// the oldest: idle times grow from the bottom up. t.mu is held.
func (t *directTransport) expiredLocked(now time.Time) []*directConn {
	if t.idleTimeout <= 0 {
		return nil
	}
	i := 0
	for i < len(t.idle) && now.Sub(t.idle[i].idleAt) > t.idleTimeout {
		i++
	}
	if i == 0 {
		return nil
	}
	stale := slices.Clone(t.idle[:i])
	t.idle = slices.Delete(t.idle, 0, i)
	t.conns -= i // no request waits while some are idle
	return stale
}

// dialConn dials addr in a place getConn reserved, which it frees on failure.
func (t *directTransport) dialConn(ctx context.Context, addr string) (*directConn, error) {
	conn, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		t.freeSlot()
		if ctx.Err() != nil {
			return nil, canceled(ctx)
		}
		return nil, err
	}
	pc := &directConn{t: t, conn: conn}
	pc.br = bufio.NewReaderSize(pc, directBufSize)
	pc.bw = bufio.NewWriterSize(pc, directBufSize)
	inner := conn
	if tc, ok := inner.(*trackedConn); ok {
		inner = tc.Conn
	}
	if sc, ok := inner.(syscall.Conn); ok {
		if pc.raw, err = sc.SyscallConn(); err == nil {
			pc.peek = pc.peekFD
		}
	}
	return pc, nil
}

// release ends the exchange on pc once its answer is over: pc goes back to
// the pool if keep holds, the context's AfterFunc (stop) never ran, and no
// byte beyond the answer arrived; otherwise it is closed.
func (t *directTransport) release(pc *directConn, stop func() bool, keep bool, trace *httptrace.ClientTrace) {
	if !stop() || !keep || pc.br.Buffered() > 0 {
		t.closeConn(pc)
		return
	}
	t.put(pc)
	if trace != nil && trace.PutIdleConn != nil {
		trace.PutIdleConn(nil)
	}
}

// put hands pc to the first waiting request, or makes it idle.
func (t *directTransport) put(pc *directConn) {
	pc.reused = true
	t.mu.Lock()
	if w := t.popWantLocked(); w != nil {
		w.pc = pc
		close(w.ready)
		t.mu.Unlock()
		return
	}
	if t.closing {
		t.conns--
		t.mu.Unlock()
		pc.conn.Close()
		return
	}
	pc.idleAt = t.now()
	t.idle = append(t.idle, pc)
	// Under steady load the newest idle connections serve every request;
	// the oldest are dropped here, and by the reaper when no request comes.
	stale := t.expiredLocked(pc.idleAt)
	if !t.reaping {
		t.reaping = true
		if t.reaper == nil {
			t.reaper = time.AfterFunc(t.reapIn(pc.idleAt), t.reap)
		} else {
			t.reaper.Reset(t.reapIn(pc.idleAt))
		}
	}
	t.mu.Unlock()
	for _, pc := range stale {
		pc.conn.Close()
	}
}

// directProbeEvery is how often the idle connections are looked at while
// there are some: a connection the upstream closed is closed at the next
// look (net/http's Transport notices at once, with a goroutine reading each
// connection), instead of holding its descriptor until the idle timeout.
const directProbeEvery = 2 * time.Second

// reapIn is when the reaper should next look, now being now: at the probe
// interval, or sooner when the oldest idle connection expires sooner.
func (t *directTransport) reapIn(now time.Time) time.Duration {
	d := directProbeEvery
	if t.idleTimeout > 0 && len(t.idle) > 0 {
		d = min(d, t.idle[0].idleAt.Add(t.idleTimeout).Sub(now)+time.Millisecond)
	}
	return d
}

// reap closes the connections idle for longer than idleTimeout and those
// the upstream closed (the non-blocking peek of alive, under t.mu: it never
// waits), and arms the reaper again while some are left: one timer per
// transport, not per connection or request.
func (t *directTransport) reap() {
	t.mu.Lock()
	now := t.now()
	stale := t.expiredLocked(now)
	live := t.idle[:0]
	for _, pc := range t.idle {
		if pc.alive() {
			live = append(live, pc)
			continue
		}
		stale = append(stale, pc)
		t.conns-- // no request waits while some are idle
	}
	clear(t.idle[len(live):])
	t.idle = live
	if len(t.idle) > 0 {
		t.reaper.Reset(t.reapIn(now))
	} else {
		t.reaping = false
	}
	t.mu.Unlock()
	for _, pc := range stale {
		pc.conn.Close()
	}
}

// closeConn closes pc, a connection no request is using, and frees its place.
func (t *directTransport) closeConn(pc *directConn) {
	pc.conn.Close()
	t.freeSlot()
}

// freeSlot gives the place of a connection closed, or never dialled, to the
// first waiting request, which dials; with none waiting, the place is free.
func (t *directTransport) freeSlot() {
	t.mu.Lock()
	if w := t.popWantLocked(); w != nil {
		close(w.ready)
	} else {
		t.conns--
	}
	t.mu.Unlock()
}

// popWantLocked takes the first waiting request out of the queue. t.mu is held.
func (t *directTransport) popWantLocked() *directWant {
	if len(t.wants) == 0 {
		return nil
	}
	w := t.wants[0]
	t.wants = slices.Delete(t.wants, 0, 1)
	return w
}

// directBufSize is the size of a connection's read and write buffers, and
// what the reader may read ahead of the headers beyond maxHeaderBytes.
const directBufSize = 4 << 10

// directConn is one connection of a directTransport. It is the reader under
// br (bounding the headers' size) and the writer under bw (telling a failure
// to write on the connection from any other failure of Request.Write). It is
// used by one request at a time; the pool hands it over under t.mu.
type directConn struct {
	t     *directTransport
	conn  net.Conn // as dial returned it, and as GotConn reports it
	br    *bufio.Reader
	bw    *bufio.Writer
	armed bool  // headers are being read: at most left more bytes may be read
	left  int64 // while armed
	werr  error // the first failed write on conn
	// wrote: the current exchange's request was written and flushed
	// whole; answered: it read a byte of an answer.
	wrote, answered bool
	reused          bool // it served a request before
	idleAt          time.Time

	// The liveness check of an idle connection, a non-blocking peek on its
	// socket: raw is nil for a connection that is not a socket's. peek is
	// peekFD, bound once so that a check allocates nothing.
	raw     syscall.RawConn
	peek    func(fd uintptr) bool
	peekBuf [1]byte
	open    bool // what the last peek found (peekFD)
}

func (pc *directConn) Read(p []byte) (int, error) {
	if pc.armed {
		if pc.left <= 0 {
			return 0, errHeadersTooLarge
		}
		if int64(len(p)) > pc.left {
			p = p[:pc.left]
		}
	}
	n, err := pc.conn.Read(p)
	pc.left -= int64(n)
	return n, err
}

func (pc *directConn) Write(p []byte) (int, error) {
	n, err := pc.conn.Write(p)
	if err != nil && pc.werr == nil {
		pc.werr = err
	}
	return n, err
}

// alive reports whether an idle connection may serve a request: a socket
// with nothing to read, neither the server's close (EOF), an error, nor
// bytes nobody asked for. A connection that is not a socket's is alive.
func (pc *directConn) alive() bool {
	if pc.raw == nil {
		return true
	}
	if err := pc.raw.Read(pc.peek); err != nil {
		return false
	}
	return pc.open
}

// exchange writes req on pc and reads its answer, skipping informational
// (1xx) ones. keep says pc may serve another request once the answer's body
// has been read.
func (pc *directConn) exchange(req *http.Request, trace *httptrace.ClientTrace) (resp *http.Response, keep bool, err error) {
	pc.wrote, pc.answered = false, false
	err = req.Write(pc.bw) // calls the trace's WroteHeaders and WroteRequest
	if err == nil {
		err = pc.bw.Flush()
	}
	pc.wrote = err == nil
	if err != nil {
		if pc.werr == nil {
			// Request.Write failed before the connection did: the request
			// is invalid, or its body's Read failed. Request.Write wraps a
			// body's error in a type that does not unwrap, and a wrapper
			// of our own around the body would cost a flush of the headers
			// apart (Request.Write flushes them first for any body it does
			// not know to be in memory).
			return nil, false, fmt.Errorf("outbound: write request: %w", err)
		}
		// The server may have answered and closed before the whole request
		// was written (a 413 for a large body): the answer is its answer.
		resp, rerr := pc.readResponse(req, trace)
		if rerr != nil {
			return nil, false, fmt.Errorf("outbound: write request: %w", err)
		}
		return resp, false, nil
	}
	resp, err = pc.readResponse(req, trace)
	if err != nil {
		return nil, false, fmt.Errorf("outbound: read response: %w", err)
	}
	keep = !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols &&
		!httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
	return resp, keep, nil
}

// readResponse reads the answer to req, its headers (and those of any 1xx
// answers before it) at most maxHeaderBytes, give or take a buffer.
func (pc *directConn) readResponse(req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	pc.armed, pc.left = true, int64(pc.t.maxHeaderBytes)+directBufSize
	defer func() { pc.armed = false }()
	if _, err := pc.br.Peek(1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // as http.ReadResponse says it
		}
		return nil, err
	}
	pc.answered = true
	if trace != nil && trace.GotFirstResponseByte != nil {
		trace.GotFirstResponseByte()
	}
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if errors.Is(err, errHeadersTooLarge) {
			return nil, fmt.Errorf("%w: over %d bytes", errHeadersTooLarge, pc.t.maxHeaderBytes)
		}
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// States of a directBody.
const (
	bodyOpen  = iota
	bodyEnded // read to EOF: the connection was released
	bodyDone  // closed before EOF, or failed: the connection was closed
)

// directBody is the body of an answer on a directConn. The Read that meets
// EOF releases the connection; Close before that, or a failed Read, closes
// it. Close may be called while a Read blocks, and interrupts it.
type directBody struct {
	pc    *directConn
	body  io.Reader // http.ReadResponse's, reading pc.br
	ctx   context.Context
	stop  func() bool // stops the AfterFunc of ctx; false if it ran
	keep  bool
	trace *httptrace.ClientTrace
	state atomic.Int32
	err   error // the failed Read's error, returned again; Read's alone
}

func (b *directBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEnded:
		return 0, io.EOF
	case bodyDone:
		if b.err != nil {
			return 0, b.err
		}
		return 0, errBodyClosed
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		if b.state.CompareAndSwap(bodyOpen, bodyEnded) {
			b.pc.t.release(b.pc, b.stop, b.keep, b.trace)
		}
	case err != nil:
		if b.state.CompareAndSwap(bodyOpen, bodyDone) {
			b.stop()
			b.pc.t.closeConn(b.pc)
		}
		if b.ctx.Err() != nil {
			err = canceled(b.ctx)
		}
		b.err = err
	}
	return n, err
}

// Close closes the connection unless the body was read to EOF. The rest of
// the body is not drained: the caller decides how much of it to read.
func (b *directBody) Close() error {
	if b.state.CompareAndSwap(bodyOpen, bodyDone) {
		b.stop()
		b.pc.t.closeConn(b.pc)
	} else {
		b.state.CompareAndSwap(bodyEnded, bodyDone)
	}
	return nil
}
