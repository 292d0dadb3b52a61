package outbound

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
)

// namedURL returns a URL for up by the name "upstream.test", and a resolver
// that maps the name to 127.0.0.1. A name, not a literal: a literal is
// refused before any dial, which would hide a pooled connection's reuse.
func namedURL(up *upstream) (string, mapResolver) {
	port := up.URL[strings.LastIndex(up.URL, ":"):]
	return "http://upstream.test" + port + "/", mapResolver{"upstream.test": {netip.MustParseAddr("127.0.0.1")}}
}

func TestSetGuardNarrowingRetiresPooledConnections(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(200))
	raw, res := namedURL(up)
	c := New(egress.New(egress.WithAllow(netip.MustParsePrefix("127.0.0.0/8")), egress.WithResolver(res)))
	t.Cleanup(c.Close)
	if resp, err := c.Do(context.Background(), request(t, "GET", raw, nil)); err != nil || resp.Status != 200 {
		t.Fatalf("before: %v", err)
	}

	c.SetGuard(egress.New(egress.WithResolver(res))) // loopback refused
	within(t, up.closed, "the idle connection to be closed")
	_, err := c.Do(context.Background(), request(t, "GET", raw, nil))
	var ex *ExhaustedError
	if !errors.Is(err, egress.ErrDenied) || !errors.As(err, &ex) || ex.Sent || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassDenied {
		t.Fatalf("after: err = %v", err)
	}
	if n, seen := up.conns.Load(), len(up.seen()); n != 1 || seen != 1 {
		t.Fatalf("upstream saw %d connections, %d requests; want the first only", n, seen)
	}
	// The literal form is refused before any dial.
	if _, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil)); !errors.Is(err, egress.ErrDenied) {
		t.Fatalf("literal: err = %v", err)
	}
}

func TestSetGuardWidens(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(200))
	c := New(egress.New())
	t.Cleanup(c.Close)
	req := request(t, "GET", up.URL+"/", nil)
	if _, err := c.Do(context.Background(), req); !errors.Is(err, egress.ErrDenied) {
		t.Fatalf("before: err = %v", err)
	}
	c.SetGuard(loopback())
	if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 200 {
		t.Fatalf("after: %v", err)
	}
	c.SetGuard(nil) // egress.New()
	if _, err := c.Do(context.Background(), req); !errors.Is(err, egress.ErrDenied) {
		t.Fatalf("after SetGuard(nil): err = %v", err)
	}
}

func TestSetGuardDuringRequest(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte("slow"))
	}, status(200))
	raw, res := namedURL(up)
	allow := egress.New(egress.WithAllow(netip.MustParsePrefix("127.0.0.0/8")), egress.WithResolver(res))
	c := New(allow)
	t.Cleanup(c.Close)

	first := request(t, "GET", raw, nil)
	done := make(chan error, 1)
	go func() {
		resp, err := c.Do(context.Background(), first)
		if err == nil && string(resp.Body) != "slow" {
			err = errors.New("body " + string(resp.Body))
		}
		done <- err
	}()
	within(t, arrived, "the first request")
	c.SetGuard(allow) // same ranges: what is checked is that the old connection goes
	// A request while the first is busy dials a second connection. (It also
	// undoes net/http's own closing of connections that become idle after
	// CloseIdleConnections, on whichever transport it uses.)
	if resp, err := c.Do(context.Background(), request(t, "GET", raw, nil)); err != nil || resp.Status != 200 {
		t.Fatalf("second: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the request in flight failed: %v", err)
	}
	within(t, up.closed, "the connection dialled before SetGuard to be closed")

	if resp, err := c.Do(context.Background(), request(t, "GET", raw, nil)); err != nil || resp.Status != 200 {
		t.Fatalf("third: %v", err)
	}
	if n := up.conns.Load(); n != 2 {
		t.Fatalf("upstream saw %d connections, want 2: the first closed, the second reused", n)
	}
	select {
	case <-up.closed:
		t.Fatal("the connection dialled after SetGuard was closed too")
	default:
	}
}

func TestSetGuardKeepsProtection(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(500))
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.MaxAttempts, req.Policy.Breaker = 1, Breaker{ConsecutiveFailures: 1, OpenFor: time.Hour}
	if resp, err := c.Do(context.Background(), req); err != nil || resp.Status != 500 {
		t.Fatalf("%v", err)
	}
	c.SetGuard(loopback())
	_, err := c.Do(context.Background(), req)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Stopped != StopBreaker {
		t.Fatalf("err = %v: the breaker was forgotten with the transport", err)
	}
}

