package service

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/fakeclock"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/nettest"
	"github.com/fetchd/fetchd/internal/policy"
)

// uniqueKey returns a key no other test (or earlier run against the same
// Redis) uses.
func uniqueKey(t testing.TB) string {
	return t.Name() + "-" + rand.Text()
}

func redisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

// redisAddr returns host:port of REDIS_URL; tests fail when CI=true and it is
// not answering, and skip otherwise.
func redisAddr(t testing.TB) string {
	t.Helper()
	u := strings.TrimPrefix(redisURL(), "redis://")
	if i := strings.IndexByte(u, '/'); i >= 0 {
		u = u[:i]
	}
	conn, err := net.DialTimeout("tcp", u, time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Redis at %s is unreachable under CI: %v", u, err)
		}
		t.Skipf("Redis at %s is unreachable: %v", u, err)
	}
	conn.Close()
	return u
}

func openStore(t testing.TB, url string, opts ...idempotency.Option) idempotency.Store {
	t.Helper()
	s, err := idempotency.Open(t.Context(), url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// stores are the three implementations the keyed flow must work on.
func stores(t *testing.T) map[string]func(t *testing.T) idempotency.Store {
	return map[string]func(t *testing.T) idempotency.Store{
		"memory": func(t *testing.T) idempotency.Store { return openStore(t, "memory:") },
		"file":   func(t *testing.T) idempotency.Store { return openStore(t, "file:"+t.TempDir()+"/idem.db") },
		"redis":  func(t *testing.T) idempotency.Store { return openStore(t, "redis://"+redisAddr(t)+"/0") },
	}
}

func keyedPost(url, key, body string) *fetchdv1.FetchRequest {
	return &fetchdv1.FetchRequest{Url: url, Method: "POST", Body: []byte(body), IdempotencyKey: key}
}

func TestKeyedFirstUseSendsThenReplays(t *testing.T) {
	t.Parallel()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Charge", "ch_1")
				w.WriteHeader(http.StatusCreated)
				w.Write([]byte("charged"))
			})
			client := serve(t, newService(t, open(t)))
			key := uniqueKey(t)

			first, err := client.Fetch(t.Context(), keyedPost(up.URL+"/charges", key, "amount=10"))
			if err != nil {
				t.Fatal(err)
			}
			if first.GetReplayed() || first.GetStatus() != 201 || len(first.GetAttempts()) != 1 {
				t.Fatalf("first = %v", first)
			}
			r, _ := up.lastRequest()
			if got := r.Header.Get("Idempotency-Key"); got != key {
				t.Fatalf("upstream Idempotency-Key = %q, want %q", got, key)
			}

			// A retry with a fresh Authorization and trace context is the same request.
			again := keyedPost(up.URL+"/charges", key, "amount=10")
			again.Headers = []*fetchdv1.Header{{Name: "Authorization", Value: "Bearer new"}, {Name: "Traceparent", Value: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
			second, err := client.Fetch(t.Context(), again)
			if err != nil {
				t.Fatal(err)
			}
			if !second.GetReplayed() || second.GetStatus() != 201 || string(second.GetBody()) != "charged" || len(second.GetAttempts()) != 0 {
				t.Fatalf("second = %v", second)
			}
			var charge string
			for _, h := range second.GetHeaders() {
				if h.GetName() == "X-Charge" {
					charge = h.GetValue()
				}
			}
			if charge != "ch_1" {
				t.Fatalf("replayed headers = %v", second.GetHeaders())
			}
			if up.hits.Load() != 1 {
				t.Fatalf("upstream hits = %d, want 1", up.hits.Load())
			}
		})
	}
}

func TestKeyedStoresAnyStatus(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	client := serve(t, newService(t, nil))
	key := uniqueKey(t)
	req := keyedPost(up.URL, key, "x")
	req.Retry = &fetchdv1.RetryPolicy{MaxAttempts: 1}
	for i := range 2 {
		resp, err := client.Fetch(t.Context(), req)
		if err != nil || resp.GetStatus() != 500 || resp.GetReplayed() != (i == 1) {
			t.Fatalf("call %d: resp=%v err=%v", i, resp, err)
		}
	}
	if up.hits.Load() != 1 {
		t.Fatalf("hits = %d", up.hits.Load())
	}
}

