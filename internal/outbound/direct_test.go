package outbound

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// directServer is an httptest server on 127.0.0.1 that counts the
// connections it accepted and reports each one that closed on closed.
type directServer struct {
	*httptest.Server
	accepted atomic.Int64
	closed   chan struct{}
}

func newDirectServer(t *testing.T, h http.HandlerFunc) *directServer {
	t.Helper()
	s := &directServer{closed: make(chan struct{}, 1000)}
	s.Server = httptest.NewUnstartedServer(h)
	countConns(s.Config, &s.accepted, s.closed)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// rawServer listens on 127.0.0.1:0 and runs serve on every connection it
// accepts, for answers net/http's server would not give. done is closed as
// the test ends; the connection is closed after serve returns.
func rawServer(t *testing.T, serve func(c net.Conn, done <-chan struct{})) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				serve(c, done)
			})
		}
	})
	t.Cleanup(func() {
		close(done)
		l.Close()
		wg.Wait()
	})
	return l.Addr().String(), accepted
}

// readRequest reads a request's headers off c, leaving its body unread.
func readRequest(br *bufio.Reader) bool {
	_, err := http.ReadRequest(br)
	return err == nil
}

func newDirect(t *testing.T, maxConns int) *directTransport {
	var d net.Dialer
	tr := newDirectTransport(d.DialContext, maxConns, time.Minute, 64<<10)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// directStats returns the transport's connections, idle ones and waiting requests.
func directStats(tr *directTransport) (conns, idle, wants int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.conns, len(tr.idle), len(tr.wants)
}

func wantStats(t *testing.T, tr *directTransport, conns, idle int) {
	t.Helper()
	if c, i, w := directStats(tr); c != conns || i != idle || w != 0 {
		t.Fatalf("transport has %d connections, %d idle, %d waiting; want %d, %d, 0", c, i, w, conns, idle)
	}
}

func roundTrip(ctx context.Context, tr http.RoundTripper, method, url string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	return tr.RoundTrip(req)
}

// readAll reads resp's body to its end and closes it. It may be called from
// any goroutine: a failure is reported with Errorf.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("reading body: %v", err)
	}
	return string(b)
}

// recorder records trace events in order.
type recorder struct {
	mu     sync.Mutex
	events []string
	conns  []net.Conn
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

func (r *recorder) trace(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(hostPort string) { r.add("GetConn " + hostPort) },
		GotConn: func(info httptrace.GotConnInfo) {
			r.mu.Lock()
			r.conns = append(r.conns, info.Conn)
			r.mu.Unlock()
			r.add(fmt.Sprintf("GotConn reused=%t idle=%t", info.Reused, info.WasIdle))
		},
		WroteHeaders:         func() { r.add("WroteHeaders") },
		WroteRequest:         func(info httptrace.WroteRequestInfo) { r.add(fmt.Sprintf("WroteRequest %v", info.Err)) },
		GotFirstResponseByte: func() { r.add("GotFirstResponseByte") },
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			r.add(fmt.Sprintf("Got1xxResponse %d %s", code, h.Get("Link")))
			return nil
		},
		PutIdleConn: func(err error) { r.add(fmt.Sprintf("PutIdleConn %v", err)) },
	})
}

