package outbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
)

func TestRetriesStatusThenSucceeds(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(503), status(200))
	c, s := newClient(t)

	resp, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != "OK" {
		t.Fatalf("got %d %q, want 200 OK", resp.Status, resp.Body)
	}
	if got, want := classes(resp.Attempts), []string{"Service Unavailable", "OK"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
	a := resp.Attempts
	if a[0].Number != 1 || a[1].Number != 2 || a[0].Backoff != 0 || a[0].BackoffReason != "" {
		t.Errorf("first attempt %+v", a[0])
	}
	if a[1].Backoff != 50*time.Millisecond || a[1].BackoffReason != ReasonBackoff {
		t.Errorf("second attempt waited %v (%s), want 50ms (backoff: half of 100ms)", a[1].Backoff, a[1].BackoffReason)
	}
	if got := s.got(); !reflect.DeepEqual(got, []time.Duration{50 * time.Millisecond}) {
		t.Errorf("slept %v, want [50ms]", got)
	}
	if a[0].Duration <= 0 || a[1].Duration <= 0 {
		t.Errorf("durations not recorded: %+v", a)
	}
	if n := up.conns.Load(); n != 1 {
		t.Errorf("discarded 503 body did not leave its connection reusable: %d connections", n)
	}
}

func TestBackoffGrowsAndLastStatusIsReturned(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(502))
	c, s := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.MaxAttempts = 4

	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 502 || len(resp.Attempts) != 4 || len(up.seen()) != 4 {
		t.Fatalf("got %d after %d attempts (%d sent), want 502 after 4", resp.Status, len(resp.Attempts), len(up.seen()))
	}
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	if got := s.got(); !reflect.DeepEqual(got, want) {
		t.Fatalf("slept %v, want %v", got, want)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		code       int
		retryAfter string
		ignore     bool
		wait       time.Duration
		reason     string
	}{
		{"429 seconds", 429, "2", false, 2 * time.Second, ReasonRetryAfter},
		{"503 seconds", 503, "3", false, 3 * time.Second, ReasonRetryAfter},
		{"429 ignored by policy", 429, "2", true, 50 * time.Millisecond, ReasonBackoff},
		{"capped at MaxRetryAfter", 503, "120", false, 60 * time.Second, ReasonRetryAfterCapped},
		{"garbage falls back to backoff", 429, "later", false, 50 * time.Millisecond, ReasonBackoff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, status(tt.code, "Retry-After", tt.retryAfter), status(200))
			c, s := newClient(t)
			req := request(t, "GET", up.URL+"/", nil)
			req.Policy.IgnoreRetryAfter = tt.ignore
			req.Policy.TotalTimeout = 5 * time.Minute

			resp, err := c.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 || len(resp.Attempts) != 2 {
				t.Fatalf("got %d after %v", resp.Status, classes(resp.Attempts))
			}
			if a := resp.Attempts[1]; a.Backoff != tt.wait || a.BackoffReason != tt.reason {
				t.Fatalf("waited %v (%s), want %v (%s)", a.Backoff, a.BackoffReason, tt.wait, tt.reason)
			}
			if got := s.got(); !reflect.DeepEqual(got, []time.Duration{tt.wait}) {
				t.Fatalf("slept %v, want [%v]", got, tt.wait)
			}
		})
	}
}

func TestWaitBeyondDeadlineReturnsAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		step    http.HandlerFunc
		initial time.Duration
		status  int
	}{
		{"Retry-After beyond total", status(503, "Retry-After", "30"), 100 * time.Millisecond, 503},
		{"429 Retry-After date beyond total", status(429, "Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)), 100 * time.Millisecond, 429},
		{"backoff beyond total", status(500), 40 * time.Second, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, tt.step, status(200))
			c, s := newClient(t, WithJitter(func(limit time.Duration) time.Duration { return limit }))
			req := request(t, "GET", up.URL+"/", nil)
			req.Policy.TotalTimeout = 10 * time.Second
			req.Policy.InitialBackoff = tt.initial
			req.Policy.MaxBackoff = time.Minute

			start := time.Now()
			resp, err := c.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tt.status || len(resp.Attempts) != 1 || len(up.seen()) != 1 {
				t.Fatalf("got %d after %v, want %d after 1 attempt", resp.Status, classes(resp.Attempts), tt.status)
			}
			if string(resp.Body) != http.StatusText(tt.status) {
				t.Errorf("body %q, want the last answer's body", resp.Body)
			}
			if got := s.got(); len(got) != 0 {
				t.Fatalf("slept %v, want no sleep", got)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("took %v", el)
			}
		})
	}
}