func TestKeyedDifferentRequestIsFailedPrecondition(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("first"))
	client := serve(t, newService(t, nil))
	key := uniqueKey(t)
	if _, err := client.Fetch(t.Context(), keyedPost(up.URL+"/a", key, "one")); err != nil {
		t.Fatal(err)
	}
	for _, req := range []*fetchdv1.FetchRequest{
		keyedPost(up.URL+"/a", key, "two"),                                            // another body
		keyedPost(up.URL+"/b", key, "one"),                                            // another URL
		{Url: up.URL + "/a", Method: "PUT", Body: []byte("one"), IdempotencyKey: key}, // another method
	} {
		_, err := client.Fetch(t.Context(), req)
		wantCode(t, err, codes.FailedPrecondition, "different request")
	}
	resp, err := client.Fetch(t.Context(), keyedPost(up.URL+"/a", key, "one"))
	if err != nil || !resp.GetReplayed() || string(resp.GetBody()) != "first" {
		t.Fatalf("record was touched by a conflicting call: resp=%v err=%v", resp, err)
	}
	if up.hits.Load() != 1 {
		t.Fatalf("hits = %d", up.hits.Load())
	}
}

// TestKeyedConcurrentSameKeyOneUpstreamRequest: 50 callers with one key, and
// exactly one request reaches the upstream, on every store.
func TestKeyedConcurrentSameKeyOneUpstreamRequest(t *testing.T) {
	t.Parallel()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, ok("once"))
			client := serve(t, newService(t, open(t)))
			assertOneUpstreamRequest(t, up, []fetchdv1.FetchServiceClient{client})
		})
	}
}

// TestKeyedTwoReplicasSharingRedis: calls with one key split between two
// fetchd services that share one Redis produce one upstream request.
func TestKeyedTwoReplicasSharingRedis(t *testing.T) {
	t.Parallel()
	url := "redis://" + redisAddr(t) + "/0"
	up := newUpstream(t, ok("once"))
	a := serve(t, newService(t, openStore(t, url)))
	b := serve(t, newService(t, openStore(t, url)))
	assertOneUpstreamRequest(t, up, []fetchdv1.FetchServiceClient{a, b})
}

func assertOneUpstreamRequest(t *testing.T, up *upstream, clients []fetchdv1.FetchServiceClient) {
	t.Helper()
	key := uniqueKey(t)
	const callers = 50
	var (
		wg                      sync.WaitGroup
		mu                      sync.Mutex
		fresh, replayed, aborts int
	)
	start := make(chan struct{})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := clients[i%len(clients)].Fetch(t.Context(), keyedPost(up.URL, key, "same"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case status.Code(err) == codes.Aborted:
				aborts++
			case err != nil:
				t.Errorf("caller %d: %v", i, err)
			case string(resp.GetBody()) != "once":
				t.Errorf("caller %d: body %q", i, resp.GetBody())
			case resp.GetReplayed():
				replayed++
			default:
				fresh++
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := up.hits.Load(); n != 1 {
		t.Fatalf("upstream hits = %d, want exactly 1", n)
	}
	if fresh != 1 || fresh+replayed+aborts != callers {
		t.Fatalf("fresh=%d replayed=%d aborted=%d, want 1 fresh and the rest replayed or aborted", fresh, replayed, aborts)
	}
}

func TestKeyedDuplicateInFlight(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte("done"))
	})
	client := serve(t, newService(t, nil, inFlightWait(t, 30*time.Millisecond)))
	key := uniqueKey(t)

	firstErr := make(chan error, 1)
	go func() {
		_, err := client.Fetch(t.Context(), keyedPost(up.URL, key, "b"))
		firstErr <- err
	}()
	<-arrived
	_, err := client.Fetch(t.Context(), keyedPost(up.URL, key, "b"))
	wantCode(t, err, codes.Aborted, "still in flight")
	// A duplicate with another body is a conflict even while in flight.
	_, err = client.Fetch(t.Context(), keyedPost(up.URL, key, "other"))
	wantCode(t, err, codes.FailedPrecondition, "")

	close(release)
	if err := <-firstErr; err != nil {
		t.Fatal(err)
	}
	resp, err := client.Fetch(t.Context(), keyedPost(up.URL, key, "b"))
	if err != nil || !resp.GetReplayed() {
		t.Fatalf("after completion: resp=%v err=%v", resp, err)
	}
	if up.hits.Load() != 1 {
		t.Fatalf("hits = %d", up.hits.Load())
	}
}

