package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/egress"
)

// redirectTo answers with code and a Location of loc.
func redirectTo(code int, loc string) http.HandlerFunc { return status(code, "Location", loc) }

// follows returns a request for raw whose policy follows up to n redirects.
func follows(t *testing.T, method, raw string, body []byte, n int) *Request {
	t.Helper()
	req := request(t, method, raw, body)
	req.Policy.MaxRedirects = n
	return req
}

// hostOf returns the scheme://host:port of a test server URL, as
// egress.RedactURL prints it.
func hostOf(raw string) string { return strings.TrimSuffix(raw, "/") }

// mapResolver resolves the names it holds and nothing else.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestRedirectToAnotherTarget(t *testing.T) {
	t.Parallel()
	b := newUpstream(t, status(503), status(200))
	a := newUpstream(t, status(503), redirectTo(302, b.URL+"/to?token=s3cret"))
	c, s := newClient(t)
	req := follows(t, "GET", a.URL+"/from", nil, 1)
	req.Policy.MaxAttempts = 2
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || resp.Stopped != "" || string(resp.Body) != "OK" {
		t.Fatalf("got %d %q stopped %q", resp.Status, resp.Body, resp.Stopped)
	}
	// Each hop retried its 503 once: the hops have MaxAttempts each, and the
	// log is numbered across them.
	hop := hostOf(b.URL) + "/to?token=xxxxx"
	want := []Attempt{
		{Number: 1, Status: 503},
		{Number: 2, Status: 302, Backoff: 50 * time.Millisecond, BackoffReason: ReasonBackoff},
		{Number: 3, Status: 503, URL: hop},
		{Number: 4, Status: 200, Backoff: 50 * time.Millisecond, BackoffReason: ReasonBackoff, URL: hop},
	}
	for i := range resp.Attempts {
		resp.Attempts[i].Duration = 0
	}
	if !reflect.DeepEqual(resp.Attempts, want) {
		t.Fatalf("attempts\n got %+v\nwant %+v", resp.Attempts, want)
	}
	if got := s.got(); len(got) != 2 {
		t.Errorf("waits %v", got)
	}
	got := b.seen()
	if len(got) != 2 || got[1].method != "GET" || got[1].uri != "/to?token=s3cret" || got[1].host != b.Listener.Addr().String() {
		t.Fatalf("B saw %+v", got)
	}
	keys := c.pool.keys()
	slices.Sort(keys)
	want2 := []string{targetKey(req.URL), targetKey(request(t, "GET", b.URL, nil).URL)}
	slices.Sort(want2)
	if !slices.Equal(keys, want2) {
		t.Errorf("pool keys %v, want A's and B's targets %v", keys, want2)
	}

	// The 302's body was drained: A's connection went back to its pool.
	if _, err := c.Do(context.Background(), follows(t, "GET", a.URL+"/from", nil, 1)); err != nil {
		t.Fatal(err)
	}
	if n := a.conns.Load(); n != 1 {
		t.Errorf("A saw %d connections; the redirect's connection was not reused", n)
	}
}

func TestRedirectMethodAndBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code       int
		method     string
		wantMethod string
		keepBody   bool
	}{
		{301, "POST", "GET", false},
		{302, "POST", "GET", false},
		{303, "POST", "GET", false},
		{303, "PUT", "GET", false},
		{303, "DELETE", "GET", false},
		{303, "HEAD", "HEAD", false},
		{303, "GET", "GET", false},
		{307, "POST", "POST", true},
		{308, "POST", "POST", true},
		{307, "PATCH", "PATCH", true},
		{308, "PUT", "PUT", true},
		{302, "PUT", "PUT", true}, // only POST becomes GET on 301/302
		{301, "PATCH", "PATCH", true},
		{302, "GET", "GET", false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.code)+"/"+tt.method, func(t *testing.T) {
			t.Parallel()
			b := newUpstream(t, status(200))
			a := newUpstream(t, redirectTo(tt.code, b.URL+"/next"))
			c, _ := newClient(t)
			var body []byte
			if tt.method != "GET" && tt.method != "HEAD" {
				body = []byte(`{"amount":10}`)
			}
			req := follows(t, tt.method, a.URL+"/", body, 1)
			req.Header = http.Header{"Content-Type": {"application/json"}, "Content-Language": {"en"}}
			resp, err := c.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 || len(resp.Attempts) != 2 {
				t.Fatalf("status %d, attempts %+v", resp.Status, resp.Attempts)
			}
			got := b.seen()[0]
			if got.method != tt.wantMethod {
				t.Errorf("B saw %s, want %s", got.method, tt.wantMethod)
			}
			wantBody, wantType := "", ""
			if tt.keepBody {
				wantBody, wantType = string(body), "application/json"
			} else if tt.method == tt.wantMethod {
				wantType = "application/json" // nothing changed, nothing dropped
			}
			if string(got.body) != wantBody || got.header.Get("Content-Type") != wantType {
				t.Errorf("B got body %q Content-Type %q, want %q %q", got.body, got.header.Get("Content-Type"), wantBody, wantType)
			}
			if got.header.Get("Content-Language") != "" && wantType == "" {
				t.Errorf("Content-Language kept after the body was dropped")
			}
			if a0 := a.seen()[0]; a0.method != tt.method || string(a0.body) != string(body) {
				t.Errorf("A saw %s %q", a0.method, a0.body)
			}
		})
	}
}

