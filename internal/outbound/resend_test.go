package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deadPool is an upstream whose keep-alive connections all die once used:
// it answers the first request on each connection and drops every later one
// unanswered (it reads it, then closes the connection), as a server that
// closed its idle connections without telling would. Once dropAll is set it
// drops first requests too. Its first fill requests are held until all fill
// have arrived, so that fill concurrent calls leave fill idle connections in
// the client's pool, each of which is dead for the next request.
type deadPool struct {
	*httptest.Server
	fill    int
	full    chan struct{} // closed when fill first requests have arrived
	firsts  atomic.Int64  // first requests of connections
	conns   atomic.Int64  // connections opened
	ended   chan struct{} // one per connection closed or hijacked
	dropAll atomic.Bool

	mu      sync.Mutex
	dropped []seen // requests dropped unanswered, in order
}

type servedKey struct{}

// served counts the requests of one connection; its requests are handled
// one after the other, on the connection's goroutine.
type served struct{ n int }

func newDeadPool(t *testing.T, fill int, useTLS bool) *deadPool {
	t.Helper()
	d := &deadPool{fill: fill, full: make(chan struct{}), ended: make(chan struct{}, 64)}
	d.Server = httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	d.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, servedKey{}, &served{})
	}
	d.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			d.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			d.ended <- struct{}{}
		}
	}
	if useTLS {
		d.EnableHTTP2 = false // HTTP/1.1 over TLS: net/http re-sends there too
		d.StartTLS()
	} else {
		d.Start()
	}
	t.Cleanup(d.Close)
	return d
}

func (d *deadPool) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := r.Context().Value(servedKey{}).(*served)
	c.n++
	if c.n == 1 && !d.dropAll.Load() {
		if d.firsts.Add(1) == int64(d.fill) {
			close(d.full)
		}
		select {
		case <-d.full:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "fine")
		return
	}
	d.mu.Lock()
	d.dropped = append(d.dropped, seen{method: r.Method, header: r.Header.Clone(), body: body})
	d.mu.Unlock()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

// sends closes c's idle connections, waits until the server has seen
// every connection end, and returns the requests it dropped: whatever was
// written on any connection has been handled by then.
func (d *deadPool) sends(t *testing.T, c *Client) []seen {
	t.Helper()
	c.Close()
	for range d.conns.Load() {
		within(t, d.ended, "the server to see every connection end")
	}
	return d.drops()
}

func (d *deadPool) drops() []seen {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]seen(nil), d.dropped...)
}

// client returns a Client for d (trusting its certificate), closed when the
// test ends. Its plain-HTTP targets use the transport newClient gives them:
// net/http's and the direct one re-send alike, and the package's tests run
// with each (FETCHD_TEST_DIRECT_HTTP).
func (d *deadPool) client(t *testing.T, opts ...Option) (*Client, *sleeps) {
	t.Helper()
	if d.TLS != nil {
		opts = append(opts, WithTLSConfig(d.Server.Client().Transport.(*http.Transport).TLSClientConfig))
	}
	return newClient(t, opts...)
}

// fillPool makes d.fill concurrent calls through c, which leave d.fill
// idle keep-alive connections in c's pool, every one of them dead.
func (d *deadPool) fillPool(t *testing.T, c *Client) {
	t.Helper()
	errs := make(chan error, d.fill)
	for range d.fill {
		go func() {
			resp, err := c.Do(context.Background(), request(t, "GET", d.URL+"/fill", nil))
			if err == nil && (resp.Status != 200 || len(resp.Attempts) != 1) {
				err = fmt.Errorf("fill call: %d after %d attempts", resp.Status, len(resp.Attempts))
			}
			errs <- err
		}()
	}
	for range d.fill {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("timed out filling the pool")
		}
	}
	if n := d.conns.Load(); n != int64(d.fill) {
		t.Fatalf("filling the pool opened %d connections, want %d", n, d.fill)
	}
}

// details lists the attempts' details.
func details(as []Attempt) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Detail
	}
	return out
}

