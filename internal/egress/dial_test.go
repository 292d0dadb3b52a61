package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/nettest"
)

// listen starts a TCP listener on 127.0.0.1:0, closed when the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// assertNothingAccepted proves the listener's accept queue held no
// connection before this call: it queues a marked connection and checks
// that the first connection accepted is that one.
func assertNothingAccepted(t *testing.T, ln net.Listener) {
	t.Helper()
	marker, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial marker: %v", err)
	}
	defer marker.Close()
	if _, err := marker.Write([]byte{'M'}); err != nil {
		t.Fatalf("write marker: %v", err)
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer conn.Close()
	// The deadline only bounds a failing run, where the first connection
	// accepted is one the guard made and it never writes.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'M' {
		t.Fatalf("first accepted connection is not the marker (read %q, %v): the guard connected", b, err)
	}
}

var errSystemResolver = errors.New("the dialer resolved a name itself")

// recordingDialer returns a dialer whose Control records each socket
// address and fails those listed in fail. Its own resolver always fails, so
// a name handed to the dialer instead of a checked IP cannot connect.
func recordingDialer(fail map[string]error) (*net.Dialer, func() []string) {
	var mu sync.Mutex
	var seen []string
	d := &net.Dialer{
		Resolver: &net.Resolver{
			PreferGo: true,
			Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, errSystemResolver
			},
		},
		Control: func(network, address string, _ syscall.RawConn) error {
			mu.Lock()
			seen = append(seen, address)
			mu.Unlock()
			return fail[address]
		},
	}
	return d, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func TestDialContextRefusesLoopback(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	r := newFakeResolver()
	r.addrs["svc.test"] = []string{"127.0.0.1"}
	r.addrs["mixed.test"] = []string{"93.184.215.14", "127.0.0.1"}

	for _, host := range []string{"127.0.0.1", "svc.test", "mixed.test", "2130706433", "localhost"} {
		d, seen := recordingDialer(nil)
		dial := New(WithResolver(r)).DialContext(d)
		conn, err := dial(t.Context(), "tcp", net.JoinHostPort(host, port))
		if err == nil {
			conn.Close()
			t.Fatalf("dial %s: connected, want refused", host)
		}
		var de *DeniedError
		if !errors.Is(err, ErrDenied) || !errors.As(err, &de) || de.Reason != loopback {
			t.Errorf("dial %s: error %v, want a loopback *DeniedError", host, err)
		}
		if got := seen(); len(got) != 0 {
			t.Errorf("dial %s: dialer reached socket addresses %v", host, got)
		}
	}
	assertNothingAccepted(t, ln)
}

func TestDialContextAllowed(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	r := newFakeResolver()
	r.addrs["svc.test"] = []string{"127.0.0.1"}

	for _, host := range []string{"127.0.0.1", "svc.test", "SVC.test."} {
		d, seen := recordingDialer(nil)
		g := New(WithResolver(r), WithAllow(netip.MustParsePrefix("127.0.0.0/8")))
		conn, err := g.DialContext(d)(t.Context(), "tcp", net.JoinHostPort(host, port))
		if err != nil {
			t.Fatalf("dial %s: %v", host, err)
		}
		if got := conn.RemoteAddr().String(); got != ln.Addr().String() {
			t.Errorf("dial %s: connected to %s, want %s", host, got, ln.Addr())
		}
		srv, err := ln.Accept()
		if err != nil {
			t.Fatalf("accept: %v", err)
		}
		if srv.RemoteAddr().String() != conn.LocalAddr().String() {
			t.Errorf("dial %s: listener accepted %s, client is %s", host, srv.RemoteAddr(), conn.LocalAddr())
		}
		srv.Close()
		conn.Close()
		// The dialer saw the checked IP literal, never the name.
		if got, want := seen(), []string{"127.0.0.1:" + port}; !slices.Equal(got, want) {
			t.Errorf("dial %s: dialer socket addresses %v, want %v", host, got, want)
		}
	}
	if got, want := r.questions(), []string{"ip svc.test", "ip svc.test"}; !slices.Equal(got, want) {
		t.Errorf("resolver asked %q, want %q", got, want)
	}
}

func TestDialContextFallsThrough(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	r := newFakeResolver()
	r.addrs["multi.test"] = []string{"127.0.0.2", "127.0.0.3", "127.0.0.1"}
	errFirst, errSecond := errors.New("first refused"), errors.New("second refused")
	d, seen := recordingDialer(map[string]error{
		"127.0.0.2:" + port: errFirst,
		"127.0.0.3:" + port: errSecond,
	})
	g := New(WithResolver(r), WithAllow(netip.MustParsePrefix("127.0.0.0/8")))

	conn, err := g.DialContext(d)(t.Context(), "tcp", net.JoinHostPort("multi.test", port))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != ln.Addr().String() {
		t.Errorf("connected to %s, want %s", got, ln.Addr())
	}
	want := []string{"127.0.0.2:" + port, "127.0.0.3:" + port, "127.0.0.1:" + port}
	if got := seen(); !slices.Equal(got, want) {
		t.Errorf("dial order %v, want %v", got, want)
	}
}