func TestRedirectKeyedPostIsResentWithItsKey(t *testing.T) {
	t.Parallel()
	b := newUpstream(t, status(201))
	a := newUpstream(t, redirectTo(307, b.URL+"/payments"))
	c, _ := newClient(t)
	req := follows(t, "POST", a.URL+"/payments", []byte("amount=10"), 1)
	req.Keyed = true
	req.Header = http.Header{"Idempotency-Key": {"k-123"}, "Authorization": {"Bearer secret"}}
	resp, err := c.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := b.seen()
	if resp.Status != 201 || len(got) != 1 {
		t.Fatalf("status %d, B saw %d requests", resp.Status, len(got))
	}
	if got[0].method != "POST" || string(got[0].body) != "amount=10" || got[0].header.Get("Idempotency-Key") != "k-123" {
		t.Errorf("B saw %s %q key %q", got[0].method, got[0].body, got[0].header.Get("Idempotency-Key"))
	}
	if v := got[0].header.Get("Authorization"); v != "" {
		t.Errorf("Authorization %q crossed to another host", v)
	}
}

func TestRedirectCredentials(t *testing.T) {
	t.Parallel()
	creds := http.Header{
		"Authorization": {"Bearer secret"},
		"Cookie":        {"session=abc"},
		"X-Trace":       {"t1"},
	}
	check := func(t *testing.T, who string, got seen, wantCreds bool) {
		t.Helper()
		for _, name := range []string{"Authorization", "Cookie"} {
			if has := got.header.Get(name) != ""; has != wantCreds {
				t.Errorf("%s: %s present = %v, want %v", who, name, has, wantCreds)
			}
		}
		if got.header.Get("X-Trace") != "t1" {
			t.Errorf("%s: X-Trace dropped", who)
		}
	}

	t.Run("same target keeps them", func(t *testing.T) {
		t.Parallel()
		a := newUpstream(t, redirectTo(302, "/elsewhere"), status(200))
		c, _ := newClient(t)
		req := follows(t, "GET", a.URL+"/", nil, 1)
		req.Header = creds
		if _, err := c.Do(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		got := a.seen()
		if len(got) != 2 {
			t.Fatalf("A saw %d requests", len(got))
		}
		check(t, "first", got[0], true)
		check(t, "hop", got[1], true)
	})
	t.Run("another target drops them, also on the way back", func(t *testing.T) {
		t.Parallel()
		var a *upstream
		b := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			redirectTo(302, a.URL+"/back")(w, r)
		})
		a = newUpstream(t, redirectTo(302, b.URL+"/"), status(200))
		c, _ := newClient(t)
		req := follows(t, "GET", a.URL+"/", nil, 2)
		req.Header = creds
		resp, err := c.Do(context.Background(), req)
		if err != nil || resp.Status != 200 || len(resp.Attempts) != 3 {
			t.Fatalf("err %v resp %+v", err, resp)
		}
		check(t, "A", a.seen()[0], true)
		check(t, "B", b.seen()[0], false)
		check(t, "A again", a.seen()[1], false)
		if req.Header.Get("Authorization") == "" {
			t.Errorf("Do modified the request's headers")
		}
	})
	t.Run("another port of the same host is another target", func(t *testing.T) {
		t.Parallel()
		b := newUpstream(t, status(200))
		_, port, _ := net.SplitHostPort(b.Listener.Addr().String())
		a := newUpstream(t, redirectTo(302, "http://127.0.0.1:"+port+"/"))
		c, _ := newClient(t)
		req := follows(t, "GET", a.URL+"/", nil, 1)
		req.Header = creds
		if _, err := c.Do(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		check(t, "B", b.seen()[0], false)
	})
}