func TestKeyedDuplicateWaitsForFirst(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte("done"))
	})
	store := &claimCounter{Store: idempotency.NewMemory(), claims: make(chan struct{}, 100)}
	t.Cleanup(func() { store.Close() })
	client := serve(t, New(newClient(t), store, WithLogger(discard), inFlightWait(t, time.Minute)))
	key := uniqueKey(t)
	go client.Fetch(t.Context(), keyedPost(up.URL, key, "b"))
	<-arrived
	<-store.claims // the first call's claim
	second := make(chan *fetchdv1.FetchResponse, 1)
	go func() {
		resp, err := client.Fetch(t.Context(), keyedPost(up.URL, key, "b"))
		if err != nil {
			t.Error(err)
		}
		second <- resp
	}()
	// The second call has found the key in flight and is waiting: its first
	// claim and at least one more from the wait loop.
	<-store.claims
	<-store.claims
	close(release)
	if resp := <-second; !resp.GetReplayed() || string(resp.GetBody()) != "done" {
		t.Fatalf("second = %v", resp)
	}
	if up.hits.Load() != 1 {
		t.Fatalf("hits = %d", up.hits.Load())
	}
}

// claimCounter is a store that signals every Claim.
type claimCounter struct {
	idempotency.Store
	claims chan struct{}
}

func (c *claimCounter) Claim(ctx context.Context, key idempotency.Key, fp string, lease time.Duration) (idempotency.Claim, error) {
	cl, err := c.Store.Claim(ctx, key, fp, lease)
	select {
	case c.claims <- struct{}{}:
	default:
	}
	return cl, err
}

func TestKeyedFailureBeforeSendingReleasesKey(t *testing.T) {
	t.Parallel()
	refused := "http://" + nettest.RefusedAddr(t) + "/"

	store := idempotency.NewMemory()
	t.Cleanup(func() { store.Close() })
	client := serve(t, New(newClient(t), store, WithLogger(discard)))
	guarded := serve(t, New(newGuardedClient(t), store, WithLogger(discard)))

	tests := []struct {
		name   string
		client fetchdv1.FetchServiceClient
		url    string
		code   codes.Code
	}{
		{"connection refused", client, refused, codes.Unavailable},
		{"egress guard", guarded, "http://127.0.0.1:1/", codes.PermissionDenied},
	}
	for _, tt := range tests {
		key := uniqueKey(t)
		req := keyedPost(tt.url, key, "x")
		req.Retry = &fetchdv1.RetryPolicy{InitialBackoff: durationpb.New(time.Millisecond), MaxBackoff: durationpb.New(time.Millisecond)}
		_, err := tt.client.Fetch(t.Context(), req)
		wantCode(t, err, tt.code, "")
		if _, err := store.Get(t.Context(), idempotency.Key{Scope: idempotency.AnonymousScope, ID: key}); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("%s: key not released: Get err = %v", tt.name, err)
		}
	}
}

func TestKeyedStoreUnreachableFailsClosed(t *testing.T) {
	t.Parallel()
	dead := nettest.RefusedAddr(t)
	up := newUpstream(t, ok("x"))
	client := serve(t, newService(t, openStore(t, "redis://"+dead+"/0")))

	_, err := client.Fetch(t.Context(), keyedPost(up.URL, uniqueKey(t), "x"))
	wantCode(t, err, codes.Unavailable, "nothing was sent")
	if up.hits.Load() != 0 {
		t.Fatal("a keyed call was sent with the store unreachable")
	}
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL}); err != nil {
		t.Fatalf("an unkeyed call failed with the store down: %v", err)
	}
}