// TestTransportResendsCountAgainstMaxAttempts: every pooled connection is
// dead, so net/http would re-send the request on each in turn (and then on a
// new one) within one attempt of fetchd's. Each re-send uses up an attempt:
// the upstream receives MaxAttempts sends, no more, and the result says the
// attempts ran out. The re-send that is refused sends nothing: the pool still
// holds live-looking connections, and net/http may pick one up for it, but
// nothing is written on it and nothing new is dialled.
func TestTransportResendsCountAgainstMaxAttempts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		method      string
		keyed       bool
		header      string // idempotency header sent upstream
		body        string
		tls         bool
		maxAttempts int
	}{
		{name: "GET", method: "GET", maxAttempts: 3},
		{name: "GET over TLS", method: "GET", tls: true, maxAttempts: 3},
		{name: "GET, 5 attempts", method: "GET", maxAttempts: 5},
		{name: "GET, 1 attempt", method: "GET", maxAttempts: 1},
		{name: "keyed POST", method: "POST", keyed: true, header: "Idempotency-Key", body: "charge=1", maxAttempts: 3},
		{name: "POST with X-Idempotency-Key, unkeyed", method: "POST", header: "X-Idempotency-Key", body: "charge=1", maxAttempts: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const fill = 6 // more dead connections than attempts
			up := newDeadPool(t, fill, tt.tls)
			c, s := up.client(t)
			up.fillPool(t, c)

			req := request(t, tt.method, up.URL+"/pay", []byte(tt.body))
			req.Keyed = tt.keyed
			if tt.header != "" {
				req.Header.Set(tt.header, "k-1")
			}
			req.Policy.MaxAttempts = tt.maxAttempts
			resp, err := c.Do(context.Background(), req)
			var ex *ExhaustedError
			if !errors.As(err, &ex) {
				t.Fatalf("Do = %+v, %v; want *ExhaustedError", resp, err)
			}

			if n := up.conns.Load(); n != fill {
				t.Errorf("%d connections, want the %d of the pool: the refused re-send dialled", n, fill)
			}
			drops := up.sends(t, c)
			if len(drops) != tt.maxAttempts {
				t.Fatalf("the upstream received %d sends, want %d (max attempts)", len(drops), tt.maxAttempts)
			}
			for i, d := range drops {
				if d.method != tt.method || string(d.body) != tt.body || (tt.header != "" && d.header.Get(tt.header) != "k-1") {
					t.Errorf("send %d: %s %q %s=%q; want %s %q k-1", i+1, d.method, d.body, tt.header, d.header.Get(tt.header), tt.method, tt.body)
				}
			}
			var wantClasses, wantDetails []string
			for i := range tt.maxAttempts {
				wantClasses = append(wantClasses, ClassReset)
				if i < tt.maxAttempts-1 {
					wantDetails = append(wantDetails, resentDetail)
				} else {
					wantDetails = append(wantDetails, notResentDetail)
				}
			}
			if got := classes(ex.Attempts); !reflect.DeepEqual(got, wantClasses) {
				t.Errorf("attempt classes %v, want %v", got, wantClasses)
			}
			if got := details(ex.Attempts); !reflect.DeepEqual(got, wantDetails) {
				t.Errorf("attempt details %q, want %q", got, wantDetails)
			}
			for i, a := range ex.Attempts {
				if a.Number != i+1 || a.Backoff != 0 {
					t.Errorf("attempt %d: Number %d, Backoff %v", i+1, a.Number, a.Backoff)
				}
			}
			if ex.Stopped != StopMaxAttempts || !ex.Sent {
				t.Errorf("Stopped %q, Sent %v; want %q, true", ex.Stopped, ex.Sent, StopMaxAttempts)
			}
			var ae *attemptError
			if !errors.As(ex.Err, &ae) || ae.class != ClassReset {
				t.Errorf("Err = %v, want the last send's reset", ex.Err)
			}
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("the refused re-send reads as a context error: %v", err)
			}
			if len(s.got()) != 0 {
				t.Errorf("slept %v: re-sends have no backoff, and nothing was retried", s.got())
			}
		})
	}
}

// TestTransportResendAfterAnAttemptCounts: a re-send that is granted uses
// up an attempt, so fetchd's own retries after it are fewer. One dead pooled
// connection, then an upstream that drops everything: the first attempt is
// two sends (the dead connection, then net/http's re-send on a new one),
// and one retry of fetchd's is left of three attempts.
func TestTransportResendAfterAnAttemptCounts(t *testing.T) {
	t.Parallel()
	up := newDeadPool(t, 1, false)
	c, s := up.client(t)
	up.fillPool(t, c)
	up.dropAll.Store(true)

	_, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil))
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("Do: %v, want *ExhaustedError", err)
	}
	if n := len(up.sends(t, c)); n != 3 {
		t.Errorf("the upstream received %d sends, want 3", n)
	}
	if got := classes(ex.Attempts); !reflect.DeepEqual(got, []string{ClassReset, ClassReset, ClassReset}) {
		t.Fatalf("attempts %v, want 3 resets", got)
	}
	if d := ex.Attempts[0].Detail; d != resentDetail {
		t.Errorf("first attempt's detail %q, want %q: net/http re-sent it", d, resentDetail)
	}
	if ex.Stopped != StopMaxAttempts {
		t.Errorf("Stopped %q, want %q", ex.Stopped, StopMaxAttempts)
	}
	// One backoff: before the third send, fetchd's only retry.
	if waits := s.got(); len(waits) != 1 || ex.Attempts[2].Backoff != waits[0] || ex.Attempts[1].Backoff != 0 {
		t.Errorf("waits %v, attempts %+v; want one wait, before the third send", waits, ex.Attempts)
	}
}