func TestDirectExchangeReusesConnection(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	var dialled []net.Conn
	var d net.Dialer
	tr := newDirectTransport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		dialled = append(dialled, c) // one request at a time
		return c, err
	}, 0, time.Minute, 64<<10)
	t.Cleanup(tr.CloseIdleConnections)
	rec := &recorder{}
	hostPort := strings.TrimPrefix(s.URL, "http://")
	for i, reused := range []bool{false, true, true} {
		resp, err := roundTrip(rec.trace(context.Background()), tr, "GET", s.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "hello" {
			t.Fatalf("body = %q", got)
		}
		want := []string{
			"GetConn " + hostPort,
			fmt.Sprintf("GotConn reused=%t idle=%t", reused, reused),
			"WroteHeaders", "WroteRequest <nil>", "GotFirstResponseByte", "PutIdleConn <nil>",
		}
		if got := rec.take(); !slicesEqual(got, want) {
			t.Fatalf("request %d: trace\n%q\nwant\n%q", i, got, want)
		}
		wantStats(t, tr, 1, 1)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("3 sequential GETs opened %d connections", n)
	}
	if len(dialled) != 1 || rec.conns[0] != dialled[0] || rec.conns[2] != dialled[0] {
		t.Fatalf("GotConn reported %v, dial returned %v", rec.conns, dialled)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func TestDirectSkipsInformationalAnswers(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "final")
	})
	tr := newDirect(t, 0)
	rec := &recorder{}
	resp, err := roundTrip(rec.trace(context.Background()), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || readAll(t, resp) != "final" {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := rec.take()
	if !slicesEqual(got[4:6], []string{"GotFirstResponseByte", "Got1xxResponse 103 </style.css>; rel=preload"}) {
		t.Fatalf("trace %q", got)
	}
	wantStats(t, tr, 1, 1)
}

func TestDirectBodilessAnswerReleasesConnectionOnce(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/empty":
			w.Header().Set("Content-Length", "0")
		case "/chunked-empty":
			w.(http.Flusher).Flush() // headers go out chunked; the body is the last chunk alone
		default:
			io.WriteString(w, "body of a GET") // a HEAD gets its length only
		}
	})
	tr := newDirect(t, 0)
	var bodies []io.Closer
	for _, tc := range []struct{ method, path string }{{"HEAD", "/"}, {"GET", "/204"}, {"GET", "/304"}, {"GET", "/empty"}} {
		resp, err := roundTrip(context.Background(), tr, tc.method, s.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Body != http.NoBody {
			t.Fatalf("%s %s: body %T, want http.NoBody", tc.method, tc.path, resp.Body)
		}
		wantStats(t, tr, 1, 1) // released already, the body unread and open
		bodies = append(bodies, resp.Body)
	}
	resp, err := roundTrip(context.Background(), tr, "GET", s.URL+"/chunked-empty", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantStats(t, tr, 1, 0) // the body's end is not read yet
	if n, err := resp.Body.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read = %d, %v", n, err)
	}
	wantStats(t, tr, 1, 1)
	if n, err := resp.Body.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read again = %d, %v", n, err)
	}
	bodies = append(bodies, resp.Body, resp.Body)
	for _, b := range bodies {
		b.Close()
	}
	wantStats(t, tr, 1, 1)
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestDirectBodyClosedEarlyClosesConnection(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 256<<10)
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
	tr := newDirect(t, 0)
	resp, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantStats(t, tr, 0, 0)
	if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, errBodyClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	within(t, s.closed, "the server to see the close")
	resp, err = roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); len(got) != len(big) {
		t.Fatalf("body of %d bytes", len(got))
	}
	wantStats(t, tr, 1, 1)
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestDirectCloseAskedForClosesConnection(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bye" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "ok")
	})
	tr := newDirect(t, 0)
	req, _ := http.NewRequest("GET", s.URL+"/", nil)
	req.Close = true
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	wantStats(t, tr, 0, 0)

	req, _ = http.NewRequest("GET", s.URL+"/", nil)
	req.Header.Set("Connection", "close")
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	wantStats(t, tr, 0, 0)

	resp, err = roundTrip(context.Background(), tr, "GET", s.URL+"/bye", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Close {
		t.Fatal("resp.Close is false")
	}
	readAll(t, resp)
	wantStats(t, tr, 0, 0)
	if n := s.accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

func TestDirectMaxConns(t *testing.T) {
	t.Parallel()
	var active, most atomic.Int32
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := active.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		io.WriteString(w, "ok")
		active.Add(-1)
	})
	tr := newDirect(t, 2)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 8 {
				resp, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
				if err != nil {
					t.Error(err)
					return
				}
				if got := readAll(t, resp); got != "ok" {
					t.Errorf("body %q", got)
				}
			}
		})
	}
	wg.Wait()
	if n := s.accepted.Load(); n > 2 {
		t.Fatalf("%d connections accepted, limit 2", n)
	}
	if n := most.Load(); n > 2 {
		t.Fatalf("%d requests at once, limit 2", n)
	}
	if c, i, w := directStats(tr); c != i || c > 2 || w != 0 {
		t.Fatalf("%d connections, %d idle, %d waiting", c, i, w)
	}
}