func TestResetMidRequest(t *testing.T) {
	t.Parallel()
	t.Run("GET is retried", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, reset, status(200))
		c, _ := newClient(t)
		resp, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := classes(resp.Attempts), []string{ClassReset, "OK"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
		if resp.Attempts[0].Detail == "" {
			t.Error("reset attempt has no detail")
		}
	})
	t.Run("POST without key is not retried", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, reset, status(200))
		c, s := newClient(t)
		_, err := c.Do(context.Background(), request(t, "POST", up.URL+"/", []byte("pay")))
		var ex *ExhaustedError
		if !errors.As(err, &ex) {
			t.Fatalf("err = %v, want *ExhaustedError", err)
		}
		if !ex.Sent || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassReset || len(up.seen()) != 1 || len(s.got()) != 0 {
			t.Fatalf("Sent=%v attempts=%v upstream saw %d", ex.Sent, classes(ex.Attempts), len(up.seen()))
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, egress.ErrDenied) {
			t.Fatalf("a reset reads as %v", err)
		}
	})
	t.Run("keyed POST is retried", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, reset, status(201))
		c, _ := newClient(t)
		req := request(t, "POST", up.URL+"/", []byte("pay"))
		req.Keyed = true
		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := classes(resp.Attempts), []string{ClassReset, "Created"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
	})
}

func TestReadTimeoutThenRetry(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	up := newUpstream(t, hang(cancelled), status(200))
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.ReadTimeout = 100 * time.Millisecond

	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := classes(resp.Attempts), []string{ClassReadTimeout, "OK"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
	if d := resp.Attempts[0].Duration; d < 100*time.Millisecond || d > 5*time.Second {
		t.Errorf("read timeout attempt took %v, want about 100ms", d)
	}
	within(t, cancelled, "the upstream to see its request cancelled")
}

func TestReadTimeoutBetweenBodyReads(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then silence
	})
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.ReadTimeout = 100 * time.Millisecond
	req.Policy.MaxAttempts = 2

	_, err := c.Do(context.Background(), req)
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("err = %v, want *ExhaustedError", err)
	}
	if got, want := classes(ex.Attempts), []string{ClassReadTimeout, ClassReadTimeout}; !reflect.DeepEqual(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
	if ex.Attempts[0].Status != 200 {
		t.Errorf("status %d, want 200 recorded for a body that went silent", ex.Attempts[0].Status)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("a read timeout reads as the deadline")
	}
}