// TestTransportResendNeedsTheBudget: a re-send is a retry for the target's
// retry budget. With a budget that grants no retry, the dead connection's
// send is the only one; the result, the span of the Do and the metrics say
// the budget stopped it.
func TestTransportResendNeedsTheBudget(t *testing.T) {
	t.Parallel()
	tr, m := newTraced(t), newMetered(t)
	up := newDeadPool(t, 2, false)
	c, _ := up.client(t, WithTracerProvider(tr.tp), WithMeterProvider(m.mp))
	up.fillPool(t, c)
	tr.rec.Reset()

	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.Budget = Budget{Window: 10 * time.Second} // no ratio, no floor: no retry
	ctx, parent := tr.parent(context.Background())
	_, err := c.Do(ctx, req)
	parent.End()
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("Do: %v, want *ExhaustedError", err)
	}
	if n := len(up.sends(t, c)); n != 1 {
		t.Errorf("the upstream received %d sends, want 1", n)
	}
	want := []Attempt{{Number: 1, Error: ClassReset, Detail: notResentDetail}}
	got := append([]Attempt(nil), ex.Attempts...)
	for i := range got {
		got[i].Duration = 0
	}
	if !reflect.DeepEqual(got, want) || ex.Stopped != StopBudget {
		t.Errorf("attempts %+v, Stopped %q; want %+v, %q", got, ex.Stopped, want, StopBudget)
	}
	if n := up.conns.Load(); n != 2 {
		t.Errorf("%d connections, want the 2 of the pool", n)
	}

	spans := tr.clientSpans()
	if len(spans) != 1 {
		t.Fatalf("%d CLIENT spans, want 1: one send", len(spans))
	}
	if a := attrs(spans[0]); a["error.type"].AsString() != ClassReset || a["fetchd.transport_resend"].AsBool() {
		t.Errorf("span: error.type %v, fetchd.transport_resend %v; want reset, unset", a["error.type"].String(), a["fetchd.transport_resend"].String())
	}
	if got := events(tr.ended(t, "Fetch"), "fetchd.retry.stopped", "fetchd.retry.stopped.reason"); !reflect.DeepEqual(got, []string{StopBudget}) {
		t.Errorf("stop events %v, want [retry_budget]", got)
	}
	m.want(t, 1, "fetchd.outbound.refusals", "reason", StopBudget, "target.host", "127.0.0.1")
	m.want(t, 0, "fetchd.outbound.retries")
	m.want(t, 1, "fetchd.outbound.attempts", "outcome", ClassReset)
}

// TestTransportResendUsesUpTheBudget: a granted re-send counts as a retry.
// The budget's floor grants one retry a second (the clock stands still):
// the first re-send gets it, the second is refused.
func TestTransportResendUsesUpTheBudget(t *testing.T) {
	t.Parallel()
	m := newMetered(t)
	clock := newFakeClock()
	up := newDeadPool(t, 6, false)
	c, _ := up.client(t, WithNow(clock.now), WithMeterProvider(m.mp))
	up.fillPool(t, c)

	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.MaxAttempts = 5
	req.Policy.Budget = Budget{MinPerSecond: 1, Window: 10 * time.Second}
	_, err := c.Do(context.Background(), req)
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("Do: %v, want *ExhaustedError", err)
	}
	if n := len(up.sends(t, c)); n != 2 {
		t.Errorf("the upstream received %d sends, want 2", n)
	}
	if got, want := details(ex.Attempts), []string{resentDetail, notResentDetail}; !reflect.DeepEqual(got, want) || ex.Stopped != StopBudget {
		t.Errorf("attempts %q, Stopped %q; want %q, %q", got, ex.Stopped, want, StopBudget)
	}
	m.want(t, 1, "fetchd.outbound.retries", "reason", reasonTransportResend, "target.host", "127.0.0.1")
	m.want(t, 1, "fetchd.outbound.refusals", "reason", StopBudget)
	m.want(t, 2, "fetchd.outbound.attempts", "outcome", ClassReset)
}