// waitUntil spins until cond holds: the wait is for another goroutine to get
// somewhere, not for time to pass. The bound only guards against a hang.
func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func TestDirectWaitersAreServedInOrder(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	tr := newDirect(t, 1)
	held, err := roundTrip(context.Background(), tr, "GET", s.URL+"/held", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	results := make(chan string, 2)
	for i, path := range []string{"/first", "/second"} {
		go func() {
			resp, err := roundTrip(rec.trace(context.Background()), tr, "GET", s.URL+path, nil)
			if err != nil {
				results <- err.Error()
				return
			}
			results <- readAll(t, resp)
		}()
		waitUntil(t, func() bool { _, _, w := directStats(tr); return w == i+1 }, "the request to wait")
	}
	readAll(t, held)
	for _, want := range []string{"/first", "/second"} {
		select {
		case got := <-results:
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiting request never got the connection")
		}
	}
	wantStats(t, tr, 1, 1)
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

var errGaveUp = errors.New("caller gave up")

// TestDirectWaitEndsWithContext cancels a request waiting for the one
// connection as the connection is released. Whichever comes first, the
// request fails with its context's cause, and the connection ends idle, or
// closed if the request got it and its cancellation spoilt it: never lost.
func TestDirectWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newDirect(t, 1)
	for range 50 {
		held, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancelCause(context.Background())
		errc := make(chan error, 1)
		go func() {
			resp, err := roundTrip(ctx, tr, "GET", s.URL+"/", nil)
			if err == nil {
				// Handed the connection and answered before the cancel:
				// the release won the race, which is as good.
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil {
					err = errAnswered
				}
			}
			errc <- err
		}()
		waitUntil(t, func() bool { _, _, w := directStats(tr); return w == 1 }, "the request to wait")
		released := make(chan struct{})
		go func() {
			readAll(t, held)
			close(released)
		}()
		cancel(errGaveUp)
		select {
		case err := <-errc:
			if err != errAnswered && (!errors.Is(err, errGaveUp) || !errors.Is(err, context.Canceled)) {
				t.Fatalf("err = %v, want the cause and context.Canceled (or an answer)", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the waiting request did not end")
		}
		within(t, released, "the held body to be read")
		if c, i, w := directStats(tr); c != i || c > 1 || w != 0 {
			t.Fatalf("transport has %d connections, %d idle, %d waiting", c, i, w)
		}
	}
}

// errAnswered stands for an answer read in full where a test accepts one.
var errAnswered = errors.New("answered")

// endedCtx ends (Err) when told to, without closing Done: a request that
// waits on it sees its end only once it is handed a connection or a place
// to dial one.
type endedCtx struct {
	context.Context
	ended atomic.Bool
}

func (c *endedCtx) Err() error {
	if c.ended.Load() {
		return context.Canceled
	}
	return nil
}

// TestDirectHandOff frees the one connection (released, or closed) while a
// request waits for it: the request gets it, or the place to dial one; or,
// if its context ended meanwhile, passes it on.
func TestDirectHandOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		close, ended bool
		conns, idle  int // after
	}{
		{"released", false, false, 1, 1},
		{"closed", true, false, 1, 1},
		{"released to an ended request", false, true, 1, 1},
		{"closed with an ended request waiting", true, true, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			tr := newDirect(t, 1)
			held, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := &endedCtx{Context: context.Background()}
			errc := make(chan error, 1)
			go func() {
				resp, err := roundTrip(ctx, tr, "GET", s.URL+"/", nil)
				if err == nil {
					readAll(t, resp)
				}
				errc <- err
			}()
			waitUntil(t, func() bool { _, _, w := directStats(tr); return w == 1 }, "the request to wait")
			ctx.ended.Store(tc.ended)
			if tc.close {
				held.Body.Close()
			} else {
				readAll(t, held)
			}
			select {
			case err := <-errc:
				if tc.ended != errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the waiting request did not end")
			}
			wantStats(t, tr, tc.conns, tc.idle)
		})
	}
}