func TestDialContextReturnsFirstError(t *testing.T) {
	t.Parallel()
	r := newFakeResolver()
	r.addrs["down.test"] = []string{"127.0.0.2", "127.0.0.3"}
	errFirst, errSecond := errors.New("first refused"), errors.New("second refused")
	d, seen := recordingDialer(map[string]error{"127.0.0.2:80": errFirst, "127.0.0.3:80": errSecond})
	g := New(WithResolver(r), WithAllow(netip.MustParsePrefix("127.0.0.0/8")))

	_, err := g.DialContext(d)(t.Context(), "tcp", "down.test:80")
	if !errors.Is(err, errFirst) || errors.Is(err, errSecond) {
		t.Errorf("dial error %v, want the first address's error", err)
	}
	if got := seen(); len(got) != 2 {
		t.Errorf("dialled %v, want both addresses tried", got)
	}
}

func TestDialContextConnectionRefused(t *testing.T) {
	t.Parallel()
	addr := nettest.RefusedAddr(t)
	g := New(WithAllow(netip.MustParsePrefix("127.0.0.0/8")))
	_, err := g.DialContext(nil)(t.Context(), "tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial closed port: %v, want ECONNREFUSED", err)
	}
	if errors.Is(err, ErrDenied) || IsDNSError(err) {
		t.Errorf("dial closed port: %v is classified as denied or DNS", err)
	}
}

func TestDialContextErrors(t *testing.T) {
	t.Parallel()
	r := newFakeResolver()
	r.addrs["v6.test"] = []string{"2606:4700:4700::1111"}
	tests := []struct {
		name    string
		network string
		addr    string
		check   func(error) bool
	}{
		{"dns failure", "tcp", "missing.example:443", IsDNSError},
		{"no port", "tcp", "example.com", isMalformed},
		{"port zero", "tcp", "example.com:0", isMalformed},
		{"port too big", "tcp", "example.com:65536", isMalformed},
		{"named port", "tcp", "example.com:http", isMalformed},
		{"bad host", "tcp", "a*b.example:80", isMalformed},
		{"udp", "udp", "8.8.8.8:53", func(err error) bool { return err != nil && !errors.Is(err, ErrDenied) }},
		{"unix", "unix", "/run/x.sock", func(err error) bool { return err != nil }},
		{"tcp4 with only v6", "tcp4", "v6.test:443", func(err error) bool {
			return err != nil && err.Error() == "egress: v6.test has no address for network tcp4"
		}},
		{"denied before family filter", "tcp6", "mixed.example:443", func(err error) bool { return errors.Is(err, ErrDenied) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, seen := recordingDialer(nil)
			conn, err := New(WithResolver(r)).DialContext(d)(t.Context(), tt.network, tt.addr)
			if conn != nil {
				conn.Close()
			}
			if !tt.check(err) {
				t.Errorf("dial %s %s: unexpected error %v", tt.network, tt.addr, err)
			}
			if got := seen(); len(got) != 0 {
				t.Errorf("dial %s %s reached the dialer: %v", tt.network, tt.addr, got)
			}
		})
	}
}

func isMalformed(err error) bool { return errors.Is(err, ErrMalformed) }

func TestOnNetwork(t *testing.T) {
	t.Parallel()
	all := []netip.Addr{
		netip.MustParseAddr("1.1.1.1"),
		netip.MustParseAddr("2606:4700:4700::1111"),
		netip.MustParseAddr("::ffff:8.8.8.8"),
	}
	tests := []struct {
		network string
		want    []string
	}{
		{"tcp", []string{"1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"}},
		{"tcp4", []string{"1.1.1.1", "::ffff:8.8.8.8"}},
		{"tcp6", []string{"2606:4700:4700::1111"}},
	}
	for _, tt := range tests {
		if got := addrStrings(onNetwork(all, tt.network)); !slices.Equal(got, tt.want) {
			t.Errorf("onNetwork(%s) = %v, want %v", tt.network, got, tt.want)
		}
	}
}