func TestRedirectRelativeLocation(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, redirectTo(301, "next?page=2"), status(200))
	c, _ := newClient(t)
	resp, err := c.Do(context.Background(), follows(t, "GET", a.URL+"/dir/start?page=1", nil, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.seen(); len(got) != 2 || got[1].uri != "/dir/next?page=2" {
		t.Fatalf("A saw %+v", got)
	}
	if u := resp.Attempts[1].URL; u != hostOf(a.URL)+"/dir/next?page=xxxxx" {
		t.Errorf("Attempt.URL %q", u)
	}
}

func TestRedirectLoopStopsAtTheLimit(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, redirectTo(302, "/again"))
	c, _ := newClient(t)
	resp, err := c.Do(context.Background(), follows(t, "GET", a.URL+"/", nil, 3))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 302 || resp.Stopped != StopMaxRedirects || string(resp.Body) != "Found" || resp.Header.Get("Location") != "/again" {
		t.Fatalf("got %d %q stopped %q", resp.Status, resp.Body, resp.Stopped)
	}
	if n := len(a.seen()); n != 4 || len(resp.Attempts) != 4 {
		t.Fatalf("A saw %d requests, %d attempts; want 4 (the request and 3 hops)", n, len(resp.Attempts))
	}
	for i, at := range resp.Attempts {
		if at.Number != i+1 || at.Status != 302 || (i > 0) != (at.URL != "") {
			t.Errorf("attempt %+v", at)
		}
	}
	if d := resp.Attempts[3].Detail; !strings.Contains(d, "at most 3") {
		t.Errorf("last attempt's detail %q does not name the limit", d)
	}
}

// refusal is a caller's own error type, returned by its CheckRedirect.
type refusal struct{ host string }

func (e *refusal) Error() string { return "redirect to " + e.host + " is not allowed for this caller" }

func TestCheckRedirect(t *testing.T) {
	t.Parallel()
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		b := newUpstream(t, status(200))
		a := newUpstream(t, redirectTo(307, b.URL+"/x?sig=s3cret"))
		c, _ := newClient(t)
		req := follows(t, "POST", a.URL+"/", []byte("x"), 2)
		var asked []string
		req.CheckRedirect = func(u *url.URL) error {
			asked = append(asked, u.String())
			return &refusal{host: u.Host}
		}
		_, err := c.Do(context.Background(), req)
		var mine *refusal
		var re *RedirectError
		var ex *ExhaustedError
		if !errors.As(err, &mine) || !errors.As(err, &re) || !errors.As(err, &ex) {
			t.Fatalf("err = %v (%T)", err, err)
		}
		if mine.host != b.Listener.Addr().String() || re.Status != 307 || re.URL != hostOf(b.URL)+"/x?sig=xxxxx" {
			t.Errorf("refusal %+v, redirect error %+v", mine, re)
		}
		if !ex.Sent || len(ex.Attempts) != 1 || ex.Attempts[0].Status != 307 || ex.Stopped != "" {
			t.Errorf("Sent %v, attempts %+v, stopped %q", ex.Sent, ex.Attempts, ex.Stopped)
		}
		if want := []string{b.URL + "/x?sig=s3cret"}; !reflect.DeepEqual(asked, want) {
			t.Errorf("CheckRedirect asked %v, want %v", asked, want)
		}
		if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "not allowed for this caller") {
			t.Errorf("message %q", err)
		}
		if n := b.conns.Load(); n != 0 {
			t.Errorf("B saw %d connections", n)
		}
	})
	t.Run("changing the URL changes nothing", func(t *testing.T) {
		t.Parallel()
		b := newUpstream(t, status(200))
		a := newUpstream(t, redirectTo(302, b.URL+"/x"))
		c, _ := newClient(t)
		req := follows(t, "GET", a.URL+"/", nil, 1)
		req.CheckRedirect = func(u *url.URL) error {
			u.Host, u.Path = "127.0.0.1:1", "/other"
			return nil
		}
		resp, err := c.Do(context.Background(), req)
		if err != nil || resp.Status != 200 || len(b.seen()) != 1 || b.seen()[0].uri != "/x" {
			t.Fatalf("err %v, resp %+v", err, resp)
		}
	})
	t.Run("not asked without MaxRedirects", func(t *testing.T) {
		t.Parallel()
		b := newUpstream(t, status(200))
		a := newUpstream(t, redirectTo(302, b.URL+"/x"))
		c, _ := newClient(t)
		req := follows(t, "GET", a.URL+"/", nil, 0)
		var asked atomic.Int64
		req.CheckRedirect = func(*url.URL) error { asked.Add(1); return nil }
		resp, err := c.Do(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 302 || resp.Stopped != "" || resp.Header.Get("Location") != b.URL+"/x" || string(resp.Body) != "Found" ||
			len(resp.Attempts) != 1 || resp.Attempts[0].Detail != "" {
			t.Fatalf("resp %+v", resp)
		}
		if asked.Load() != 0 || b.conns.Load() != 0 {
			t.Fatalf("CheckRedirect asked %d times, B saw %d connections", asked.Load(), b.conns.Load())
		}
	})
}

func TestRedirectUnusableLocationIsTheAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, loc  string
		wantDetail bool
	}{
		{"no Location", "", false},
		{"ftp", "ftp://files.example.com/x", true},
		{"javascript", "javascript:alert(1)", true},
		{"mailto", "mailto:ops@example.com", true},
		{"unparsable", "http://[::1", true},
		{"credentials", "http://user:pw-s3cret@127.0.0.1/", true},
		{"port out of range", "http://127.0.0.1:99999/", true},
		{"no host", "http:///x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.loc != "" {
					w.Header()["Location"] = []string{tt.loc}
				}
				w.WriteHeader(302)
				w.Write([]byte("see elsewhere"))
			})
			c, _ := newClient(t)
			req := follows(t, "GET", a.URL+"/", nil, 3)
			var asked atomic.Int64
			req.CheckRedirect = func(*url.URL) error { asked.Add(1); return nil }
			resp, err := c.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 302 || resp.Stopped != "" || string(resp.Body) != "see elsewhere" || len(resp.Attempts) != 1 {
				t.Fatalf("resp %d %q stopped %q attempts %+v", resp.Status, resp.Body, resp.Stopped, resp.Attempts)
			}
			if d := resp.Attempts[0].Detail; (d != "") != tt.wantDetail || strings.Contains(d, "s3cret") {
				t.Errorf("detail %q", d)
			}
			if asked.Load() != 0 || len(a.seen()) != 1 {
				t.Errorf("CheckRedirect asked %d times; A saw %d requests", asked.Load(), len(a.seen()))
			}
		})
	}
}

func TestRedirectToRefusedAddress(t *testing.T) {
	t.Parallel()
	resolver := mapResolver{"internal.test": {netip.MustParseAddr("10.0.0.1")}}
	tests := []struct {
		name, loc string
		literal   bool // refused before a target is made for it
	}{
		{"metadata literal", "http://169.254.169.254/latest/meta-data/", true},
		{"private literal", "http://10.0.0.1:8080/", true},
		{"name of a private address", "http://internal.test/admin", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newUpstream(t, redirectTo(302, tt.loc))
			s := &sleeps{}
			g := egress.New(egress.WithAllow(netip.MustParsePrefix("127.0.0.0/8")), egress.WithResolver(resolver))
			c := New(g, WithSleep(s.sleep))
			t.Cleanup(c.Close)
			_, err := c.Do(context.Background(), follows(t, "GET", a.URL+"/", nil, 2))
			var ex *ExhaustedError
			var de *egress.DeniedError
			if !errors.Is(err, egress.ErrDenied) || !errors.As(err, &ex) || !errors.As(err, &de) {
				t.Fatalf("err = %v, want a denial", err)
			}
			hop, _ := egress.ParseURL(tt.loc)
			if !ex.Sent || len(ex.Attempts) != 2 || ex.Attempts[0].Status != 302 ||
				ex.Attempts[1].Error != ClassDenied || ex.Attempts[1].URL != hop.String() {
				t.Fatalf("Sent %v attempts %+v", ex.Sent, ex.Attempts)
			}
			if len(s.got()) != 0 {
				t.Errorf("a refusal was retried: waits %v", s.got())
			}
			keys := c.pool.keys()
			if tt.literal && len(keys) != 1 {
				t.Errorf("pool keys %v: a target was made for the refused literal", keys)
			}
		})
	}
}