// dribble sends headers, then one byte every few milliseconds, forever.
func dribble(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(200)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

func TestDribbleIsCutOff(t *testing.T) {
	t.Parallel()
	t.Run("by the attempt timeout", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, dribble)
		c, _ := newClient(t)
		req := request(t, "GET", up.URL+"/", nil)
		req.Policy.ReadTimeout = time.Second
		req.Policy.AttemptTimeout = 200 * time.Millisecond
		req.Policy.MaxAttempts = 2

		start := time.Now()
		_, err := c.Do(context.Background(), req)
		var ex *ExhaustedError
		if !errors.As(err, &ex) {
			t.Fatalf("err = %v, want *ExhaustedError", err)
		}
		if got, want := classes(ex.Attempts), []string{ClassAttemptTimeout, ClassAttemptTimeout}; !reflect.DeepEqual(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Error("attempt timeouts read as the deadline")
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("took %v", el)
		}
	})
	t.Run("by the total timeout", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, dribble)
		c, _ := newClient(t)
		req := request(t, "GET", up.URL+"/", nil)
		req.Policy.ReadTimeout = time.Second
		req.Policy.TotalTimeout = 200 * time.Millisecond

		_, err := c.Do(context.Background(), req)
		var ex *ExhaustedError
		if !errors.As(err, &ex) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want an *ExhaustedError wrapping context.DeadlineExceeded", err)
		}
		if got, want := classes(ex.Attempts), []string{ClassDeadline}; !reflect.DeepEqual(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
	})
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			c, s := newClient(t)
			_, err := c.Do(context.Background(), request(t, method, refusedURL(t), []byte("b")))
			var ex *ExhaustedError
			if !errors.As(err, &ex) {
				t.Fatalf("err = %v, want *ExhaustedError", err)
			}
			want := []string{ClassConnectRefused, ClassConnectRefused, ClassConnectRefused}
			if got := classes(ex.Attempts); !reflect.DeepEqual(got, want) {
				t.Fatalf("attempts %v, want %v", got, want)
			}
			if ex.Sent {
				t.Error("Sent = true for a refused connection")
			}
			if len(s.got()) != 2 {
				t.Errorf("slept %v, want 2 waits", s.got())
			}
			if strings.Contains(err.Error(), "?") || !strings.Contains(err.Error(), "connect_refused") {
				t.Errorf("message %q", err)
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("a"), 64<<10)
	tests := map[string]http.HandlerFunc{
		"with Content-Length": func(w http.ResponseWriter, r *http.Request) { w.Write(big) },
		"chunked": func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(big); i += 4 << 10 {
				w.Write(big[i : i+4<<10])
				w.(http.Flusher).Flush()
			}
		},
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, h)
			c, _ := newClient(t)
			req := request(t, "GET", up.URL+"/", nil)
			req.Policy.MaxResponseBytes = 10 << 10

			_, err := c.Do(context.Background(), req)
			var tl *BodyTooLargeError
			if !errors.Is(err, ErrBodyTooLarge) || !errors.As(err, &tl) {
				t.Fatalf("err = %v, want *BodyTooLargeError", err)
			}
			if tl.Limit != 10<<10 || tl.Status != 200 || len(tl.Attempts) != 1 || tl.Attempts[0].Error != ClassBodyTooLarge {
				t.Fatalf("got %+v", tl)
			}
			if len(up.seen()) != 1 {
				t.Fatalf("upstream saw %d requests, want 1 (not retried)", len(up.seen()))
			}
			within(t, up.closed, "the oversized response's connection to be closed")
		})
	}
	t.Run("exactly at the limit", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
		c, _ := newClient(t)
		req := request(t, "GET", up.URL+"/", nil)
		req.Policy.MaxResponseBytes = int64(len(big))
		resp, err := c.Do(context.Background(), req)
		if err != nil || !bytes.Equal(resp.Body, big) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestNotFoundIsAnAnswer(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(404))
	c, s := newClient(t)
	resp, err := c.Do(context.Background(), request(t, "GET", up.URL+"/missing", nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 404 || len(resp.Attempts) != 1 || len(s.got()) != 0 || len(up.seen()) != 1 {
		t.Fatalf("got %d after %v", resp.Status, classes(resp.Attempts))
	}
}

func TestPostAfterStatus(t *testing.T) {
	t.Parallel()
	t.Run("without key: the 503 is final", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, status(503), status(200))
		c, _ := newClient(t)
		resp, err := c.Do(context.Background(), request(t, "POST", up.URL+"/", []byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 503 || len(resp.Attempts) != 1 || len(up.seen()) != 1 {
			t.Fatalf("got %d after %v", resp.Status, classes(resp.Attempts))
		}
	})
	t.Run("keyed: retried with the body intact", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, status(503), status(500), status(200))
		c, _ := newClient(t)
		body := []byte(`{"amount": 100, "currency": "EUR"}`)
		req := request(t, "POST", up.URL+"/charges", body)
		req.Keyed = true
		req.Header.Set("Content-Type", "application/json")

		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := classes(resp.Attempts), []string{"Service Unavailable", "Internal Server Error", "OK"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
		for i, s := range up.seen() {
			if s.method != "POST" || !bytes.Equal(s.body, body) || s.header.Get("Content-Length") != "" && s.header.Get("Content-Length") != "34" {
				t.Errorf("send %d: %s %q", i+1, s.method, s.body)
			}
		}
		if len(up.seen()) != 3 {
			t.Fatalf("upstream saw %d sends", len(up.seen()))
		}
	})
}

func TestCallerCancelStopsUpstream(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
		cancelled <- struct{}{}
	})
	c, _ := newClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := c.Do(ctx, request(t, "GET", up.URL+"/", nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var ex *ExhaustedError
	if !errors.As(err, &ex) || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassCanceled {
		t.Fatalf("err = %#v", err)
	}
	within(t, cancelled, "the upstream to see its request cancelled")
}

func TestCallerCancelDuringBackoff(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(503))
	ctx, cancel := context.WithCancel(context.Background())
	c, _ := newClient(t, WithSleep(func(ctx context.Context, d time.Duration) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}))
	_, err := c.Do(ctx, request(t, "GET", up.URL+"/", nil))
	var ex *ExhaustedError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ex) || len(ex.Attempts) != 1 || len(up.seen()) != 1 {
		t.Fatalf("err = %v", err)
	}
}