// TestControlRechecks exercises the second belt directly: whatever address
// reaches the socket is checked again before connect.
func TestControlRechecks(t *testing.T) {
	t.Parallel()
	errNext := errors.New("next ran")
	var calls int
	next := func(network, address string, _ syscall.RawConn) error {
		calls++
		return errNext
	}
	g := New(WithAllow(netip.MustParsePrefix("10.1.0.0/16")))
	tests := []struct {
		address string
		want    func(error) bool
		calls   int
	}{
		{"127.0.0.1:80", func(err error) bool {
			var de *DeniedError
			return errors.As(err, &de) && de.Host == "svc.test" && de.Reason == loopback
		}, 0},
		{"[::ffff:169.254.169.254]:80", func(err error) bool {
			var de *DeniedError
			return errors.As(err, &de) && de.Reason == metadata+mapped
		}, 0},
		{"[fe80::1%eth0]:80", func(err error) bool { return errors.Is(err, ErrDenied) }, 0},
		{"not-an-address", func(err error) bool { return errors.Is(err, ErrDenied) }, 0},
		{"8.8.8.8:443", func(err error) bool { return errors.Is(err, errNext) }, 1},
		{"10.1.2.3:443", func(err error) bool { return errors.Is(err, errNext) }, 1},
	}
	for _, tt := range tests {
		calls = 0
		err := g.control("svc.test", next, nil)(context.Background(), "tcp", tt.address, nil)
		if !tt.want(err) || calls != tt.calls {
			t.Errorf("control(%s) = %v with %d next calls, want %d", tt.address, err, calls, tt.calls)
		}
	}

	// ControlContext, when set, is the hook that runs (as in net.Dialer).
	var ctxCalls int
	nextCtx := func(context.Context, string, string, syscall.RawConn) error { ctxCalls++; return nil }
	calls = 0
	if err := g.control("svc.test", next, nextCtx)(context.Background(), "tcp", "8.8.8.8:443", nil); err != nil || ctxCalls != 1 || calls != 0 {
		t.Errorf("control with ControlContext: err %v, ctx calls %d, plain calls %d; want nil, 1, 0", err, ctxCalls, calls)
	}
}

func TestDialContextLeavesDialerAlone(t *testing.T) {
	t.Parallel()
	d := &net.Dialer{Timeout: time.Second}
	_ = New().DialContext(d)
	if d.Control != nil || d.ControlContext != nil {
		t.Error("DialContext modified the caller's dialer")
	}
}

// TestTransport runs the guard under a real http.Transport and server.
func TestTransport(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	get := func(g *Guard) (string, error) {
		tr := &http.Transport{DialContext: g.DialContext(&net.Dialer{})}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	if _, err := get(New()); !errors.Is(err, ErrDenied) {
		t.Errorf("GET %s without allow: %v, want ErrDenied", srv.URL, err)
	}
	body, err := get(New(WithAllow(netip.MustParsePrefix("127.0.0.0/8"))))
	if err != nil || body != "ok" {
		t.Errorf("GET %s with allow: %q, %v", srv.URL, body, err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1 (the allowed one)", n)
	}
}

// TestDialContextSharesTheDeadline: an address that swallows the connect
// (a blackhole) gets only its share of the dial deadline, and the next
// address is still tried in time.
func TestDialContextSharesTheDeadline(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	r := newFakeResolver()
	r.addrs["blackhole.test"] = []string{"127.0.0.2", "127.0.0.3", "127.0.0.1"}
	d := &net.Dialer{ControlContext: func(ctx context.Context, _, address string, _ syscall.RawConn) error {
		if address != "127.0.0.1:"+port {
			<-ctx.Done() // never answers: only the address's own deadline ends it
			return ctx.Err()
		}
		return nil
	}}
	g := New(WithResolver(r), WithAllow(netip.MustParsePrefix("127.0.0.0/8")))
	// 3 addresses: the two blackholes get their minimum share each, and the
	// third is left the rest.
	ctx, cancel := context.WithTimeout(t.Context(), 2*minAddrTimeout+500*time.Millisecond)
	defer cancel()
	conn, err := g.DialContext(d)(ctx, "tcp", net.JoinHostPort("blackhole.test", port))
	if err != nil {
		t.Fatalf("dial: %v (the blackholed addresses used up the deadline)", err)
	}
	conn.Close()
}

func TestPartialDeadline(t *testing.T) {
	t.Parallel()
	base, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	tests := []struct {
		remaining int
		min, max  time.Duration
	}{
		{1, 2900 * time.Millisecond, 3 * time.Second},              // the last one gets everything left
		{3, 900 * time.Millisecond, time.Second},                   // a third
		{9, minAddrTimeout - 100*time.Millisecond, minAddrTimeout}, // never below the minimum
	}
	for _, tt := range tests {
		ctx, stop := partialDeadline(base, tt.remaining)
		dl, _ := ctx.Deadline()
		got := time.Until(dl)
		stop()
		if got < tt.min || got > tt.max {
			t.Errorf("remaining %d: share %v, want in [%v, %v]", tt.remaining, got, tt.min, tt.max)
		}
	}
	if ctx, stop := partialDeadline(t.Context(), 3); ctx != t.Context() {
		t.Error("no deadline: the context must be passed through")
	} else {
		stop()
	}
}