func TestSetGuardConcurrentWithDo(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(200))
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 4 {
		wg.Go(func() {
			for range 25 {
				if _, err := c.Do(context.Background(), req); err != nil && !errors.Is(err, egress.ErrDenied) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			if i%2 == 0 {
				c.SetGuard(egress.New())
			} else {
				c.SetGuard(loopback())
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.SetGuard(loopback())
	if _, err := c.Do(context.Background(), req); err != nil {
		t.Fatalf("after the last SetGuard: %v", err)
	}
}

// A run with its own guard (Request.Guard) keeps it for every dial, a retry
// after SetGuard included; a run without one follows SetGuard. SetGuard is
// called during the first backoff wait, after the first attempt's
// connection was closed by the upstream, so the retry must dial.
func TestRequestGuardOutlivesSetGuard(t *testing.T) {
	t.Parallel()
	for _, own := range []bool{true, false} {
		t.Run(fmt.Sprintf("own guard %v", own), func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, status(503, "Connection", "close"), status(200))
			raw, res := namedURL(up)
			allow := egress.New(egress.WithAllow(netip.MustParsePrefix("127.0.0.0/8")), egress.WithResolver(res))
			refuse := egress.New(egress.WithResolver(res))
			var c *Client
			var once sync.Once
			c = New(allow, WithSleep(func(ctx context.Context, _ time.Duration) error {
				once.Do(func() { c.SetGuard(refuse) })
				return ctx.Err()
			}))
			t.Cleanup(c.Close)

			req := request(t, "GET", raw, nil)
			if own {
				req.Guard = allow
			}
			resp, err := c.Do(context.Background(), req)
			if own {
				if err != nil || resp.Status != 200 || len(resp.Attempts) != 2 {
					t.Fatalf("err %v, resp %+v; want the retry dialled under the run's own guard", err, resp)
				}
				if n := up.conns.Load(); n != 2 {
					t.Fatalf("upstream saw %d connections, want 2", n)
				}
				return
			}
			var ex *ExhaustedError
			if !errors.Is(err, egress.ErrDenied) || !errors.As(err, &ex) || !ex.Sent ||
				!slices.Equal(classes(ex.Attempts), []string{"Service Unavailable", ClassDenied}) {
				t.Fatalf("err %v; want the retry refused by the guard SetGuard put in", err)
			}
		})
	}
}

// The run's guard also checks IP literals and redirect hops, and connections
// are pooled per guard: a run whose guard refuses an address never reuses a
// connection to it dialled under another guard.
func TestRequestGuardChecksEveryHopAndPoolsApart(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(200))
	raw, res := namedURL(up)
	allow := egress.New(egress.WithAllow(netip.MustParsePrefix("127.0.0.0/8")), egress.WithResolver(res))
	refuse := egress.New(egress.WithResolver(res))

	c := New(refuse)
	t.Cleanup(c.Close)
	literal := request(t, "GET", up.URL+"/", nil)
	literal.Guard = allow
	if resp, err := c.Do(context.Background(), literal); err != nil || resp.Status != 200 {
		t.Fatalf("literal under the run's guard: %v", err)
	}
	if _, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil)); !errors.Is(err, egress.ErrDenied) {
		t.Fatalf("literal under the Client's guard: err = %v, want a denial", err)
	}

	// A redirect hop to a name dials under the run's guard.
	a := newUpstream(t, redirectTo(302, raw))
	hop := follows(t, "GET", a.URL+"/", nil, 1)
	hop.Guard = allow
	if resp, err := c.Do(context.Background(), hop); err != nil || resp.Status != 200 {
		t.Fatalf("hop under the run's guard: %v", err)
	}
	named := request(t, "GET", raw, nil)
	named.Guard = allow
	if resp, err := c.Do(context.Background(), named); err != nil || resp.Status != 200 {
		t.Fatalf("name under the run's guard: %v", err)
	}
	conns := up.conns.Load()

	// The idle connection to upstream.test was dialled under allow; a run
	// under refuse must dial its own, and is refused.
	denied := request(t, "GET", raw, nil)
	denied.Guard = refuse
	var ex *ExhaustedError
	if _, err := c.Do(context.Background(), denied); !errors.Is(err, egress.ErrDenied) || !errors.As(err, &ex) || ex.Sent {
		t.Fatalf("a run under a refusing guard: err = %v, want a denial before anything was sent", err)
	}
	if n := up.conns.Load(); n != conns || len(up.seen()) != 3 {
		t.Fatalf("upstream saw %d connections (was %d), %d requests; want nothing more", n, conns, len(up.seen()))
	}
}