func TestCallerDeadline(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, hang(nil))
	c, _ := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, request(t, "GET", up.URL+"/", nil))
	var ex *ExhaustedError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ex) || ex.Attempts[0].Error != ClassDeadline {
		t.Fatalf("err = %v", err)
	}
}

func TestRedirectReturnedAsIs(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(302, "Location", "http://127.0.0.1:1/elsewhere"))
	c, _ := newClient(t)
	resp, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 302 || resp.Header.Get("Location") != "http://127.0.0.1:1/elsewhere" || len(resp.Attempts) != 1 {
		t.Fatalf("got %d Location=%q", resp.Status, resp.Header.Get("Location"))
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "2")
		w.Write([]byte("ok"))
	})
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	req.Header = http.Header{
		"Connection":          {"X-Listed"},
		"X-Listed":            {"secret"},
		"Keep-Alive":          {"timeout=1"},
		"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
		"Te":                  {"trailers"},
		"Upgrade":             {"h2c"},
		"Host":                {"evil.example"},
		"Content-Length":      {"999"},
		"X-Keep":              {"yes"},
	}
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := up.seen()[0]
	if got.host != up.Listener.Addr().String() {
		t.Errorf("upstream saw Host %q, want %q", got.host, up.Listener.Addr().String())
	}
	for _, name := range []string{"X-Listed", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade", "Content-Length"} {
		if v := got.header.Values(name); len(v) != 0 {
			t.Errorf("upstream received %s: %q", name, v)
		}
	}
	if got.header.Get("X-Keep") != "yes" || got.header.Get("User-Agent") != "fetchd" {
		t.Errorf("upstream headers %v", got.header)
	}
	for _, name := range []string{"Connection", "X-Hop", "Keep-Alive"} {
		if v := resp.Header.Values(name); len(v) != 0 {
			t.Errorf("response kept %s: %q", name, v)
		}
	}
	if resp.Header.Get("X-End") != "2" {
		t.Errorf("response headers %v", resp.Header)
	}

	req.Header = http.Header{"User-Agent": {"billing/1"}}
	if _, err := c.Do(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if ua := up.seen()[1].header.Get("User-Agent"); ua != "billing/1" {
		t.Errorf("caller User-Agent replaced by %q", ua)
	}
}

func TestGuardRefusal(t *testing.T) {
	t.Parallel()
	t.Run("IP literal, before any dial", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, status(200))
		s := &sleeps{}
		c := New(egress.New(), WithSleep(s.sleep))
		defer c.Close()
		_, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil))
		var de *egress.DeniedError
		var ex *ExhaustedError
		if !errors.Is(err, egress.ErrDenied) || !errors.As(err, &de) || !errors.As(err, &ex) {
			t.Fatalf("err = %v, want a denial", err)
		}
		if ex.Sent || len(ex.Attempts) != 0 || len(s.got()) != 0 {
			t.Fatalf("Sent=%v attempts=%v", ex.Sent, ex.Attempts)
		}
		if de.Addr.String() != "127.0.0.1" {
			t.Errorf("denied %v", de.Addr)
		}
		if n := up.conns.Load(); n != 0 {
			t.Fatalf("%d connections reached the upstream", n)
		}
	})
	t.Run("name, at dial time", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, status(200))
		s := &sleeps{}
		c := New(egress.New(), WithSleep(s.sleep))
		defer c.Close()
		port := up.URL[strings.LastIndex(up.URL, ":"):]
		_, err := c.Do(context.Background(), request(t, "POST", "http://localhost"+port+"/", nil))
		var ex *ExhaustedError
		if !errors.Is(err, egress.ErrDenied) || !errors.As(err, &ex) {
			t.Fatalf("err = %v, want a denial", err)
		}
		if ex.Sent || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassDenied || len(s.got()) != 0 {
			t.Fatalf("Sent=%v attempts=%+v", ex.Sent, ex.Attempts)
		}
		if n := up.conns.Load(); n != 0 {
			t.Fatalf("%d connections reached the upstream", n)
		}
	})
}

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(200))
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	for range 100 {
		resp, err := c.Do(context.Background(), req)
		if err != nil || resp.Status != 200 {
			t.Fatalf("err = %v", err)
		}
	}
	if n := up.conns.Load(); n > 2 {
		t.Fatalf("100 sequential GETs opened %d connections", n)
	}
}