func TestDirectIdleTimeout(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newDirect(t, 0)
	clock := newFakeClock()
	tr.now = clock.now
	get := func() {
		t.Helper()
		resp, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	get()
	clock.advance(time.Minute)
	get() // idle for exactly the timeout: reused
	clock.advance(time.Minute + 1)
	get()
	within(t, s.closed, "the expired connection to close")
	if n := s.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	wantStats(t, tr, 1, 1)

	// The oldest idle connection expires when another is put back, too:
	// under load the newest would serve every request and it would stay.
	a, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, a)
	clock.advance(time.Minute + 1)
	readAll(t, b)
	wantStats(t, tr, 1, 1)
	within(t, s.closed, "the expired connection to close")

	// With no request to look at them, the reaper closes them: one timer
	// per transport, armed while connections are idle (its firing is
	// called here, the clock being fake).
	tr.mu.Lock()
	armed := tr.reaping
	tr.mu.Unlock()
	if !armed {
		t.Fatal("the reaper is not armed with a connection idle")
	}
	clock.advance(time.Minute)
	tr.reap() // idle for exactly the timeout: kept
	wantStats(t, tr, 1, 1)
	clock.advance(1)
	tr.reap()
	wantStats(t, tr, 0, 0)
	within(t, s.closed, "the reaped connection to close")
	tr.mu.Lock()
	armed = tr.reaping
	tr.mu.Unlock()
	if armed {
		t.Fatal("the reaper is still armed with no connection idle")
	}
}

// TestDirectStaleConnectionIsReplaced spoils an idle connection at the
// server (closes it, or sends bytes on it that nobody asked for) and checks
// that the next request dials a new one instead of failing on it.
func TestDirectStaleConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		spoil func(c net.Conn)
	}{
		{"closed by server", func(c net.Conn) { c.Close() }},
		{"bytes nobody asked for", func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\n") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spoil, spoilt := make(chan struct{}), make(chan struct{})
			addr, accepted := rawServer(t, func(c net.Conn, done <-chan struct{}) {
				if !readRequest(bufio.NewReader(c)) {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				select {
				case <-spoil:
				case <-done:
					return
				}
				tc.spoil(c)
				spoilt <- struct{}{}
				<-done
			})
			tr := newDirect(t, 0)
			for range 2 {
				resp, err := roundTrip(context.Background(), tr, "GET", "http://"+addr+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := readAll(t, resp); got != "ok" {
					t.Fatalf("body %q", got)
				}
				wantStats(t, tr, 1, 1)
				spoil <- struct{}{}
				within(t, spoilt, "the server to spoil the connection")
			}
			if n := accepted.Load(); n != 2 {
				t.Fatalf("%d connections, want 2", n)
			}
		})
	}
}

// failingBody is a request body whose Read fails after its first bytes;
// gotBody counts the bodies GetBody handed out.
func failingBody(gotBody *atomic.Int32) (io.ReadCloser, func() (io.ReadCloser, error)) {
	body := func() io.ReadCloser {
		return io.NopCloser(io.MultiReader(strings.NewReader("par"), iotest.ErrReader(errors.New("disk gone"))))
	}
	return body(), func() (io.ReadCloser, error) { gotBody.Add(1); return body(), nil }
}

