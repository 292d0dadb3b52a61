package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	opErr := func(op string, err error) error { return &net.OpError{Op: op, Net: "tcp", Err: err} }
	viaURL := func(err error) error { return &url.Error{Op: "Get", URL: "http://h/?token=s3cret", Err: err} }
	denied := &egress.DeniedError{Host: "h", Addr: netip.MustParseAddr("10.0.0.1"), Reason: "private address"}
	tests := []struct {
		name    string
		err     error
		onConn  bool
		connErr error
		want    string
	}{
		{"refused", viaURL(&dialError{err: opErr("dial", os.NewSyscallError("connect", syscall.ECONNREFUSED))}), false, nil, ClassConnectRefused},
		{"dns", viaURL(&dialError{err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}), false, nil, ClassDNS},
		{"dns timeout is dns", viaURL(&dialError{err: &net.DNSError{Err: "i/o timeout", IsTimeout: true}}), false, nil, ClassDNS},
		{"denied at dial", viaURL(&dialError{err: opErr("dial", denied)}), false, nil, ClassDenied},
		{"denied plain", denied, false, nil, ClassDenied},
		{"connect timeout", viaURL(&dialError{err: opErr("dial", os.ErrDeadlineExceeded)}), false, nil, ClassConnectTimeout},
		{"connect ctx deadline", viaURL(&dialError{err: context.DeadlineExceeded}), false, nil, ClassConnectTimeout},
		{"handshake timeout", viaURL(&dialError{err: context.DeadlineExceeded, handshake: true}), false, nil, ClassConnectTimeout},
		{"handshake unknown authority", viaURL(&dialError{err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, handshake: true}), false, nil, ClassTLS},
		{"handshake alert", viaURL(&dialError{err: opErr("remote error", errors.New("tls: handshake failure")), handshake: true}), false, nil, ClassTLS},
		{"handshake reset", viaURL(&dialError{err: opErr("read", os.NewSyscallError("read", syscall.ECONNRESET)), handshake: true}), false, nil, ClassReset},
		{"handshake EOF", viaURL(&dialError{err: io.EOF, handshake: true}), false, nil, ClassReset},
		{"record header", viaURL(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), true, nil, ClassTLS},
		{"unreachable at dial", viaURL(&dialError{err: opErr("dial", os.NewSyscallError("connect", syscall.EHOSTUNREACH))}), false, nil, ClassOther},
		{"reset", viaURL(opErr("read", os.NewSyscallError("read", syscall.ECONNRESET))), true, nil, ClassReset},
		{"broken pipe", viaURL(opErr("write", os.NewSyscallError("write", syscall.EPIPE))), true, nil, ClassReset},
		{"EOF", viaURL(io.EOF), true, nil, ClassReset},
		{"unexpected EOF in body", fmt.Errorf("body: %w", io.ErrUnexpectedEOF), true, nil, ClassReset},
		{"untyped on a closed conn", viaURL(errors.New("http: server closed idle connection")), true, io.EOF, ClassReset},
		{"untyped on a reset conn", viaURL(errors.New("connection broken")), true, syscall.ECONNRESET, ClassReset},
		{"untyped on a live conn", viaURL(errors.New(`malformed HTTP status code "abc"`)), true, nil, ClassProtocol},
		{"closed after a refused re-send", viaURL(errWritesRefused), true, nil, ClassReset},
		{"closed conn", viaURL(opErr("write", net.ErrClosed)), true, nil, ClassReset},
		// Another request's cancellation cause, which net/http gives a
		// request whose connection that request closed before the answer
		// on it was handed over (TestAnswerLostToAnotherRequestsCancel).
		{"closed by another request's cancel", context.Canceled, true, nil, ClassReset},
		{"closed by another request's deadline", context.DeadlineExceeded, true, nil, ClassReset},
		{"closed by another request's timeout", errAttemptTimeout, true, nil, ClassReset},
		{"closed by another request's refused re-send", errResendRefused, true, nil, ClassReset},
		{"closed by a refused re-send, noticed by the writer", fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", errWritesRefused), true, nil, ClassReset},
		{"untyped, no conn", viaURL(errors.New("something")), false, nil, ClassOther},
		{"stray timeout", viaURL(os.ErrDeadlineExceeded), true, nil, ClassOther},
	}
	for _, tt := range tests {
		if got := classify(tt.err, tt.onConn, tt.connErr); got != tt.want {
			t.Errorf("%s: classify(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestDescribeRedacts(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("http://user:pw@api.example/v1?token=s3cret&sig=abc")
	// The wrapper repeats the URL; a layer below echoes it too.
	err := &url.Error{Op: "Get", URL: u.String(), Err: fmt.Errorf("upstream at %s refused", u)}
	got := describe(err, u)
	if want := "upstream at http://REDACTED@api.example/v1?REDACTED refused"; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	parse := func(raw string) *url.URL {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	long := strings.Repeat("é", 400) // 800 bytes
	tests := []struct {
		name string
		s    string
		u    *url.URL
		want string
	}{
		{"no URL", "connection refused", nil, "connection refused"},
		{"short query left in words", "dial tcp 1.2.3.4:80: connect: connection refused", parse("http://h/?e"), "dial tcp 1.2.3.4:80: connect: connection refused"},
		{"short query echoed", "GET http://h/?e: refused", parse("http://h/?e"), "GET http://h/?REDACTED: refused"},
		{"query echoed twice", "a ?t=1 b ?t=1", parse("http://h/p?t=1"), "a ?REDACTED b ?REDACTED"},
		{"bare query text is not a query", "t=1 is fine", parse("http://h/p?t=1"), "t=1 is fine"},
		{"query with a fragment", "GET http://h/p?t=1#top", parse("http://h/p?t=1#top"), "GET http://h/p?REDACTED#top"},
		{"credentials", "GET http://user:pw@h/: no", parse("http://user:pw@h/"), "GET http://REDACTED@h/: no"},
		{"user alone", "GET http://e@h/: connection refused", parse("http://e@h/"), "GET http://REDACTED@h/: connection refused"},
		{"both", "http://u:p@h/x?k=v", parse("http://u:p@h/x?k=v"), "http://REDACTED@h/x?REDACTED"},
		{"empty query", "GET http://h/?: x", parse("http://h/?"), "GET http://h/?: x"},
		{"exactly the limit", strings.Repeat("a", 512), nil, strings.Repeat("a", 512)},
		{"clipped", strings.Repeat("a", 600), nil, strings.Repeat("a", 512) + "..."},
		{"clipped on a rune boundary", long, nil, long[:512] + "..."},
		{"clipped mid rune", "a" + long, nil, "a" + long[:510] + "..."},
	}
	for _, tt := range tests {
		if got := redact(tt.s, tt.u); got != tt.want {
			t.Errorf("%s: redact(%q) = %q, want %q", tt.name, tt.s, got, tt.want)
		}
	}
}

func TestExhaustedErrorUnwrapsOnlyWhatCallersBranchOn(t *testing.T) {
	t.Parallel()
	timeout := &ExhaustedError{Attempts: []Attempt{{Number: 1, Error: ClassAttemptTimeout}}, Err: &attemptError{class: ClassAttemptTimeout, detail: "attempt took longer than 1s"}, Sent: true}
	if errors.Is(timeout, context.DeadlineExceeded) {
		t.Error("an attempt timeout reads as the deadline")
	}
	deadline := &ExhaustedError{Err: &attemptError{class: ClassDeadline, cause: context.DeadlineExceeded}}
	if !errors.Is(deadline, context.DeadlineExceeded) {
		t.Error("the total deadline does not read as context.DeadlineExceeded")
	}
	if got := timeout.Error(); got != "outbound: no response after 1 attempt: attempt_timeout: attempt took longer than 1s" {
		t.Errorf("Error() = %q", got)
	}
	tooLarge := &BodyTooLargeError{Limit: 10, Status: 200}
	if !errors.Is(tooLarge, ErrBodyTooLarge) {
		t.Error("BodyTooLargeError is not ErrBodyTooLarge")
	}
}

// handoff is an upstream for the race in which a request loses its answer
// to the connection's next user. net/http puts a connection back in its
// pool (or hands it to a request waiting for one) as soon as it has read an
// answer without a body, and only then hands that answer to the request it
// belongs to; a request that takes the connection in between and is
// cancelled (its caller, a timeout, a refused re-send) closes it, and the
// first request then fails with the other's cancellation cause instead of
// its answer. The trace's PutIdleConn comes in between, so holding it
// (holdAnswer) holds the answer there for as long as a test needs.
//
//	/fill    200 "ok": leaves a reused keep-alive connection in the pool
//	/answer  503 without a body
//	/hang    tells arrived, answers nothing until the request ends
//	/drop    tells arrived, waits for drop, closes the connection unanswered
type handoff struct {
	*httptest.Server
	conns   atomic.Int64 // connections opened
	arrived chan string  // the path of each /hang and /drop request
	drop    chan struct{}
}

func newHandoff(t *testing.T) *handoff {
	t.Helper()
	h := &handoff{arrived: make(chan string, 16), drop: make(chan struct{}, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fill", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /answer", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
		h.arrived <- r.URL.Path
		<-r.Context().Done()
	})
	mux.HandleFunc("GET /drop", func(w http.ResponseWriter, r *http.Request) {
		h.arrived <- r.URL.Path
		select {
		case <-h.drop:
		case <-r.Context().Done():
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		conn.Close()
	})
	h.Server = httptest.NewUnstartedServer(mux)
	h.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			h.conns.Add(1)
		}
	}
	h.Start()
	t.Cleanup(h.Close)
	return h
}

// holdAnswer returns a context whose request holds its answer at the
// trace's PutIdleConn, with its connection already pooled: pooled is closed
// then, and the answer is handed over once release is called (at the
// latest when the test ends).
func holdAnswer(t *testing.T) (held context.Context, pooled <-chan struct{}, release func()) {
	p, r := make(chan struct{}), make(chan struct{})
	var hold, rel sync.Once
	release = func() { rel.Do(func() { close(r) }) }
	t.Cleanup(release)
	return httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		PutIdleConn: func(error) {
			hold.Do(func() {
				close(p)
				<-r
			})
		},
	}), p, release
}

// await returns what ch delivers. The bound only guards against a hung
// test; nothing waits for it to pass.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// noBudget grants no retry, as an exhausted budget would not: the soak's
// traffic exhausts it.
func noBudget() Budget { return Budget{Window: 10 * time.Second} }

// lostAnswer checks what Do returned to a request whose connection was
// closed under it before it got its answer: no answer, one attempt, class
// reset (the connection closed early), and the budget refused to retry it.
func lostAnswer(t *testing.T, resp *Response, err error) {
	t.Helper()
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("Do = %+v, %v; want an *ExhaustedError: the connection was closed before the answer was handed over", resp, err)
	}
	for _, a := range ex.Attempts {
		t.Logf("lost answer: attempt %d class %q detail %q", a.Number, a.Error, a.Detail)
	}
	if len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassReset || ex.Attempts[0].Detail != handedOnDetail || ex.Attempts[0].Status != 0 {
		t.Errorf("attempts %+v; want one, class %q, detail %q", ex.Attempts, ClassReset, handedOnDetail)
	}
	if !ex.Sent || ex.Stopped != StopBudget {
		t.Errorf("Sent %v, Stopped %q; want true, %q", ex.Sent, ex.Stopped, StopBudget)
	}
}

