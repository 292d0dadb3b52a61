package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fetchd/fetchd/internal/nettest"
)

func TestRedisKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  Key
		want string
	}{
		{Key{AnonymousScope, "order-1"}, "fetchd:idem:v1:9:anonymous:order-1"},
		{Key{"a:b", "c"}, "fetchd:idem:v1:3:a:b:c"},
		{Key{"a", "b:c"}, "fetchd:idem:v1:1:a:b:c"},
		{Key{"", ""}, "fetchd:idem:v1:0::"},
		{Key{"", "token"}, "fetchd:idem:v1:0::token"},
		{Key{"ünï", "x"}, "fetchd:idem:v1:5:ünï:x"}, // the length is in bytes
	}
	seen := map[string]Key{redisTokenKey: {}}
	for _, tt := range tests {
		got := redisKey(tt.key)
		if got != tt.want {
			t.Errorf("redisKey(%q) = %q, want %q", tt.key, got, tt.want)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("redisKey(%q) = redisKey(%q) = %q", tt.key, other, got)
		}
		seen[got] = tt.key
	}
}

func TestRedisUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: nettest.RefusedAddr(t), MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = client.Close() })
	s := NewRedis(client)
	ctx := t.Context()
	key := Key{AnonymousScope, "k"}

	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s: err = %v, want ErrUnavailable", what, err)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: err = %v, want it to wrap the cause (connection refused)", what, err)
		}
	}
	_, err := s.Claim(ctx, key, "fp", testLease)
	check("Claim", err)
	check("Complete", s.Complete(ctx, key, 1, Response{Status: 200}))
	check("Release", s.Release(ctx, key, 1))
	_, err = s.Get(ctx, key)
	check("Get", err)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// NewRedis does not own the client.
	if err := client.Ping(ctx).Err(); errors.Is(err, redis.ErrClosed) {
		t.Fatal("Close closed a client it does not own")
	}
}

func TestRedisOpenUnreachableStarts(t *testing.T) {
	t.Parallel()
	// Open must not contact Redis: fetchd starts while Redis is down and fails closed per call.
	s, err := Open(t.Context(), "redis://"+nettest.RefusedAddr(t)+"/0?max_retries=-1")
	if err != nil {
		t.Fatalf("Open of an unreachable Redis: %v", err)
	}
	_, err = s.Get(t.Context(), Key{AnonymousScope, "k"})
	wantErr(t, "Get", err, ErrUnavailable)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(t.Context(), Key{AnonymousScope, "k"})
	wantErr(t, "Get after Close", err, ErrClosed)
}

func TestRedisKeysExpireInRedis(t *testing.T) {
	t.Parallel()
	client := redisClient(t)
	scope := newScope()
	t.Cleanup(func() { deleteScope(t, client, scope) })
	clk := newFakeClock()
	s := NewRedis(client, WithNow(clk.Now), WithTTL(testTTL))
	e := &env{ctx: t.Context(), s: s, clk: clk, scope: scope}
	k := e.key("k")

	wantPTTL := func(what string, want time.Duration) {
		t.Helper()
		got, err := client.PTTL(e.ctx, redisKey(k)).Result()
		if err != nil {
			t.Fatal(err)
		}
		// The key was written moments ago; allow for the time the test took since.
		if got > want || got < want-10*time.Second {
			t.Fatalf("%s: PTTL = %v, want about %v", what, got, want)
		}
	}
	tok := claimToken(t, e, k, "fp", testLease)
	wantPTTL("after Claim", testTTL+redisExpiryMargin)
	clk.Advance(10 * time.Minute) // only the fake clock moves; the PEXPIRE is relative to it
	if err := s.Complete(e.ctx, k, tok, Response{Status: 200}); err != nil {
		t.Fatal(err)
	}
	wantPTTL("after Complete", testTTL+redisExpiryMargin)

	k2 := e.key("released")
	tok2 := claimToken(t, e, k2, "fp", testLease)
	if err := s.Release(e.ctx, k2, tok2); err != nil {
		t.Fatal(err)
	}
	if n, err := client.Exists(e.ctx, redisKey(k2)).Result(); err != nil || n != 0 {
		t.Fatalf("released key: EXISTS = %d, %v; want 0", n, err)
	}
}