// The direct transport re-sends at once, on another connection, a
// replayable request it wrote whole on a reused connection that the server
// then closed without an answer, as net/http's Transport does; a POST
// without an idempotency header, and a request whose own write failed, are
// not re-sent. No trace is set here: nothing bounds the re-sends but the
// reused connections there are, and the one dialled for the re-send is
// answered.
func TestDirectResendsReplayableRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		method  string
		body    string
		header  string // an idempotency header to send
		failing bool   // the body's Read fails
		resent  bool
	}{
		{name: "GET", method: "GET", resent: true},
		{name: "HEAD", method: "HEAD", resent: true},
		{name: "POST with Idempotency-Key", method: "POST", body: "charge=1", header: "Idempotency-Key", resent: true},
		{name: "PUT with X-Idempotency-Key", method: "PUT", body: "charge=1", header: "X-Idempotency-Key", resent: true},
		{name: "POST without a key", method: "POST", body: "charge=1"},
		{name: "GET whose body fails", method: "GET", failing: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var seen []string // method and body of every request the server read whole
			// Each connection answers its first request and reads its second
			// whole, then closes without an answer.
			addr, accepted := rawServer(t, func(c net.Conn, done <-chan struct{}) {
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, err := io.ReadAll(req.Body)
					if err != nil {
						return
					}
					mu.Lock()
					seen = append(seen, req.Method+" "+string(body))
					mu.Unlock()
					if n > 1 {
						return
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				}
			})
			tr := newDirect(t, 0)
			url := "http://" + addr + "/"
			resp, err := roundTrip(context.Background(), tr, "GET", url, nil)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			wantStats(t, tr, 1, 1)

			req, err := http.NewRequest(tc.method, url, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set(tc.header, "k1")
			}
			var gotBody atomic.Int32
			if tc.failing {
				req.Body, req.GetBody = failingBody(&gotBody)
				req.ContentLength = 10
			}
			resp, err = tr.RoundTrip(req)
			if !tc.resent {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("answered %d, want the failure of the first send", resp.StatusCode)
				}
				if n := accepted.Load(); n != 1 || gotBody.Load() != 0 {
					t.Fatalf("%d connections, GetBody called %d times, after %v; want no re-send", n, gotBody.Load(), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v, want the re-send's answer", err)
			}
			if resp.Request != req {
				t.Error("the answer's Request is not the request sent")
			}
			want := tc.body
			if tc.method == "HEAD" {
				want = ""
			}
			if got := readAll(t, resp); got != want {
				t.Fatalf("answer %q, want %q", got, want)
			}
			mu.Lock()
			defer mu.Unlock()
			sent := tc.method + " " + tc.body
			if len(seen) != 3 || seen[1] != sent || seen[2] != sent || accepted.Load() != 2 {
				t.Fatalf("server read %q on %d connections, want the first GET, then %q twice on 2", seen, accepted.Load(), sent)
			}
		})
	}
}

func TestDirectContextInterruptsExchange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		reply string // then the server stalls
	}{
		{"stalled headers", ""},
		{"stalled body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan struct{}, 1)
			addr, _ := rawServer(t, func(c net.Conn, done <-chan struct{}) {
				if !readRequest(bufio.NewReader(c)) {
					return
				}
				io.WriteString(c, tc.reply)
				got <- struct{}{}
				<-done
			})
			tr := newDirect(t, 0)
			ctx, cancel := context.WithCancelCause(context.Background())
			go func() {
				<-got
				if tc.reply == "" {
					cancel(errGaveUp)
				}
			}()
			resp, err := roundTrip(ctx, tr, "GET", "http://"+addr+"/", nil)
			if tc.reply != "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
					t.Fatal(err)
				}
				go cancel(errGaveUp)
				_, err = resp.Body.Read(make([]byte, 10))
				if _, err2 := resp.Body.Read(make([]byte, 10)); err2 != err {
					t.Fatalf("second Read: %v, first %v", err2, err)
				}
				resp.Body.Close()
			}
			if !errors.Is(err, errGaveUp) || !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want the cause and context.Canceled", err)
			}
			wantStats(t, tr, 0, 0)
		})
	}
}

