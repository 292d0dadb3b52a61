package outbound

import (
	"container/list"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
)

// target is one transport of a (scheme, host, port), for the runs of one
// egress guard. A Do holds on to the target it got from the pool until the
// hop that uses it ends. The target's protection state is kept apart from it
// (protections), so that dropping a transport never forgets a breaker.
type target struct {
	key       string        // the (scheme, host, port), see targetKey
	guard     *egress.Guard // Request.Guard of the runs it serves; nil: the Client's guard
	transport roundTripper
	maxConns  int    // the transport's MaxConnsPerHost
	gen       uint64 // the pool's generation when the transport was built
	// evicted is set when the target left the pool: least recently used,
	// replaced by a transport with another MaxConns, or retired by renew.
	evicted atomic.Bool
}

// done is called when a Do that used t ends: connections it returned to an
// evicted target's pool are closed, not left to idle out.
func (t *target) done() {
	if t.evicted.Load() {
		t.transport.CloseIdleConnections()
	}
}

// poolKey names one transport: the target, and the guard whose dials fill
// it. Runs with different guards never share a connection: one dialled
// under a wider guard must not serve a run whose guard would refuse it.
type poolKey struct {
	target string
	guard  *egress.Guard
}

// pool holds at most max transports, least recently used evicted first.
type pool struct {
	mu    sync.Mutex
	max   int
	gen   uint64     // bumped by renew; a target of an older one is replaced
	lru   *list.List // of *target, most recently used at the front
	byKey map[poolKey]*list.Element
	build func(scheme string, maxConns int, guard *egress.Guard) roundTripper
}

// roundTripper is what a target sends with: net/http's Transport, or, for a
// plain-HTTP target when the Client has WithDirectHTTP, the direct
// transport (direct.go).
type roundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

func newPool(maxTargets int, build func(scheme string, maxConns int, guard *egress.Guard) roundTripper) *pool {
	return &pool{max: maxTargets, lru: list.New(), byKey: make(map[poolKey]*list.Element), build: build}
}

// targetKey names the target of u: scheme, lower-cased host and port, with
// the scheme's default port filled in.
func targetKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// get returns the target key (targetKey of a URL of scheme) for the runs of
// guard, with a transport of maxConns connections, creating it and evicting
// the least recently used one if the pool is full. A target whose transport
// was built before the last renew is replaced by one with a new transport;
// so is one built with another maxConns, unless resize is false: a run whose
// settings are not the target's own (a redirect hop run with the request's
// own Policy) takes the transport as it is. An evicted or replaced
// transport's idle connections are closed at once; requests still running
// on it finish normally, and each closes the idle connections again as it
// ends (target.done).
func (p *pool) get(key, scheme string, maxConns int, guard *egress.Guard, resize bool) *target {
	k := poolKey{target: key, guard: guard}
	p.mu.Lock()
	e, ok := p.byKey[k]
	if ok {
		p.lru.MoveToFront(e)
		t := e.Value.(*target)
		if t.gen == p.gen && (t.maxConns == maxConns || !resize) {
			p.mu.Unlock()
			return t
		}
		nt := &target{key: key, guard: guard, transport: p.build(scheme, maxConns, guard), maxConns: maxConns, gen: p.gen}
		e.Value = nt
		t.evicted.Store(true)
		p.mu.Unlock()
		t.transport.CloseIdleConnections()
		return nt
	}
	t := &target{key: key, guard: guard, transport: p.build(scheme, maxConns, guard), maxConns: maxConns, gen: p.gen}
	p.byKey[k] = p.lru.PushFront(t)
	var evicted []*target
	for p.lru.Len() > p.max {
		e := p.lru.Back()
		old := p.lru.Remove(e).(*target)
		delete(p.byKey, poolKey{target: old.key, guard: old.guard})
		old.evicted.Store(true)
		evicted = append(evicted, old)
	}
	p.mu.Unlock()
	for _, old := range evicted {
		old.transport.CloseIdleConnections()
	}
	return t
}

// closeIdle closes the idle connections of every target.
func (p *pool) closeIdle() {
	p.mu.Lock()
	targets := p.targets()
	p.mu.Unlock()
	for _, t := range targets {
		t.transport.CloseIdleConnections()
	}
}

// renew retires every target's transport: each is marked evicted and its
// idle connections are closed, and the next get of its key builds a new one.
// No get that starts after renew returns hands out a transport built before
// renew was called.
func (p *pool) renew() {
	p.mu.Lock()
	p.gen++
	targets := p.targets() // all of an older generation: gets wait for the lock
	for _, t := range targets {
		t.evicted.Store(true)
	}
	p.mu.Unlock()
	for _, t := range targets {
		t.transport.CloseIdleConnections()
	}
}

// targets lists the targets. p.mu is held.
func (p *pool) targets() []*target {
	out := make([]*target, 0, p.lru.Len())
	for e := p.lru.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*target))
	}
	return out
}

// keys lists the targets of the transports, most recently used first.
func (p *pool) keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, p.lru.Len())
	for e := p.lru.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*target).key)
	}
	return out
}