// TestAnswerLostToAnotherRequestsCancel: a request whose answer (no body)
// is lost because the next request on its connection was cancelled fails
// as a reset, whatever the other request's cancellation cause (its
// caller's, or one of fetchd's, given here as its caller's cause), never as
// a protocol error (the answer was fine) or as a timeout of its own.
func TestAnswerLostToAnotherRequestsCancel(t *testing.T) {
	t.Parallel()
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded, errTotalTimeout, errAttemptTimeout, errReadTimeout} {
		t.Run(cause.Error(), func(t *testing.T) {
			t.Parallel()
			up := newHandoff(t)
			c, _ := newClient(t, WithDirectHTTP(false)) // net/http's pooling race

			held, pooled, _ := holdAnswer(t)
			type result struct {
				resp *Response
				err  error
			}
			first := make(chan result, 1)
			go func() {
				req := request(t, "GET", up.URL+"/answer", nil)
				req.Policy.Budget = noBudget()
				resp, err := c.Do(held, req)
				first <- result{resp, err}
			}()
			within(t, pooled, "the first answer to be read and its connection pooled")

			// The next request takes the pooled connection, and its caller
			// cancels it (with cause) before the first answer is handed over.
			ctx, cancel := context.WithCancelCause(context.Background())
			next := make(chan error, 1)
			go func() {
				_, err := c.Do(ctx, request(t, "GET", up.URL+"/hang", nil))
				next <- err
			}()
			if p := await(t, up.arrived, "the next request to arrive"); p != "/hang" {
				t.Fatalf("%s arrived, want /hang", p)
			}
			if n := up.conns.Load(); n != 1 {
				t.Fatalf("%d connections, want 1: the next request took the pooled one", n)
			}
			cancel(cause)
			if err := await(t, next, "the cancelled request to end"); !errors.Is(err, context.Canceled) {
				t.Errorf("the cancelled request: %v, want context.Canceled", err)
			}

			// The first request fails while its answer is still held.
			r := await(t, first, "the first request to fail")
			lostAnswer(t, r.resp, r.err)
		})
	}
}