func TestDirectContextEndAfterBodyKeepsConnection(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newDirect(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := roundTrip(ctx, tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	cancel()
	if _, err := roundTrip(ctx, tr, "GET", s.URL+"/", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("ended context: err = %v", err)
	}
	resp, err = roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestDirectHeaderLimit(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("b", 64<<10))
		io.WriteString(w, "ok")
	})
	var d net.Dialer
	tr := newDirectTransport(d.DialContext, 0, time.Minute, 16<<10)
	_, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if !errors.Is(err, errHeadersTooLarge) {
		t.Fatalf("err = %v, want errHeadersTooLarge", err)
	}
	wantStats(t, tr, 0, 0)

	tr = newDirectTransport(d.DialContext, 0, time.Minute, 128<<10)
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "ok" {
		t.Fatalf("body %q", got)
	}
}

func TestDirectEarlyAnswerWhileWriting(t *testing.T) {
	t.Parallel()
	addr, _ := rawServer(t, func(c net.Conn, _ <-chan struct{}) {
		if readRequest(bufio.NewReader(c)) { // the body is left unread: the close resets
			io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		}
	})
	var conn *writeFailures
	var d net.Dialer
	tr := newDirectTransport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		conn = &writeFailures{Conn: c}
		return conn, err
	}, 0, time.Minute, 0)
	resp, err := roundTrip(context.Background(), tr, "POST", "http://"+addr+"/", bytes.NewReader(make([]byte, 32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if conn.failed.Load() == 0 {
		t.Fatal("the request was written whole: the test did not test a failed write")
	}
	wantStats(t, tr, 0, 0)
}

// writeFailures counts its failed writes.
type writeFailures struct {
	net.Conn
	failed atomic.Int32
}

func (c *writeFailures) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.failed.Add(1)
	}
	return n, err
}

func TestDirectRequestBodies(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %v %s", r.ContentLength, r.TransferEncoding, b)
	})
	tr := newDirect(t, 0)
	for _, tc := range []struct {
		body io.Reader
		want string
	}{
		{strings.NewReader("hello"), "5 [] hello"},
		{io.MultiReader(strings.NewReader("hel"), strings.NewReader("lo")), "-1 [chunked] hello"},
	} {
		resp, err := roundTrip(context.Background(), tr, "POST", s.URL+"/", tc.body)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != tc.want {
			t.Fatalf("echo %q, want %q", got, tc.want)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	// A body that fails to read fails the round trip with its error (which
	// Request.Write wraps in a type that does not unwrap), and the
	// connection, with half a request written, is closed.
	broken := errors.New("body source broke")
	_, err := roundTrip(context.Background(), tr, "POST", s.URL+"/", io.MultiReader(strings.NewReader("hel"), iotest.ErrReader(broken)))
	if err == nil || !strings.HasSuffix(err.Error(), broken.Error()) {
		t.Fatalf("err = %v, want the body's", err)
	}
	wantStats(t, tr, 0, 0)
}

func TestDirectCloseIdleConnections(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newDirect(t, 0)
	var resps []*http.Response
	for range 3 {
		resp, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, resp)
	}
	readAll(t, resps[0])
	readAll(t, resps[1])
	wantStats(t, tr, 3, 2)
	tr.CloseIdleConnections()
	wantStats(t, tr, 1, 0)
	within(t, s.closed, "an idle connection to close")
	within(t, s.closed, "an idle connection to close")
	readAll(t, resps[2]) // busy then: closed as its exchange ends
	wantStats(t, tr, 0, 0)
	within(t, s.closed, "the connection busy at CloseIdleConnections to close")

	// A request since: connections are pooled again.
	resp, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	wantStats(t, tr, 1, 1)
}

