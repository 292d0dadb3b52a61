package outbound

import (
	"context"
	"crypto/tls"
	"time"
)

// Option configures a Client.
type Option func(*Client)

// WithNow sets the clock used for attempt durations, Retry-After dates, the
// check that a wait still fits before the deadline, the targets' retry
// budgets, circuit breakers and shared holds, and the start and end of
// every CLIENT span. Default time.Now. The
// deadline itself comes from the context, so the clock must agree with the
// one contexts use (time.Now, or the fake one inside testing/synctest).
func WithNow(now func() time.Time) Option {
	return func(c *Client) { c.now = now }
}

// WithSleep sets how a backoff wait is spent. It must return early with a
// non-nil error when ctx is done. Default: a timer and a select on
// ctx.Done().
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) { c.sleep = sleep }
}

// WithJitter sets how a wait is drawn from [0, limit] for full jitter.
// Default: uniform, from math/rand/v2. Results outside [0, limit] are clamped.
func WithJitter(jitter func(limit time.Duration) time.Duration) Option {
	return func(c *Client) { c.jitter = jitter }
}

// WithMaxTargets bounds how many transports (one per (scheme, host, port)
// and Request.Guard) are kept; the least recently used is evicted and its
// idle connections closed. The target's retry budget, circuit breaker and
// shared hold are kept apart and bounded by WithMaxProtectedTargets.
// Default 1024; less than 1 means the default.
func WithMaxTargets(n int) Option {
	return func(c *Client) { c.maxTargets = n }
}

// WithMaxProtectedTargets bounds how many targets' retry budgets, circuit
// breakers and shared holds are kept. Past it, idle targets (nothing to
// lose) are forgotten first; targets whose state is active only when every
// one is, those holding calls back (an open breaker, a hold) last. Default
// 4096; less than 1 means the default.
func WithMaxProtectedTargets(n int) Option {
	return func(c *Client) { c.maxProtected = n }
}

// WithMaxConnsPerHost bounds the connections, idle or busy, to one target
// whose Policy.MaxConns is zero or less. Requests over the bound wait for a
// connection. Default 64.
func WithMaxConnsPerHost(n int) Option {
	return func(c *Client) { c.maxConnsPerHost = n }
}

// WithTLSConfig sets the TLS client configuration (roots, client
// certificates, minimum version). It is cloned; ServerName is set per
// connection from the URL's host unless the config fixes one. Default: the
// system roots.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) { c.tlsConfig = cfg }
}

// WithDirectHTTP makes plain-HTTP (http://) targets use the direct
// transport (direct.go): each request is written and its answer read on the
// goroutine of the call, over fetchd's own pool of HTTP/1.1 connections,
// instead of net/http's Transport, which hands every request to two
// goroutines of its connection. It re-sends a request by itself only where
// net/http's Transport would (a replayable request whose reused connection
// died before any answer), and each re-send is granted or refused by the
// run as net/http's are. HTTPS targets keep net/http's Transport (TLS,
// HTTP/2). Default: off.
func WithDirectHTTP(on bool) Option {
	return func(c *Client) { c.directHTTP = on }
}

const (
	// idleConnTimeout closes a pooled connection left idle this long.
	idleConnTimeout = 90 * time.Second
	// maxResponseHeaderBytes bounds a response's header block.
	maxResponseHeaderBytes = 64 << 10

	defaultMaxTargets      = 1024
	defaultMaxProtected    = 4096
	defaultMaxConnsPerHost = 64
	// drainLimit is how much of a discarded body is read so that its
	// connection can be reused; a longer body closes the connection.
	drainLimit = 4 << 10
	// fallbackConnectTimeout bounds a dial when the policy gives no connect
	// timeout.
	fallbackConnectTimeout = 30 * time.Second
)

func sleepTimer(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