// TestAnswerLostToARefusedResend is the soak's case: a request whose
// reused connection died wants net/http's re-send, the budget refuses it,
// and net/http hands it the connection of another request's answer (503,
// no body) while that answer is being handed over. fetchd closes that
// connection (refuseWrites, and the cancelled context), and the other
// request fails with "transport re-send refused" as its error. It must be a
// reset. net/http hands the refused request a connection or not at random,
// so this runs until it did a few times.
func TestAnswerLostToARefusedResend(t *testing.T) {
	t.Parallel()
	up := newHandoff(t)
	const want, tries = 3, 200
	lost := 0
	for i := 0; i < tries && lost < want; i++ {
		c := New(loopback())
		if resp, err := c.Do(context.Background(), request(t, "GET", up.URL+"/fill", nil)); err != nil || resp.Status != 200 {
			t.Fatalf("fill: %+v, %v", resp, err)
		}

		// The dropped request takes the reused connection and waits there.
		var gets atomic.Int64 // connections handed to it
		dropCtx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { gets.Add(1) },
		})
		dropped := make(chan error, 1)
		go func() {
			req := request(t, "GET", up.URL+"/drop", nil)
			req.Policy.Budget = noBudget()
			_, err := c.Do(dropCtx, req)
			dropped <- err
		}()
		if p := await(t, up.arrived, "the request to drop to arrive"); p != "/drop" {
			t.Fatalf("%s arrived, want /drop", p)
		}

		// Another request dials, and its answer is held with its connection
		// pooled.
		held, pooled, release := holdAnswer(t)
		answered := make(chan error, 1)
		var resp *Response
		go func() {
			req := request(t, "GET", up.URL+"/answer", nil)
			req.Policy.Budget = noBudget()
			var err error
			resp, err = c.Do(held, req)
			answered <- err
		}()
		within(t, pooled, "the answer to be read and its connection pooled")

		// The upstream drops the first request; its re-send is refused.
		up.drop <- struct{}{}
		var ex *ExhaustedError
		if err := await(t, dropped, "the dropped request to end"); !errors.As(err, &ex) || ex.Stopped != StopBudget {
			t.Fatalf("dropped request: %v, want its re-send refused by the budget", err)
		}
		if gets.Load() == 1 {
			// It was not handed the pooled connection: the answer arrives.
			release()
			if err := await(t, answered, "the answer"); err != nil || resp.Status != http.StatusServiceUnavailable {
				t.Fatalf("answer: %+v, %v; want the 503", resp, err)
			}
		} else {
			// It was, and closed it: the answer is lost before it is released.
			err := await(t, answered, "the request that lost its answer to fail")
			release()
			lostAnswer(t, resp, err)
			lost++
		}
		c.Close()
	}
	if lost == 0 {
		t.Fatalf("in %d tries, net/http never handed the refused re-send the pooled connection", tries)
	}
}