func TestRedirectHopHasItsOwnBreaker(t *testing.T) {
	t.Parallel()
	b := newUpstream(t, status(500))
	a := newUpstream(t, redirectTo(302, b.URL+"/"), status(200))
	c, _ := newClient(t)
	brk := Breaker{ConsecutiveFailures: 1, OpenFor: time.Hour}

	direct := request(t, "GET", b.URL+"/", nil)
	direct.Policy.MaxAttempts, direct.Policy.Breaker = 1, brk
	if resp, err := c.Do(context.Background(), direct); err != nil || resp.Status != 500 {
		t.Fatalf("opening B's breaker: %v %+v", err, resp)
	}

	req := follows(t, "GET", a.URL+"/", nil, 1)
	req.Policy.Breaker = brk
	_, err := c.Do(context.Background(), req)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Stopped != StopBreaker || !ex.Sent || len(ex.Attempts) != 2 ||
		ex.Attempts[1].Error != ClassBreakerOpen || ex.Attempts[1].URL != hostOf(b.URL)+"/" {
		t.Fatalf("err %v, %+v", err, ex)
	}
	if n := len(b.seen()); n != 1 {
		t.Errorf("B saw %d requests through its open breaker", n)
	}
	// A's own breaker is closed: the redirect was a success there.
	again := request(t, "GET", a.URL+"/", nil)
	again.Policy.Breaker = brk
	resp, err := c.Do(context.Background(), again)
	if err != nil || resp.Status != 200 {
		t.Fatalf("A: %v %+v", err, resp)
	}
}

func TestRedirectTotalTimeoutBoundsEveryHop(t *testing.T) {
	t.Parallel()
	done := make(chan struct{}, 1)
	b := newUpstream(t, hang(done))
	a := newUpstream(t, redirectTo(302, b.URL+"/"))
	c, _ := newClient(t)
	req := follows(t, "GET", a.URL+"/", nil, 1)
	req.Policy.TotalTimeout = 200 * time.Millisecond
	_, err := c.Do(context.Background(), req)
	var ex *ExhaustedError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ex) || len(ex.Attempts) != 2 || ex.Attempts[1].Error != ClassDeadline {
		t.Fatalf("err %v", err)
	}
	within(t, done, "B's request to be cancelled")
}

// hopPolicies is a Request.HopPolicy that gives each hop the policy of its
// host:port, as the service resolves each target's own rule, and records
// the hops it was asked about.
type hopPolicies struct {
	mu     sync.Mutex
	byHost map[string]Policy
	asked  []string
}

func (h *hopPolicies) policy(u *url.URL) (Policy, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked = append(h.asked, u.String())
	p, ok := h.byHost[u.Host]
	if !ok {
		return Policy{}, &refusal{host: u.Host}
	}
	return p, nil
}

func hostPort(raw string) string { return strings.TrimPrefix(raw, "http://") }