func TestPoolEvictionClosesIdleConnections(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, status(200))
	b := newUpstream(t, status(200))
	c, _ := newClient(t, WithMaxTargets(1))
	if _, err := c.Do(context.Background(), request(t, "GET", a.URL+"/", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), request(t, "GET", b.URL+"/", nil)); err != nil {
		t.Fatal(err)
	}
	within(t, a.closed, "the evicted target's idle connection to be closed")
	if keys := c.pool.keys(); len(keys) != 1 || keys[0] != targetKey(request(t, "GET", b.URL, nil).URL) {
		t.Fatalf("pool keys %v", keys)
	}
}

// closeSecondOnConn answers the first request on each connection and drops
// the second one unanswered (the connection closes after reading it), as a
// server closing a keep-alive connection under a client would.
func closeSecondOnConn(t *testing.T) *upstream {
	type perConn struct{ n int }
	type key struct{}
	up := &upstream{closed: make(chan struct{}, 1024)}
	up.steps = []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
		pc := r.Context().Value(key{}).(*perConn)
		pc.n++
		if pc.n == 2 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		w.Write([]byte("fine"))
	}}
	up.Server = httptest.NewUnstartedServer(http.HandlerFunc(up.serve))
	up.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, key{}, &perConn{})
	}
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			up.conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	return up
}

func TestTransportResendIsLogged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		keyed  bool
		header string // Idempotency-Key header sent upstream
		resent bool   // net/http re-sends it on its own
	}{
		{"GET", "GET", false, "", true},
		{"POST with Idempotency-Key header", "POST", true, "Idempotency-Key", true},
		{"POST with X-Idempotency-Key header", "POST", true, "X-Idempotency-Key", true},
		{"POST without key", "POST", false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := closeSecondOnConn(t)
			c, s := newClient(t)
			newReq := func() *Request {
				req := request(t, tt.method, up.URL+"/", []byte("body"))
				req.Keyed = tt.keyed
				if tt.header != "" {
					req.Header.Set(tt.header, "k-1")
				}
				return req
			}
			// The first Do leaves an idle keep-alive connection in the pool.
			if resp, err := c.Do(context.Background(), newReq()); err != nil || len(resp.Attempts) != 1 {
				t.Fatalf("first Do: %v", err)
			}
			// The second reuses it; the server reads the request and closes.
			resp, err := c.Do(context.Background(), newReq())
			if !tt.resent {
				var ex *ExhaustedError
				if !errors.As(err, &ex) || !ex.Sent || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassReset {
					t.Fatalf("err = %v, want one reset attempt, Sent, not retried", err)
				}
				if n := len(up.seen()); n != 2 {
					t.Fatalf("upstream saw %d requests, want 2", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// net/http re-sent it on a new connection within one attempt of
			// ours: the log shows both sends, and no backoff was slept.
			want := []Attempt{
				{Number: 1, Error: ClassReset, Detail: resentDetail},
				{Number: 2, Status: 200},
			}
			if len(resp.Attempts) != 2 {
				t.Fatalf("attempts %+v, want %+v", resp.Attempts, want)
			}
			for i := range want {
				got := resp.Attempts[i]
				got.Duration = 0
				if got != want[i] {
					t.Errorf("attempt %d = %+v, want %+v", i+1, got, want[i])
				}
			}
			if n := len(up.seen()); n != 3 {
				t.Fatalf("upstream saw %d requests, want 3 (1 + 2 sends of the second)", n)
			}
			for i, r := range up.seen() {
				if string(r.body) != "body" {
					t.Errorf("send %d carried %q", i+1, r.body)
				}
			}
			if n := up.conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2", n)
			}
			if len(s.got()) != 0 {
				t.Errorf("slept %v", s.got())
			}
		})
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		name := "HTTP/1.1"
		if h2 {
			name = "HTTP/2"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			proto := make(chan int, 10)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				proto <- r.ProtoMajor
				w.Write([]byte("secure"))
			}))
			srv.EnableHTTP2 = h2
			srv.StartTLS()
			t.Cleanup(srv.Close)
			cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
			c, _ := newClient(t, WithTLSConfig(cfg))

			resp, err := c.Do(context.Background(), request(t, "GET", srv.URL+"/", nil))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 || string(resp.Body) != "secure" {
				t.Fatalf("got %d %q", resp.Status, resp.Body)
			}
			want := 1
			if h2 {
				want = 2
			}
			if got := <-proto; got != want {
				t.Fatalf("upstream saw HTTP/%d, want HTTP/%d", got, want)
			}
		})
	}
	t.Run("untrusted certificate", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		t.Cleanup(srv.Close)
		c, s := newClient(t) // system roots do not know the test CA
		req := request(t, "GET", srv.URL+"/", nil)
		req.Policy.ConnectTimeout = time.Minute // a slow handshake on a loaded machine is not the point
		_, err := c.Do(context.Background(), req)
		var ex *ExhaustedError
		if !errors.As(err, &ex) || len(ex.Attempts) != 1 || ex.Attempts[0].Error != ClassTLS || len(s.got()) != 0 {
			t.Fatalf("err = %v, want one tls attempt", err)
		}
		if ex.Sent {
			t.Error("Sent = true for a failed TLS handshake")
		}
	})
}