// TestTransportResendNeedsTheBreaker: the failed send counts for the
// target's breaker before the re-send is asked for, and an open breaker
// refuses the re-send; the next call is refused without a send.
func TestTransportResendNeedsTheBreaker(t *testing.T) {
	t.Parallel()
	up := newDeadPool(t, 2, false)
	c, _ := up.client(t)
	up.fillPool(t, c)

	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.Breaker = Breaker{ConsecutiveFailures: 1, OpenFor: time.Hour}
	_, err := c.Do(context.Background(), req)
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("Do: %v, want *ExhaustedError", err)
	}
	if got, want := details(ex.Attempts), []string{notResentDetail}; !reflect.DeepEqual(got, want) || ex.Stopped != StopBreaker {
		t.Errorf("attempts %q, Stopped %q; want %q, %q", got, ex.Stopped, want, StopBreaker)
	}
	if n := len(up.drops()); n != 1 {
		t.Errorf("the upstream received %d sends, want 1", n)
	}

	_, err = c.Do(context.Background(), req)
	if !errors.As(err, &ex) || ex.Sent || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassBreakerOpen {
		t.Fatalf("second Do: %v; want refused by the open breaker, unsent", err)
	}
	if n := len(up.sends(t, c)); n != 1 {
		t.Errorf("the upstream received %d sends, want still 1", n)
	}
}

// TestHealthyTransportResend: one dead pooled connection, then a live one:
// net/http's re-send is granted within MaxAttempts and the budget, and
// succeeds; the budget counted it as a retry.
func TestHealthyTransportResend(t *testing.T) {
	t.Parallel()
	for _, maxAttempts := range []int{2, 3} {
		t.Run(fmt.Sprintf("max attempts %d", maxAttempts), func(t *testing.T) {
			t.Parallel()
			m := newMetered(t)
			up := newDeadPool(t, 1, false)
			c, s := up.client(t, WithMeterProvider(m.mp))
			up.fillPool(t, c)

			req := request(t, "GET", up.URL+"/", nil)
			req.Policy.MaxAttempts = maxAttempts
			req.Policy.Budget = Budget{Ratio: 0.5, Window: 10 * time.Second} // 2 requests: 1 retry
			resp, err := c.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 || string(resp.Body) != "fine" || resp.Stopped != "" {
				t.Errorf("got %d %q, Stopped %q; want 200 fine", resp.Status, resp.Body, resp.Stopped)
			}
			if got, want := classes(resp.Attempts), []string{ClassReset, "OK"}; !reflect.DeepEqual(got, want) {
				t.Errorf("attempts %v, want %v", got, want)
			}
			if n := len(up.drops()); n != 1 {
				t.Errorf("%d sends dropped, want 1", n)
			}
			if n := up.conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2: the dead one and the re-send's", n)
			}
			if len(s.got()) != 0 {
				t.Errorf("slept %v", s.got())
			}
			m.want(t, 1, "fetchd.outbound.retries", "reason", reasonTransportResend)
			m.want(t, 0, "fetchd.outbound.refusals")
		})
	}
}

// TestRefusedWritesSendNothing: a connection told to refuse writes sends
// no byte, over TCP and over TLS with HTTP/1.1; an HTTP/2 connection, shared
// by other requests, is left alone.
func TestRefusedWritesSendNothing(t *testing.T) {
	t.Parallel()
	t.Run("TCP", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		got := make(chan []byte, 1)
		go func() {
			conn, err := l.Accept()
			if err != nil {
				got <- nil
				return
			}
			b, _ := io.ReadAll(conn)
			conn.Close()
			got <- b
		}()
		raw, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn := &trackedConn{Conn: raw}
		refuseWrites(conn)
		if n, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); n != 0 || !errors.Is(err, errResendRefused) || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write = %d, %v; want 0, the refusal, as a closed connection to any other request", n, err)
		}
		select {
		case b := <-got:
			if len(b) != 0 {
				t.Errorf("the peer read %q", b)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("timed out waiting for the peer")
		}
	})
	for _, h2 := range []bool{false, true} {
		name := "TLS HTTP/1.1"
		if h2 {
			name = "TLS HTTP/2"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			closed := make(chan struct{}, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
			srv.EnableHTTP2 = h2
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateClosed {
					closed <- struct{}{}
				}
			}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			raw, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			tracked := &trackedConn{Conn: raw}
			cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
			cfg.NextProtos = []string{"h2", "http/1.1"}
			cfg.ServerName = "example.com" // in the test certificate
			conn := tls.Client(tracked, cfg)
			if err := conn.Handshake(); err != nil {
				t.Fatal(err)
			}
			refuseWrites(conn)
			if h2 {
				if tracked.noWrites.Load() {
					t.Error("an HTTP/2 connection refuses writes")
				}
				conn.Close()
				return
			}
			if n, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); n != 0 || !errors.Is(err, errResendRefused) {
				t.Errorf("Write = %d, %v; want 0, the refusal", n, err)
			}
			conn.Close()
			within(t, closed, "the server to see the connection closed")
			if n := requests.Load(); n != 0 {
				t.Errorf("the server handled %d requests", n)
			}
		})
	}
}