// A call to A that redirects to B runs the hop with B's own settings: B's
// open breaker stays open and refuses the hop, whatever A's breaker
// settings are. Without a HopPolicy the hop runs with A's settings, which
// must not replace B's breaker either.
func TestRedirectHopKeepsTheHopTargetsBreaker(t *testing.T) {
	t.Parallel()
	for _, withHopPolicy := range []bool{true, false} {
		t.Run(fmt.Sprintf("HopPolicy %v", withHopPolicy), func(t *testing.T) {
			t.Parallel()
			b := newUpstream(t, status(500), status(200))
			a := newUpstream(t, redirectTo(302, b.URL+"/"))
			c, _ := newClient(t)

			policyB := policy()
			policyB.MaxAttempts, policyB.Breaker = 1, Breaker{ConsecutiveFailures: 1, OpenFor: time.Hour}
			direct := request(t, "GET", b.URL+"/", nil)
			direct.Policy = policyB
			if resp, err := c.Do(context.Background(), direct); err != nil || resp.Status != 500 {
				t.Fatalf("opening B's breaker: %v %+v", err, resp)
			}

			req := follows(t, "GET", a.URL+"/", nil, 1)
			req.Policy.Breaker = Breaker{ConsecutiveFailures: 3, OpenFor: time.Minute} // A's rule: not B's
			hops := &hopPolicies{byHost: map[string]Policy{hostPort(b.URL): policyB}}
			if withHopPolicy {
				req.HopPolicy = hops.policy
			}
			_, err := c.Do(context.Background(), req)
			var ex *ExhaustedError
			if !errors.As(err, &ex) || ex.Stopped != StopBreaker || !ex.Sent || len(ex.Attempts) != 2 ||
				ex.Attempts[1].Error != ClassBreakerOpen || ex.Attempts[1].URL != hostOf(b.URL)+"/" ||
				!strings.Contains(ex.Attempts[1].Detail, "after 1 consecutive failures") {
				t.Fatalf("err %v, %+v; want the hop refused by B's open breaker", err, ex)
			}
			if n := len(b.seen()); n != 1 {
				t.Errorf("B saw %d requests through its open breaker", n)
			}
			if withHopPolicy && !reflect.DeepEqual(hops.asked, []string{b.URL + "/"}) {
				t.Errorf("HopPolicy asked about %v", hops.asked)
			}
			// B's breaker is the one it was: still open for direct calls.
			_, err = c.Do(context.Background(), direct)
			refusedByBreaker(t, err, "after 1 consecutive failures")
		})
	}
}