// silentListener accepts TCP connections and never writes: a TLS handshake
// with it never completes.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestConnectTimeoutBoundsTLSHandshake(t *testing.T) {
	t.Parallel()
	addr := silentListener(t)
	for _, tt := range []struct {
		method string
		want   []string
	}{
		{"GET", []string{ClassConnectTimeout, ClassConnectTimeout}},
		{"POST", []string{ClassConnectTimeout, ClassConnectTimeout}}, // no connection was made: nothing left
	} {
		t.Run(tt.method, func(t *testing.T) {
			t.Parallel()
			c, _ := newClient(t)
			req := request(t, tt.method, "https://"+addr+"/", nil)
			req.Policy.ConnectTimeout = 100 * time.Millisecond
			req.Policy.MaxAttempts = 2
			start := time.Now()
			_, err := c.Do(context.Background(), req)
			var ex *ExhaustedError
			if !errors.As(err, &ex) {
				t.Fatalf("err = %v", err)
			}
			if got := classes(ex.Attempts); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("attempts %v, want %v", got, tt.want)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Error("a connect timeout reads as the deadline")
			}
			if ex.Sent {
				t.Error("Sent = true for a handshake that never completed")
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Fatalf("took %v", el)
			}
		})
	}
}

func TestMaxConnsPerHost(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(200))
	c, _ := newClient(t, WithMaxConnsPerHost(1))
	req := request(t, "GET", up.URL+"/", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := c.Do(context.Background(), req); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := up.conns.Load(); n != 1 {
		t.Fatalf("%d connections with WithMaxConnsPerHost(1)", n)
	}
}

func TestCloseClosesIdleConnections(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, status(200))
	c, _ := newClient(t)
	if _, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	within(t, up.closed, "the idle connection to be closed")
	if _, err := c.Do(context.Background(), request(t, "GET", up.URL+"/", nil)); err != nil {
		t.Fatalf("Client unusable after Close: %v", err)
	}
}

func TestReadTimeoutIsSilenceNotTotal(t *testing.T) {
	t.Parallel()
	// 40 bytes 20ms apart: 800ms in all, never 400ms of silence (the
	// margin keeps a loaded machine's scheduling stalls from reading as
	// silence).
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range 40 {
			<-tick.C
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
		}
	})
	c, _ := newClient(t)
	req := request(t, "GET", up.URL+"/", nil)
	req.Policy.ReadTimeout = 400 * time.Millisecond
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != strings.Repeat("x", 40) || len(resp.Attempts) != 1 {
		t.Fatalf("got %q after %v", resp.Body, classes(resp.Attempts))
	}
}

func TestHeadOfLargeResource(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5000000000")
		w.WriteHeader(200)
	})
	c, _ := newClient(t)
	req := request(t, "HEAD", up.URL+"/", nil)
	req.Policy.MaxResponseBytes = 1024
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || len(resp.Body) != 0 || resp.Header.Get("Content-Length") != "5000000000" {
		t.Fatalf("got %d, %d bytes, Content-Length %q", resp.Status, len(resp.Body), resp.Header.Get("Content-Length"))
	}
}

