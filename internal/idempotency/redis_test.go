package idempotency

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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

// closedAddr returns the address of a listener that has been closed, so that connecting is refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestRedisUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
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
	s, err := Open(t.Context(), "redis://"+closedAddr(t)+"/0?max_retries=-1")
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