// TestKeyedRedisOutageMidRun cuts the connection to a real Redis between
// calls: keyed calls then get UNAVAILABLE with nothing sent.
func TestKeyedRedisOutageMidRun(t *testing.T) {
	t.Parallel()
	proxy := newTCPProxy(t, redisAddr(t))
	up := newUpstream(t, ok("x"))
	client := serve(t, newService(t, openStore(t, "redis://"+proxy.addr()+"/0")))

	if _, err := client.Fetch(t.Context(), keyedPost(up.URL, uniqueKey(t), "x")); err != nil {
		t.Fatalf("with Redis up: %v", err)
	}
	proxy.cut()
	before := up.hits.Load()
	for range 3 {
		_, err := client.Fetch(t.Context(), keyedPost(up.URL, uniqueKey(t), "x"))
		wantCode(t, err, codes.Unavailable, "idempotency store is unavailable")
	}
	if up.hits.Load() != before {
		t.Fatalf("keyed calls reached the upstream with Redis down")
	}
	if _, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL}); err != nil {
		t.Fatalf("an unkeyed call failed with Redis down: %v", err)
	}
}

func TestKeyedCallerGoneStillStores(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte("stored"))
	})
	// The retry waits for the detached send.
	client := serve(t, newService(t, nil, inFlightWait(t, time.Minute)))
	key := uniqueKey(t)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := client.Fetch(ctx, keyedPost(up.URL, key, "x"))
		errc <- err
	}()
	<-arrived
	cancel()
	wantCode(t, <-errc, codes.Canceled, "")
	close(release)
	resp, err := client.Fetch(t.Context(), keyedPost(up.URL, key, "x"))
	if err != nil || !resp.GetReplayed() || string(resp.GetBody()) != "stored" {
		t.Fatalf("retry after the caller left: resp=%v err=%v", resp, err)
	}
	if up.hits.Load() != 1 {
		t.Fatalf("hits = %d", up.hits.Load())
	}
}

// TestKeyedOutcomeUnknownIsHeldUntilLeaseExpires: a keyed request that may
// have reached the upstream but got no answer is not re-sent until the lease
// runs out; then it is, with the same Idempotency-Key header.
func TestKeyedOutcomeUnknownIsHeldUntilLeaseExpires(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	healthy := false
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := healthy
		mu.Unlock()
		if h {
			w.Write([]byte("ok"))
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the request arrived; the answer never leaves
		}
	})
	clock := newFakeClock()
	store := idempotency.NewMemory(idempotency.WithNow(clock.Now))
	t.Cleanup(func() { store.Close() })
	client := serve(t, New(newClient(t), store, WithLogger(discard), inFlightWait(t, 10*time.Millisecond)))
	key := uniqueKey(t)
	req := keyedPost(up.URL, key, "x")
	req.Retry = &fetchdv1.RetryPolicy{MaxAttempts: 1}

	_, err := client.Fetch(t.Context(), req)
	wantCode(t, err, codes.Unavailable, "no upstream answer")
	_, err = client.Fetch(t.Context(), req)
	wantCode(t, err, codes.Aborted, "outcome is unknown")
	if up.hits.Load() != 1 {
		t.Fatalf("hits = %d: an outcome-unknown request was re-sent", up.hits.Load())
	}

	mu.Lock()
	healthy = true
	mu.Unlock()
	clock.Advance(policy.Default().TotalTimeout + leaseMargin + time.Second)
	resp, err := client.Fetch(t.Context(), req)
	if err != nil || resp.GetReplayed() || string(resp.GetBody()) != "ok" {
		t.Fatalf("after the lease: resp=%v err=%v", resp, err)
	}
	if r, _ := up.lastRequest(); r.Header.Get("Idempotency-Key") != key || up.hits.Load() != 2 {
		t.Fatalf("re-send: hits=%d key=%q", up.hits.Load(), r.Header.Get("Idempotency-Key"))
	}
}