// A POST without a key but with an X-Idempotency-Key header is replayable to
// net/http: when its reused connection dies after the request was read, the
// transport re-sends it on a new connection. If that re-dial is refused, the
// attempt ends as connect_refused, yet the POST was delivered: it must not be
// retried. Were it retried, the upstream is back by then and would see the
// POST twice.
func TestResendThenRefusedIsNotRetried(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	var posts atomic.Int32
	first := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			io.WriteString(w, "warm")
			return
		}
		io.ReadAll(r.Body)
		posts.Add(1)
		l.Close() // the transport's re-dial is refused
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		conn.Close() // processed, but the answer is lost
	})}
	go first.Serve(l)
	t.Cleanup(func() { first.Close() })

	var waits int
	c, _ := newClient(t, WithSleep(func(ctx context.Context, d time.Duration) error { // the transport re-sends
		waits++
		if waits > 1 {
			return nil
		}
		// The upstream comes back during the backoff.
		l2, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		back := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			posts.Add(1)
		})}
		go back.Serve(l2)
		t.Cleanup(func() { back.Close() })
		return nil
	}))
	// The GET leaves an idle keep-alive connection for the POST to reuse.
	if _, err := c.Do(context.Background(), request(t, "GET", "http://"+addr+"/warm", nil)); err != nil {
		t.Fatal(err)
	}
	req := request(t, "POST", "http://"+addr+"/pay", []byte("charge=1"))
	req.Header.Set("X-Idempotency-Key", "k-1")

	resp, err := c.Do(context.Background(), req)
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("got %v, %v; want *ExhaustedError (posts delivered: %d)", resp, err, posts.Load())
	}
	if got, want := classes(ex.Attempts), []string{ClassReset, ClassConnectRefused}; !reflect.DeepEqual(got, want) {
		t.Errorf("attempts %v, want %v", got, want)
	}
	if !ex.Sent {
		t.Error("Sent = false for a POST the upstream processed")
	}
	if waits != 0 {
		t.Errorf("slept %d times, want no retry", waits)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("the upstream processed the POST %d times, want 1", n)
	}
}

// HEAD has no body whatever Content-Length says; the HTTP/2 transport gives
// it an empty body that is not http.NoBody.
func TestHeadOverHTTP2OfLargeResource(t *testing.T) {
	t.Parallel()
	proto := make(chan int, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto <- r.ProtoMajor
		w.Header().Set("Content-Length", "10000000")
		if r.Method != "HEAD" {
			w.Write(make([]byte, 10000000))
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c, _ := newClient(t, WithTLSConfig(srv.Client().Transport.(*http.Transport).TLSClientConfig))
	req := request(t, "HEAD", srv.URL+"/big", nil)
	req.Policy.MaxResponseBytes = 1 << 20

	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-proto; got != 2 {
		t.Fatalf("upstream saw HTTP/%d, want HTTP/2", got)
	}
	if resp.Status != 200 || resp.Body == nil || len(resp.Body) != 0 || resp.Header.Get("Content-Length") != "10000000" {
		t.Fatalf("got %d, body %v, Content-Length %q", resp.Status, resp.Body, resp.Header.Get("Content-Length"))
	}
}

// A request that waited for a connection (MaxConnsPerHost) and never got
// one sent nothing: Sent is false, and even an unkeyed POST may be retried.
func TestQueuedForConnectionIsUnsent(t *testing.T) {
	t.Parallel()
	holding := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		holding <- struct{}{}
		<-release
	})
	c, s := newClient(t, WithMaxConnsPerHost(1))
	held := make(chan error, 1)
	go func() {
		_, err := c.Do(context.Background(), request(t, "GET", up.URL+"/hold", nil))
		held <- err
	}()
	t.Cleanup(func() {
		close(release)
		<-held
	})
	within(t, holding, "the only connection to be taken")

	t.Run("keyed POST, one attempt", func(t *testing.T) {
		req := request(t, "POST", up.URL+"/charges", []byte("x"))
		req.Keyed = true
		req.Policy.MaxAttempts = 1
		req.Policy.AttemptTimeout = 100 * time.Millisecond
		_, err := c.Do(context.Background(), req)
		var ex *ExhaustedError
		if !errors.As(err, &ex) {
			t.Fatalf("err = %v, want *ExhaustedError", err)
		}
		if got, want := classes(ex.Attempts), []string{ClassAttemptTimeout}; !reflect.DeepEqual(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
		if ex.Sent {
			t.Error("Sent = true for a request that never had a connection")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Error("an attempt timeout reads as the deadline")
		}
	})
	t.Run("unkeyed POST is retried", func(t *testing.T) {
		req := request(t, "POST", up.URL+"/charges", []byte("x"))
		req.Policy.MaxAttempts = 2
		req.Policy.AttemptTimeout = 100 * time.Millisecond
		_, err := c.Do(context.Background(), req)
		var ex *ExhaustedError
		if !errors.As(err, &ex) {
			t.Fatalf("err = %v, want *ExhaustedError", err)
		}
		if got, want := classes(ex.Attempts), []string{ClassAttemptTimeout, ClassAttemptTimeout}; !reflect.DeepEqual(got, want) {
			t.Fatalf("attempts %v, want %v", got, want)
		}
		if ex.Sent {
			t.Error("Sent = true for a request that never had a connection")
		}
		if n := len(s.got()); n != 1 {
			t.Errorf("slept %d times, want 1", n)
		}
	})
	if n := len(up.seen()); n != 1 {
		t.Errorf("upstream saw %d requests, want only the one holding the connection", n)
	}
}

// A retryable answer is returned at once when the retry could not have the
// time it needs: after the wait, at least min(AttemptTimeout,
// max(ConnectTimeout, the last attempt's duration)) must be left. The clock
// runs ahead of real time (before: from the start; during: while the
// upstream answers), so no real time passes.
func TestRetryNeedsUsefulTimeLeft(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		before, during time.Duration // how far the clock jumps
		connect        time.Duration
		attempt        time.Duration
		wantStatus     int
		wantAttempts   int
	}{
		// 1s left, the first attempt took 9s: a retry would not finish.
		{"last attempt longer than the time left", 0, 9 * time.Second, 50 * time.Millisecond, 10 * time.Second, 503, 1},
		// 1s left, but an attempt is cut at 500ms anyway.
		{"attempt timeout shorter than the time left", 0, 9 * time.Second, 50 * time.Millisecond, 500 * time.Millisecond, 200, 2},
		// 8s left, the first attempt took 2s.
		{"enough time left", 0, 2 * time.Second, 50 * time.Millisecond, 10 * time.Second, 200, 2},
		// 2s left, a new connection may take 3s.
		{"connect timeout longer than the time left", 8 * time.Second, 0, 3 * time.Second, 10 * time.Second, 503, 1},
		{"connect timeout shorter than the time left", 8 * time.Second, 0, time.Second, 10 * time.Second, 200, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var skew atomic.Int64
			skew.Store(int64(tt.before))
			now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				skew.Add(int64(tt.during))
				status(503, "Retry-After", "0")(w, r)
			}, status(200))
			c, _ := newClient(t, WithNow(now))
			req := request(t, "GET", up.URL+"/", nil)
			req.Policy.TotalTimeout = 10 * time.Second
			req.Policy.ConnectTimeout = tt.connect
			req.Policy.AttemptTimeout = tt.attempt

			resp, err := c.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tt.wantStatus || len(resp.Attempts) != tt.wantAttempts || len(up.seen()) != tt.wantAttempts {
				t.Fatalf("got %d after %v (upstream saw %d), want %d after %d attempts",
					resp.Status, classes(resp.Attempts), len(up.seen()), tt.wantStatus, tt.wantAttempts)
			}
			if string(resp.Body) != http.StatusText(tt.wantStatus) {
				t.Errorf("body %q, want the answer's body", resp.Body)
			}
		})
	}
}

