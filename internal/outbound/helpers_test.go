package outbound

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/egress"

	"github.com/fetchd/fetchd/internal/nettest"
)

// loopback is a guard that lets test servers on 127.0.0.0/8 through.
func loopback() *egress.Guard {
	return egress.New(egress.WithAllow(netip.MustParsePrefix("127.0.0.0/8")))
}

// sleeps records backoff waits and returns at once (or with the context's
// error), so tests assert waits exactly without spending them.
type sleeps struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// halfJitter is a deterministic jitter: half the limit.
func halfJitter(limit time.Duration) time.Duration { return limit / 2 }

// testDirectHTTP makes newClient's Clients send to plain-HTTP targets with
// the direct transport: FETCHD_TEST_DIRECT_HTTP=1 runs the package's tests
// over it (.ci/run runs them both ways). Tests about net/http's own
// behaviour ask for WithDirectHTTP(false).
var testDirectHTTP = os.Getenv("FETCHD_TEST_DIRECT_HTTP") == "1"

// newClient returns a Client on the loopback guard with recorded sleeps and
// half jitter, closed when the test ends.
func newClient(t *testing.T, opts ...Option) (*Client, *sleeps) {
	t.Helper()
	s := &sleeps{}
	c := New(loopback(), append([]Option{WithSleep(s.sleep), WithJitter(halfJitter), WithDirectHTTP(testDirectHTTP)}, opts...)...)
	t.Cleanup(c.Close)
	return c, s
}

// policy is the default policy of fetchd with test-sized bodies.
func policy() Policy {
	return Policy{
		ConnectTimeout:   3 * time.Second,
		ReadTimeout:      10 * time.Second,
		AttemptTimeout:   10 * time.Second,
		TotalTimeout:     30 * time.Second,
		MaxAttempts:      3,
		InitialBackoff:   100 * time.Millisecond,
		MaxBackoff:       10 * time.Second,
		Multiplier:       2,
		RetryOn:          []int{429, 500, 502, 503, 504},
		MaxRetryAfter:    60 * time.Second,
		MaxResponseBytes: 1 << 20,
	}
}

// request builds a Request for raw, validated like the service does.
func request(t *testing.T, method, raw string, body []byte) *Request {
	t.Helper()
	u, err := egress.ParseURL(raw)
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", raw, err)
	}
	return &Request{Method: method, URL: u, Header: http.Header{}, Body: body, Policy: policy()}
}

// upstream is a scripted test server: request i is answered by step i (the
// last step repeats). It records what it received and counts connections.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	steps  []http.HandlerFunc
	reqs   []seen
	conns  atomic.Int64 // connections opened (StateNew)
	closed chan struct{}
}

type seen struct {
	method string
	host   string
	uri    string // the request URI: path and query
	header http.Header
	body   []byte
}

// countConns makes srv count the connections it accepts in accepted and
// tell closed of each one that closes (or is hijacked).
func countConns(srv *http.Server, accepted *atomic.Int64, closed chan<- struct{}) {
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			accepted.Add(1)
		case http.StateClosed, http.StateHijacked:
			closed <- struct{}{}
		}
	}
}

func newUpstream(t *testing.T, steps ...http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{steps: steps, closed: make(chan struct{}, 1024)}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	countConns(u.Config, &u.conns, u.closed)
	u.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	i := len(u.reqs)
	u.reqs = append(u.reqs, seen{method: r.Method, host: r.Host, uri: r.RequestURI, header: r.Header.Clone(), body: body})
	step := u.steps[min(i, len(u.steps)-1)]
	u.mu.Unlock()
	step(w, r)
}

func (u *upstream) seen() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

// status answers with code and a short body, plus header pairs.
func status(code int, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code))
	}
}

// reset hijacks the connection and closes it with an RST, without answering.
func reset(w http.ResponseWriter, r *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}

// hang waits until the request is cancelled, then says so on done.
func hang(done chan<- struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		if done != nil {
			done <- struct{}{}
		}
	}
}

// refusedURL returns a URL on a port where nothing listens.
func refusedURL(t *testing.T) string {
	return "http://" + nettest.RefusedAddr(t) + "/"
}

// classes lists the attempts' statuses and classes, for compact assertions.
func classes(as []Attempt) []string {
	var out []string
	for _, a := range as {
		if a.Error != "" {
			out = append(out, a.Error)
		} else {
			out = append(out, http.StatusText(a.Status))
		}
	}
	return out
}

// within fails the test if ch does not deliver in time. The bound only
// guards against a hung test; nothing waits for it to pass.
func within[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func parseURL(raw string) (*url.URL, error) { return egress.ParseURL(raw) }

func benchPolicy() Policy { return policy() }

// fakeClock is a clock that stands still until advanced. It starts at the
// real time, so that contexts' deadlines (which use the real clock) agree
// with it as long as the test does not advance it past them.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// counting answers request i (from 1) with answer(i) and counts requests.
type counting struct {
	*httptest.Server
	n atomic.Int64
}

func newCounting(t *testing.T, answer func(i int64) int) *counting {
	t.Helper()
	c := &counting{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status(answer(c.n.Add(1)))(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

// always answers every request with code.
func always(code int) func(int64) int { return func(int64) int { return code } }

// stops lists how many calls ended with each Stopped value.
type stops struct {
	mu sync.Mutex
	by map[string]int
}

func (s *stops) add(stop string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[string]int{}
	}
	s.by[stop]++
}

func (s *stops) get(stop string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.by[stop]
}