// newTransport builds the transport of one target, with at most maxConns
// connections, for the runs of guard. Every connection goes through the
// egress guard's dialer: guard's own (Request.Guard), or, for nil, the
// Client's guard in force when the dial starts (New, SetGuard). No proxy is
// ever taken from the environment; TLS is set up by dialTLS so that the
// per-request connect timeout bounds the handshake too. A plain-HTTP target
// of a Client with WithDirectHTTP gets the direct transport, with the same
// dialer and limits, and net/http's for its large request bodies.
func (c *Client) newTransport(scheme string, maxConns int, guard *egress.Guard) roundTripper {
	var g *guarded // nil: c.guard at each dial
	if guard != nil {
		g = newGuarded(guard)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return c.dial(ctx, g, network, addr)
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dial,
		MaxConnsPerHost:        maxConns,
		MaxIdleConns:           maxConns,
		MaxIdleConnsPerHost:    maxConns,
		IdleConnTimeout:        idleConnTimeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		DisableCompression:     true, // bodies pass through as the upstream sent them
	}
	if scheme == "http" && c.directHTTP {
		d := newDirectTransport(dial, maxConns, idleConnTimeout, maxResponseHeaderBytes)
		d.large = tr // for large request bodies, which it does not write itself
		return d
	}
	if scheme == "https" {
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.dialTLS(ctx, g, network, addr)
		}
		tr.ForceAttemptHTTP2 = true
	}
	return tr
}

// connectTimeout carries the request's connect timeout to the dialers, as
// the value of its own type. net/http dials with a context that keeps the
// request's values but not its cancellation, so the per-request bound
// travels as a value.
type connectTimeout struct {
	context.Context
	d time.Duration
}

// connectTimeoutKey is the key under which a connectTimeout answers Value.
type connectTimeoutKey struct{}

func (c *connectTimeout) Value(key any) any {
	if key == (connectTimeoutKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func connectContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c, ok := ctx.Value(connectTimeoutKey{}).(*connectTimeout); ok && c.d > 0 {
		return context.WithTimeout(ctx, c.d)
	}
	return ctx, func() {}
}

// dial connects through the egress guard g (the Client's guard in force when
// g is nil) within the connect timeout.
func (c *Client) dial(ctx context.Context, g *guarded, network, addr string) (net.Conn, error) {
	ctx, cancel := connectContext(ctx)
	defer cancel()
	if g == nil {
		g = c.guard.Load()
	}
	conn, err := g.dial(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	return &trackedConn{Conn: conn}, nil
}

// dialTLS connects through the egress guard g (the Client's guard in force
// when g is nil) and completes the TLS handshake, both within the connect
// timeout. The certificate is checked against the URL's host, not the
// address dialled.
func (c *Client) dialTLS(ctx context.Context, g *guarded, network, addr string) (net.Conn, error) {
	ctx, cancel := connectContext(ctx)
	defer cancel()
	if g == nil {
		g = c.guard.Load()
	}
	raw, err := g.dial(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		raw.Close()
		return nil, &dialError{err: err}
	}
	cfg := c.tlsConfig.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(&trackedConn{Conn: raw}, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &dialError{err: err, handshake: true}
	}
	return tc, nil
}

// trackedConn remembers the first read error of a connection, so that an
// untyped net/http error on it can be told apart: closed by the server
// (reset) or unreadable answer (protocol). Once told to (refuseWrites), it
// refuses every write without writing anything.
type trackedConn struct {
	net.Conn
	readErr  atomic.Pointer[error]
	noWrites atomic.Bool
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if c.noWrites.Load() {
		return 0, errWritesRefused
	}
	return c.Conn.Write(p)
}

// errWritesRefused is what a connection answers once its writes were
// refused. It is also net.ErrClosed: net/http may have put the connection
// back in its pool before it noticed the close, and to any other request
// that takes it, it is a pooled connection that died, which net/http
// replaces (nothing was written) and classify calls a reset.
var errWritesRefused = fmt.Errorf("%w (%w)", errResendRefused, net.ErrClosed)

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.readErr.CompareAndSwap(nil, &err)
	}
	return n, err
}

// refuseWrites makes conn, if fetchd dialled it, fail every write from now
// on without writing a byte: it is handed to an exchange whose re-send was
// refused, and net/http would otherwise write the request on it. It is
// closed too, so that it is never reused. An HTTP/2 connection is left alone: other
// requests share it, and the HTTP/2 client looks at the request's context
// before it writes the stream's headers.
func refuseWrites(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			return
		}
		conn = tc.NetConn()
	}
	if t, ok := conn.(*trackedConn); ok {
		t.noWrites.Store(true)
		t.Conn.Close()
	}
}

// connReadErr returns the first read error seen on conn, if fetchd dialled it.
func connReadErr(conn net.Conn) error {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	if t, ok := conn.(*trackedConn); ok {
		if p := t.readErr.Load(); p != nil {
			return *p
		}
	}
	return nil
}