// TestBodyReadWhole reads bodies of many sizes, with a Content-Length and
// chunked, up to exactly the limit: each arrives intact, and each is read to
// its end, so that every call reuses the one connection.
func TestBodyReadWhole(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	// Around the first buffer of an unknown length (bodyChunk), past the
	// largest first buffer a Content-Length gets (bodyTrust), and the limit.
	for _, size := range []int{1, 511, 512, 513, 4096, bodyTrust, bodyTrust + 1, limit} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d bytes chunked=%v", size, chunked), func(t *testing.T) {
				t.Parallel()
				body := make([]byte, size)
				for i := range body {
					body[i] = byte('a' + i%26)
				}
				up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
					if !chunked {
						w.Header().Set("Content-Length", strconv.Itoa(size))
						w.Write(body)
						return
					}
					for i := 0; i < size; i += 300 {
						w.Write(body[i:min(i+300, size)])
						w.(http.Flusher).Flush()
					}
				})
				c, _ := newClient(t)
				req := request(t, "GET", up.URL+"/", nil)
				req.Policy.MaxResponseBytes = limit
				for range 5 {
					resp, err := c.Do(context.Background(), req)
					if err != nil {
						t.Fatalf("err = %v", err)
					}
					if !bytes.Equal(resp.Body, body) {
						t.Fatalf("body of %d bytes, want %d bytes as sent", len(resp.Body), size)
					}
				}
				if n := up.conns.Load(); n != 1 {
					t.Fatalf("5 sequential GETs opened %d connections, want 1", n)
				}
			})
		}
	}
}