func TestKeyedEmptyKeyUnsafeRetryAskIsFine(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	client := serve(t, newService(t, nil))
	resp, err := client.Fetch(t.Context(), &fetchdv1.FetchRequest{Url: up.URL, Method: "POST", Retry: &fetchdv1.RetryPolicy{MaxAttempts: 5}})
	if err != nil || resp.GetStatus() != 503 {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
	if up.hits.Load() != 1 {
		t.Fatalf("an unkeyed POST was retried after a 503: %d hits", up.hits.Load())
	}
}

func newFakeClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// tcpProxy forwards to a real server until cut, which closes the listener
// and every connection: the server looks unreachable from then on.
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	down  bool
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, s) {
				return
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// TestKeyedCrashedWorkerLeaseExpires: a fetchd that died mid-call leaves a
// claim behind. Until its lease runs out the key is not re-sent; after that
// the next call takes the key over and sends with the same Idempotency-Key
// header, and the dead worker's late Complete is refused by its stale token.
func TestKeyedCrashedWorkerLeaseExpires(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, ok("sent once more"))
	clock := newFakeClock()
	store := idempotency.NewMemory(idempotency.WithNow(clock.Now))
	t.Cleanup(func() { store.Close() })
	client := serve(t, New(newClient(t), store, WithLogger(discard), inFlightWait(t, 10*time.Millisecond)))

	key := uniqueKey(t)
	req := keyedPost(up.URL, key, "x")
	c, err := validate(req)
	if err != nil {
		t.Fatal(err)
	}
	lease := policy.Default().TotalTimeout + leaseMargin
	crashed, err := store.Claim(t.Context(), idempotency.Key{Scope: idempotency.AnonymousScope, ID: key}, fingerprint(c), lease)
	if err != nil || crashed.Token == 0 {
		t.Fatalf("claim as the crashed worker: %v %v", crashed, err)
	}

	_, err = client.Fetch(t.Context(), req)
	wantCode(t, err, codes.Aborted, "")
	if up.hits.Load() != 0 {
		t.Fatal("a key held by a live lease was sent")
	}

	clock.Advance(lease + time.Second)
	resp, err := client.Fetch(t.Context(), req)
	if err != nil || resp.GetReplayed() || up.hits.Load() != 1 {
		t.Fatalf("after the lease: resp=%v err=%v hits=%d", resp, err, up.hits.Load())
	}
	if r, _ := up.lastRequest(); r.Header.Get("Idempotency-Key") != key {
		t.Fatalf("re-send without the Idempotency-Key header: %v", r.Header)
	}
	late := idempotency.Response{Status: 500, Body: []byte("stale")}
	if err := store.Complete(t.Context(), idempotency.Key{Scope: idempotency.AnonymousScope, ID: key}, crashed.Token, late); !errors.Is(err, idempotency.ErrFenced) {
		t.Fatalf("stale worker's Complete = %v, want ErrFenced", err)
	}
	again, err := client.Fetch(t.Context(), req)
	if err != nil || !again.GetReplayed() || string(again.GetBody()) != "sent once more" {
		t.Fatalf("replay after the stale Complete: resp=%v err=%v", again, err)
	}
}

// TestShutdownCancelsDetachedSendsAtDeadline: a keyed send whose caller left
// is awaited by Shutdown, and cancelled when its deadline passes; the key
// stays held since the request may have reached the upstream.
func TestShutdownCancelsDetachedSendsAtDeadline(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	gone := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
		close(gone)
	})
	store := idempotency.NewMemory()
	t.Cleanup(func() { store.Close() })
	svc := New(newClient(t), store, WithLogger(discard))
	client := serve(t, svc)
	key := uniqueKey(t)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := client.Fetch(ctx, keyedPost(up.URL, key, "x"))
		errc <- err
	}()
	<-arrived
	cancel()
	wantCode(t, <-errc, codes.Canceled, "")

	expired, stop := context.WithCancel(t.Context())
	stop()
	if err := svc.Shutdown(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want the deadline's error", err)
	}
	<-gone // the upstream request was cancelled
	e, err := store.Get(t.Context(), idempotency.Key{Scope: idempotency.AnonymousScope, ID: key})
	if err != nil || e.Completed {
		t.Fatalf("key after a cancelled send: %+v, %v; want held in flight", e, err)
	}
	_, err = client.Fetch(t.Context(), keyedPost(up.URL, uniqueKey(t), "x"))
	wantCode(t, err, codes.Unavailable, "shutting down")
}

// TestKeyedBodyTooLargeIsReplayed: the upstream answered with a body over the
// limit; the outcome is known, so a retry gets the same refusal instead of a
// second send.
func TestKeyedBodyTooLargeIsReplayed(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 5<<20))
	})
	client := serve(t, newService(t, nil))
	req := keyedPost(up.URL, uniqueKey(t), "x")
	_, err := client.Fetch(t.Context(), req)
	wantCode(t, err, codes.ResourceExhausted, "size limit")
	_, err = client.Fetch(t.Context(), req)
	wantCode(t, err, codes.ResourceExhausted, "not sent again")
	if up.hits.Load() != 1 {
		t.Fatalf("hits = %d, want 1", up.hits.Load())
	}
}