func TestDirectTarget(t *testing.T) {
	t.Parallel()
	refused := errors.New("no dialling here")
	var addrs []string
	tr := newDirectTransport(func(_ context.Context, _, addr string) (net.Conn, error) {
		addrs = append(addrs, addr)
		return nil, refused
	}, 1, time.Minute, 0)
	rec := &recorder{}
	body := &closeCounter{Reader: strings.NewReader("x")}
	req, _ := http.NewRequestWithContext(rec.trace(context.Background()), "POST", "http://Example.invalid/x", body)
	if _, err := tr.RoundTrip(req); !errors.Is(err, refused) {
		t.Fatalf("err = %v", err)
	}
	if _, err := roundTrip(context.Background(), tr, "GET", "http://[::1]/", nil); err == nil || !strings.Contains(err.Error(), "asked for [::1]:80") {
		t.Fatalf("another target: err = %v", err)
	}
	if _, err := roundTrip(context.Background(), tr, "GET", "https://example.invalid/", nil); err == nil {
		t.Fatal("https accepted")
	}
	if len(addrs) != 1 || addrs[0] != "example.invalid:80" || rec.take()[0] != "GetConn example.invalid:80" || body.closed != 1 {
		t.Fatalf("dialled %q, body closed %d times", addrs, body.closed)
	}
	wantStats(t, tr, 0, 0)
}

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

// TestDirectErrorsClassify checks that fetchd's classify names the
// transport's real failures as it does net/http's.
func TestDirectErrorsClassify(t *testing.T) {
	t.Parallel()
	huge := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 32<<10) + "\r\n\r\n"
	for _, tc := range []struct {
		name  string
		serve func(c net.Conn) // after reading the request; then the connection closes
		body  bool             // the failure is the body's
		want  string
	}{
		{"reset before answer", func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) }, false, ClassReset},
		{"closed before answer", func(net.Conn) {}, false, ClassReset},
		{"closed while the request is written", func(net.Conn) {}, false, ClassReset}, // a POST of 32 MiB
		{"closed in headers", func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-") }, false, ClassReset},
		{"malformed status", func(c net.Conn) { io.WriteString(c, "HTTP/1.1 abc\r\n\r\n"); c.Read(make([]byte, 1)) }, false, ClassProtocol},
		{"headers too large", func(c net.Conn) { io.WriteString(c, huge); c.Read(make([]byte, 1)) }, false, ClassProtocol},
		{"closed in body", func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc") }, true, ClassReset},
		{"reset in body", func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
			c.Read(make([]byte, 1)) // until the client has the headers and stops reading: then the reset
			c.(*net.TCPConn).SetLinger(0)
		}, true, ClassReset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, _ := rawServer(t, func(c net.Conn, _ <-chan struct{}) {
				if readRequest(bufio.NewReader(c)) {
					tc.serve(c)
				}
			})
			var conn net.Conn
			var d net.Dialer
			tr := newDirectTransport(func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				conn = &trackedConn{Conn: c} // as fetchd's dial
				return conn, nil
			}, 0, time.Minute, 16<<10)
			method, body := "GET", io.Reader(nil)
			if strings.Contains(tc.name, "written") {
				method, body = "POST", bytes.NewReader(make([]byte, 32<<20))
			}
			resp, err := roundTrip(context.Background(), tr, method, "http://"+addr+"/", body)
			if tc.body {
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "reset in body" {
					// The server's read waits for more: a TCP half-close tells it to reset now.
					conn.(*trackedConn).Conn.(*net.TCPConn).CloseWrite()
				}
				_, err = io.ReadAll(resp.Body)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if got := classify(err, true, connReadErr(conn)); got != tc.want {
				t.Fatalf("classify(%v) = %q, want %q", err, got, tc.want)
			}
			wantStats(t, tr, 0, 0)
		})
	}
}