// A's rule has no retry budget; B's has one that grants no retry. A hop to
// B is bound by B's budget.
func TestRedirectHopUsesTheHopTargetsBudget(t *testing.T) {
	t.Parallel()
	for _, withHopPolicy := range []bool{true, false} {
		t.Run(fmt.Sprintf("HopPolicy %v", withHopPolicy), func(t *testing.T) {
			t.Parallel()
			b := newUpstream(t, status(503))
			a := newUpstream(t, redirectTo(302, b.URL+"/"))
			c, _ := newClient(t)

			policyB := policy()
			policyB.Budget = Budget{Window: 10 * time.Second} // no ratio, no floor: no retries
			req := follows(t, "GET", a.URL+"/", nil, 1)
			req.Policy.Budget = Budget{} // A: none
			if withHopPolicy {
				req.HopPolicy = (&hopPolicies{byHost: map[string]Policy{hostPort(b.URL): policyB}}).policy
			} else {
				// Without a HopPolicy, B's budget applies when B's own calls
				// built it.
				direct := request(t, "GET", b.URL+"/", nil)
				direct.Policy = policyB
				if resp, err := c.Do(context.Background(), direct); err != nil || resp.Stopped != StopBudget {
					t.Fatalf("direct call to B: %v %+v", err, resp)
				}
			}
			resp, err := c.Do(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 503 || resp.Stopped != StopBudget || len(resp.Attempts) != 2 || resp.Attempts[0].Status != 302 {
				t.Fatalf("got %d stopped %q after %v; want B's 503, its retry refused by B's budget", resp.Status, resp.Stopped, classes(resp.Attempts))
			}
		})
	}
}

// The hop runs with the policy HopPolicy gives (B's MaxConns for B's
// transport, B's MaxAttempts), except for TotalTimeout and MaxRedirects,
// which stay the request's.
func TestRedirectHopPolicy(t *testing.T) {
	t.Parallel()
	t.Run("the hop's own settings", func(t *testing.T) {
		t.Parallel()
		b := newUpstream(t, status(503))
		a := newUpstream(t, redirectTo(302, b.URL+"/"))
		c, _ := newClient(t)
		policyB := policy()
		policyB.MaxConns, policyB.MaxAttempts = 2, 1
		req := follows(t, "GET", a.URL+"/", nil, 1)
		req.Policy.MaxConns = 7
		req.HopPolicy = (&hopPolicies{byHost: map[string]Policy{hostPort(b.URL): policyB}}).policy
		resp, err := c.Do(context.Background(), req)
		if err != nil || resp.Status != 503 || resp.Stopped != StopMaxAttempts || len(resp.Attempts) != 2 {
			t.Fatalf("err %v, resp %+v; want B's 503 after B's one attempt", err, resp)
		}
		if n := maxConnsOf(poolTarget(t, c, a.URL).transport); n != 7 {
			t.Errorf("A's transport has %d connections, want 7", n)
		}
		if n := maxConnsOf(poolTarget(t, c, b.URL).transport); n != 2 {
			t.Errorf("B's transport has %d connections, want B's 2", n)
		}
	})
	t.Run("the request's hop limit", func(t *testing.T) {
		t.Parallel()
		cc := newUpstream(t, status(200))
		b := newUpstream(t, redirectTo(302, cc.URL+"/"))
		a := newUpstream(t, redirectTo(302, b.URL+"/"))
		c, _ := newClient(t)
		policyB := policy()
		policyB.MaxRedirects = 10
		req := follows(t, "GET", a.URL+"/", nil, 1)
		req.HopPolicy = (&hopPolicies{byHost: map[string]Policy{hostPort(b.URL): policyB, hostPort(cc.URL): policy()}}).policy
		resp, err := c.Do(context.Background(), req)
		if err != nil || resp.Status != 302 || resp.Stopped != StopMaxRedirects || len(cc.seen()) != 0 {
			t.Fatalf("err %v, resp %+v, C saw %d; want B's 302 as the answer after the one hop", err, resp, len(cc.seen()))
		}
	})
	t.Run("the request's total timeout", func(t *testing.T) {
		t.Parallel()
		done := make(chan struct{}, 1)
		b := newUpstream(t, hang(done))
		a := newUpstream(t, redirectTo(302, b.URL+"/"))
		c, _ := newClient(t)
		policyB := policy()
		policyB.TotalTimeout = time.Hour
		req := follows(t, "GET", a.URL+"/", nil, 1)
		req.Policy.TotalTimeout = 200 * time.Millisecond
		req.HopPolicy = (&hopPolicies{byHost: map[string]Policy{hostPort(b.URL): policyB}}).policy
		_, err := c.Do(context.Background(), req)
		var ex *ExhaustedError
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ex) || ex.Attempts[1].Detail != "total timeout of 200ms ran out" {
			t.Fatalf("err %v", err)
		}
		within(t, done, "B's request to be cancelled")
	})
	t.Run("an error refuses the hop", func(t *testing.T) {
		t.Parallel()
		b := newUpstream(t, status(200))
		a := newUpstream(t, redirectTo(307, b.URL+"/x?sig=s3cret"))
		c, _ := newClient(t)
		req := follows(t, "POST", a.URL+"/", []byte("x"), 1)
		hops := &hopPolicies{} // knows no host
		req.HopPolicy = hops.policy
		_, err := c.Do(context.Background(), req)
		var mine *refusal
		var re *RedirectError
		var ex *ExhaustedError
		if !errors.As(err, &mine) || !errors.As(err, &re) || !errors.As(err, &ex) {
			t.Fatalf("err = %v (%T)", err, err)
		}
		if re.Status != 307 || re.URL != hostOf(b.URL)+"/x?sig=xxxxx" || !ex.Sent || len(ex.Attempts) != 1 {
			t.Errorf("redirect error %+v, Sent %v, attempts %+v", re, ex.Sent, ex.Attempts)
		}
		if b.conns.Load() != 0 {
			t.Error("B was reached")
		}
	})
	t.Run("asked after CheckRedirect, with a copy", func(t *testing.T) {
		t.Parallel()
		b := newUpstream(t, status(200))
		a := newUpstream(t, redirectTo(302, b.URL+"/x"))
		c, _ := newClient(t)
		req := follows(t, "GET", a.URL+"/", nil, 1)
		var order []string
		req.CheckRedirect = func(*url.URL) error { order = append(order, "check"); return nil }
		req.HopPolicy = func(u *url.URL) (Policy, error) {
			order = append(order, "policy")
			u.Host, u.Path = "127.0.0.1:1", "/other"
			return policy(), nil
		}
		resp, err := c.Do(context.Background(), req)
		if err != nil || resp.Status != 200 || len(b.seen()) != 1 || b.seen()[0].uri != "/x" {
			t.Fatalf("err %v, resp %+v", err, resp)
		}
		if !reflect.DeepEqual(order, []string{"check", "policy"}) {
			t.Errorf("order %v", order)
		}
		req.CheckRedirect = func(u *url.URL) error { return &refusal{host: u.Host} }
		order = nil
		if _, err := c.Do(context.Background(), req); !errors.As(err, new(*refusal)) || len(order) != 0 {
			t.Errorf("err %v, HopPolicy asked %v after CheckRedirect refused", err, order)
		}
	})
}