func TestRedisCorruptRecordIsUnavailable(t *testing.T) {
	t.Parallel()
	client := redisClient(t)
	scope := newScope()
	t.Cleanup(func() { deleteScope(t, client, scope) })
	s := NewRedis(client)
	key := Key{scope, "corrupt"}
	if err := client.HSet(t.Context(), redisKey(key), "tok", "7", "done", "1", "exp", "99999999999999", "resp", "\xff").Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(t.Context(), key)
	wantErr(t, "Get", err, ErrUnavailable)
	wantErr(t, "Get", err, errCorrupt)
}

// A call whose ctx ends while Redis does not answer returns the ctx's error, not ErrUnavailable: the
// store was not shown to be down, the caller gave up.
func TestRedisContextDeadlineDuringCall(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() { // accept and never answer
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	s, err := Open(t.Context(), "redis://"+l.Addr().String()+"/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = s.Claim(ctx, Key{AnonymousScope, "k"}, "fp", testLease)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Claim against a silent server: err = %v, want DeadlineExceeded and not ErrUnavailable", err)
	}
}

// TestRedisCheckConfig runs CheckConfig against a Redis of the test's own, whose configuration it
// changes.
func TestRedisCheckConfig(t *testing.T) {
	t.Parallel()
	client, addr := privateRedis(t)
	ctx := t.Context()
	s := NewRedis(client)
	if err := s.CheckConfig(ctx); err != nil {
		t.Fatalf("CheckConfig with maxmemory-policy noeviction: %v", err)
	}
	for _, policy := range []string{"volatile-lru", "volatile-ttl", "allkeys-lru", "allkeys-random"} {
		if err := client.ConfigSet(ctx, "maxmemory-policy", policy).Err(); err != nil {
			t.Fatal(err)
		}
		err := s.CheckConfig(ctx)
		if err == nil || !strings.Contains(err.Error(), policy) || !strings.Contains(err.Error(), "noeviction") {
			t.Fatalf("CheckConfig with maxmemory-policy %s: err = %v, want an error naming it and noeviction", policy, err)
		}
		if errors.Is(err, ErrUnavailable) {
			t.Fatalf("CheckConfig with maxmemory-policy %s: err = %v, want it not to be ErrUnavailable", policy, err)
		}
	}

	// A user that may not run CONFIG (as on managed Redis services) cannot tell: nil.
	if err := client.Do(ctx, "ACL", "SETUSER", "fetchd", "on", ">secret", "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	limited := redis.NewClient(&redis.Options{Addr: addr, Username: "fetchd", Password: "secret"})
	t.Cleanup(func() { _ = limited.Close() })
	if err := limited.ConfigGet(ctx, "maxmemory-policy").Err(); err == nil {
		t.Fatal("the limited user can run CONFIG GET")
	}
	if err := NewRedis(limited).CheckConfig(ctx); err != nil {
		t.Fatalf("CheckConfig without permission to run CONFIG: %v, want nil", err)
	}

	if err := client.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckConfig(ctx); err != nil {
		t.Fatalf("CheckConfig after the policy went back to noeviction: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "CheckConfig after Close", s.CheckConfig(ctx), ErrClosed)

	down := redis.NewClient(&redis.Options{Addr: nettest.RefusedAddr(t), MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = down.Close() })
	wantErr(t, "CheckConfig of an unreachable Redis", NewRedis(down).CheckConfig(ctx), ErrUnavailable)
}

// TestRedisCheckConfigSharedRedis: CheckConfig agrees with the shared Redis's actual policy.
func TestRedisCheckConfigSharedRedis(t *testing.T) {
	t.Parallel()
	client := redisClient(t)
	cfg, cfgErr := client.ConfigGet(t.Context(), "maxmemory-policy").Result()
	err := NewRedis(client).CheckConfig(t.Context())
	switch policy := cfg["maxmemory-policy"]; {
	case cfgErr != nil || policy == "" || policy == "noeviction":
		if err != nil {
			t.Fatalf("CheckConfig = %v with maxmemory-policy %q (CONFIG GET: %v), want nil", err, policy, cfgErr)
		}
	case err == nil:
		t.Fatalf("CheckConfig = nil with maxmemory-policy %q, want an error", policy)
	}
}

// TestRedisNoevictionFailsClosed: with maxmemory-policy noeviction, a full Redis refuses new claims
// (ErrUnavailable, so fetchd fails keyed requests closed) and keeps every claim and record it holds,
// where an evicting policy would delete them and let a duplicate be sent again.
func TestRedisNoevictionFailsClosed(t *testing.T) {
	t.Parallel()
	client, _ := privateRedis(t)
	clk := newFakeClock()
	s := NewRedis(client, WithNow(clk.Now), WithTTL(testTTL))
	e := &env{ctx: t.Context(), s: s, clk: clk, scope: newScope()}
	if err := s.CheckConfig(e.ctx); err != nil {
		t.Fatal(err)
	}
	victim := e.key("victim")
	tok := claimToken(t, e, victim, "fp", testLease)
	want := mustGet(t, e, victim)

	// Any maxmemory below what Redis already uses makes it full.
	if err := client.ConfigSet(e.ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		_, err := s.Claim(e.ctx, e.key(fmt.Sprint("filler-", i)), strings.Repeat("f", 4096), testLease)
		wantErr(t, "Claim while Redis is full", err, ErrUnavailable)
	}
	wantErr(t, "Complete while Redis is full", s.Complete(e.ctx, victim, tok, Response{Status: 200}), ErrUnavailable)
	wantEntry(t, mustGet(t, e, victim), want)

	if err := client.ConfigSet(e.ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	wantEntry(t, claimEntry(t, e, victim, "fp"), want)
	if err := s.Complete(e.ctx, victim, tok, Response{Status: 200}); err != nil {
		t.Fatalf("Complete once Redis has room: %v", err)
	}
}

// TestRedisTokensSurviveCounterLoss: the token counter key can go back (Redis restarted without
// persistence, failed over to a replica that missed the last writes, or evicted it); the next claim's
// token must still be greater than every token issued before, so a stale holder stays fenced.
func TestRedisTokensSurviveCounterLoss(t *testing.T) {
	t.Parallel()
	client, _ := privateRedis(t) // the test deletes the store-wide counter
	clk := newFakeClock()
	s := NewRedis(client, WithNow(clk.Now), WithTTL(testTTL))
	e := &env{ctx: t.Context(), s: s, clk: clk, scope: newScope()}
	k := e.key("k")

	stale := claimToken(t, e, k, "fp-a", testLease)
	if err := client.Del(e.ctx, redisTokenKey).Err(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(testLease) // the first holder's lease ends; the next claim takes the key over
	tok := claimToken(t, e, k, "fp-b", testLease)
	if tok <= stale {
		t.Fatalf("token after the counter was lost = %d, want > %d", tok, stale)
	}
	wantErr(t, "stale Complete", s.Complete(e.ctx, k, stale, Response{Status: 200}), ErrFenced)
	wantErr(t, "stale Release", s.Release(e.ctx, k, stale), ErrFenced)
	if got := mustGet(t, e, k); got.Token != tok || got.Fingerprint != "fp-b" || got.Completed {
		t.Fatalf("the new holder's claim changed: %s", fmtEntry(got))
	}

	// The record and the counter both lost their last writes: nothing of the old claim is left to
	// compare with, and the server's clock still puts the next token above it.
	if err := client.Del(e.ctx, redisKey(k)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.Set(e.ctx, redisTokenKey, 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	next := claimToken(t, e, k, "fp-c", testLease)
	if next <= tok {
		t.Fatalf("token after the record and the counter were lost = %d, want > %d", next, tok)
	}
	wantErr(t, "stale Release", s.Release(e.ctx, k, tok), ErrFenced)
	if err := s.Complete(e.ctx, k, next, Response{Status: 200}); err != nil {
		t.Fatalf("Complete by the current holder: %v", err)
	}
	// The counter now holds a plain integer the next INCR can use.
	if n, err := client.Get(e.ctx, redisTokenKey).Uint64(); err != nil || n < next {
		t.Fatalf("counter = %d, %v; want an integer >= %d", n, err, next)
	}
	if after := claimToken(t, e, e.key("other"), "fp", testLease); after <= next {
		t.Fatalf("token after = %d, want > %d", after, next)
	}
}

// TestRedisClaimRetriedAfterLostReply: go-redis sends a command again when the connection drops
// before its reply arrives (Open sets MaxRetries 1), so the claim script can run twice for one Claim.
// The second run must recognise the caller's own claim and hand its token back, not report it as an
// in-flight claim of someone else's, which would leave the caller waiting on itself.
func TestRedisClaimRetriedAfterLostReply(t *testing.T) {
	t.Parallel()
	direct, addr := privateRedis(t)
	ctx := t.Context()
	// Load the script first, so that the command whose reply is lost is the EVALSHA that runs it.
	if err := claimScript.Load(ctx, direct).Err(); err != nil {
		t.Fatal(err)
	}
	p := newLossyProxy(t, addr, "evalsha")
	s, err := Open(ctx, "redis://"+p.addr+"/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	k := Key{newScope(), "k"}

	c, err := s.Claim(ctx, k, "fp", testLease)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if n := p.matches.Load(); n != 2 {
		t.Fatalf("the proxy saw %d EVALSHA, want 2 (the one whose reply it dropped, and its resend)", n)
	}
	if c.Token == 0 {
		t.Fatalf("the resent Claim reported the caller's own claim as another's: %s", fmtEntry(c.Entry))
	}
	if got, err := NewRedis(direct).Get(ctx, k); err != nil || got.Token != c.Token || got.Completed {
		t.Fatalf("Get = %s, %v; want the in-flight claim with token %d", fmtEntry(got), err, c.Token)
	}
	// Another caller still sees the claim as in flight, and the holder completes it.
	if other, err := s.Claim(ctx, k, "fp", testLease); err != nil || other.Token != 0 || other.Entry.Token != c.Token {
		t.Fatalf("another caller's Claim = %+v, %v; want the in-flight entry with token %d", other, err, c.Token)
	}
	if err := s.Complete(ctx, k, c.Token, Response{Status: 200}); err != nil {
		t.Fatalf("Complete: %v", err)
	}
}

// lossyProxy forwards TCP connections to a Redis server, except for the first command that contains
// its match (case-insensitive): that command reaches the server and runs, but its reply is dropped
// and the client's connection closed, so the client cannot tell whether it ran.
type lossyProxy struct {
	addr    string
	matches atomic.Int32 // commands seen that contain the match
}

func newLossyProxy(t *testing.T, target, match string) *lossyProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{addr: l.Addr().String()}
	needle := []byte(strings.ToLower(match))
	var (
		armed atomic.Bool
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	armed.Store(true)
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			cc, err := l.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", target)
			if err != nil {
				_ = cc.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, cc, sc)
			mu.Unlock()
			// go-redis sends one command on a connection and waits for its reply before the next, so
			// once a matching command has been forwarded, the next bytes from the server are its reply.
			var drop atomic.Bool
			wg.Go(func() { // client to server
				defer sc.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := cc.Read(buf)
					if n > 0 {
						if bytes.Contains(bytes.ToLower(buf[:n]), needle) {
							p.matches.Add(1)
							if armed.CompareAndSwap(true, false) {
								drop.Store(true)
							}
						}
						if _, err := sc.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
			wg.Go(func() { // server to client
				defer cc.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := sc.Read(buf)
					if n > 0 {
						if drop.Load() {
							return // the matching command ran; its reply is lost with the connection
						}
						if _, err := cc.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	return p
}