// BenchmarkDirectTransport compares directTransport with net/http's
// Transport for a GET of a 1 KiB body from a local server, serially and in
// parallel, the body read to its end and closed each time:
//
//	go test -run '^$' -bench BenchmarkDirectTransport -benchmem -count 3 ./internal/outbound/
func BenchmarkDirectTransport(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	var d net.Dialer
	direct := newDirectTransport(d.DialContext, 0, 90*time.Second, 64<<10)
	defer direct.CloseIdleConnections()
	std := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 1024}
	defer std.CloseIdleConnections()
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{{"direct", direct}, {"net-http", std}} {
		get := func() error {
			resp, err := roundTrip(context.Background(), rt.rt, "GET", srv.URL+"/", nil)
			if err != nil {
				return err
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && n != int64(len(body)) {
				err = fmt.Errorf("body of %d bytes", n)
			}
			return err
		}
		b.Run(rt.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := get(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(rt.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// largeOnly is a transport that answers 299 to every request it is given.
type largeOnly struct{ got atomic.Int64 }

func (l *largeOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	l.got.Add(1)
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{StatusCode: 299, Body: http.NoBody, Request: req}, nil
}

func (l *largeOnly) CloseIdleConnections() {}

// A body over directMaxBody goes to the transport for large bodies, which
// reads an early answer while it writes; one of directMaxBody does not.
func TestDirectLargeBodies(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	tr := newDirect(t, 0)
	large := &largeOnly{}
	tr.large = large
	for _, n := range []int{directMaxBody, directMaxBody + 1} {
		req, _ := http.NewRequest("POST", s.URL+"/", bytes.NewReader(make([]byte, n)))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 200
		if n > directMaxBody {
			want = 299
		}
		if resp.StatusCode != want {
			t.Errorf("%d bytes: status %d, want %d", n, resp.StatusCode, want)
		}
	}
	if large.got.Load() != 1 {
		t.Errorf("the large-body transport got %d requests, want 1", large.got.Load())
	}
}

// Requests net/http's Transport refuses are refused before a connection is
// taken: nothing is written.
func TestDirectRefusesInvalidRequests(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newDirect(t, 0)
	for name, edit := range map[string]func(*http.Request){
		"method with a line break": func(r *http.Request) { r.Method = "GET\r\nX-Injected: 1" },
		"header name with a space": func(r *http.Request) { r.Header["Bad Name"] = []string{"x"} },
		"value with a line break":  func(r *http.Request) { r.Header.Set("X-Value", "a\r\nX-Injected: 1") },
		"value with a NUL":         func(r *http.Request) { r.Header.Set("X-Value", "a\x00b") },
	} {
		req, _ := http.NewRequest("GET", s.URL+"/", nil)
		edit(req)
		rec := &recorder{}
		if _, err := tr.RoundTrip(req.WithContext(rec.trace(context.Background()))); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s: err = %v", name, err)
		}
		for _, e := range rec.take() {
			if strings.HasPrefix(e, "GotConn") {
				t.Errorf("%s: a connection was taken", name)
			}
		}
	}
	if n := s.accepted.Load(); n != 0 {
		t.Errorf("%d connections dialled, want none", n)
	}
}

// An idle connection the upstream closed is closed by the reaper's next
// look, not kept (and its descriptor held) until the idle timeout.
func TestDirectReaperClosesWhatTheUpstreamClosed(t *testing.T) {
	t.Parallel()
	s := newDirectServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newDirect(t, 0)
	resp, err := roundTrip(context.Background(), tr, "GET", s.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	tr.reap() // alive: kept
	wantStats(t, tr, 1, 1)
	s.CloseClientConnections()
	within(t, s.closed, "the upstream to close the connection")
	waitUntil(t, func() bool { tr.reap(); c, _, _ := directStats(tr); return c == 0 }, "the reaper to close the connection")
	wantStats(t, tr, 0, 0)
	tr.mu.Lock()
	armed := tr.reaping
	tr.mu.Unlock()
	if armed {
		t.Fatal("the reaper is still armed with no connection idle")
	}
}
