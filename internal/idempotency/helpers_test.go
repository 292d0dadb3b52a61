package idempotency

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fetchd/fetchd/internal/fakeclock"
	"github.com/fetchd/fetchd/internal/redistest"
)

// newFakeClock starts millisecond-aligned, as are all the durations the
// tests use, so that the Redis store's millisecond timestamps compare exactly.
func newFakeClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// factory opens a fresh store for one test. scope is unique to the test, so that tests sharing a
// Redis never see each other's keys.
type factory struct {
	name string
	open func(t *testing.T, scope string, opts ...Option) Store
}

func memoryFactory() factory {
	return factory{"memory", func(t *testing.T, _ string, opts ...Option) Store {
		m := NewMemory(append([]Option{WithSweepInterval(0)}, opts...)...)
		t.Cleanup(func() { _ = m.Close() })
		return m
	}}
}

func fileFactory() factory {
	return factory{"file", func(t *testing.T, _ string, opts ...Option) Store {
		f, err := OpenFile(filepath.Join(t.TempDir(), "idem.db"), append([]Option{WithSweepInterval(0)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	}}
}

func redisFactory() factory {
	return factory{"redis", func(t *testing.T, scope string, opts ...Option) Store {
		client := redisClient(t)
		t.Cleanup(func() { deleteScope(t, client, scope) })
		r := NewRedis(client, opts...)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}}
}

func allFactories() []factory { return []factory{memoryFactory(), fileFactory(), redisFactory()} }

var (
	redisOnce sync.Once
	redisOpts *redis.Options
	redisErr  error
)

// redisClient returns a client for the Redis at REDIS_URL (default redis://127.0.0.1:6379), closed
// when t ends. It fails t when CI=true and Redis is unreachable, and skips t otherwise.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	redisOnce.Do(func() {
		u := os.Getenv("REDIS_URL")
		if u == "" {
			u = "redis://127.0.0.1:6379"
		}
		if redisOpts, redisErr = redis.ParseURL(u); redisErr != nil {
			return
		}
		c := redis.NewClient(redisOpts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		redisErr = c.Ping(ctx).Err()
	})
	if redisErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis is required in CI: %v", redisErr)
		}
		t.Skipf("redis unreachable (set REDIS_URL): %v", redisErr)
	}
	c := redis.NewClient(redisOpts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// deleteScope deletes the Redis keys of every scope that starts with scope.
func deleteScope(t *testing.T, c *redis.Client, scope string) {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, redisPrefix+"*:"+scope+"*", 100).Iterator()
	for iter.Next(ctx) {
		c.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleaning up redis keys: %v", err)
	}
}

// privateRedis starts a redis-server of t's own, without persistence
// (redistest.Start, with args), and returns a client for it and its
// address. Tests that change server-wide state (the token counter, the
// configuration, ACL users) use it instead of the shared Redis at
// REDIS_URL.
func privateRedis(t *testing.T, args ...string) (*redis.Client, string) {
	t.Helper()
	srv := redistest.Start(t, args...)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c, srv.Addr
}

// newScope returns a scope no other test uses.
func newScope() string { return "test-" + rand.Text() }

// env is what a conformance case works with.
type env struct {
	ctx   context.Context
	s     Store
	clk   *fakeclock.Clock
	scope string
}

func (e *env) key(id string) Key { return Key{Scope: e.scope, ID: id} }

const (
	testTTL   = time.Hour
	testLease = 30 * time.Second
)

// claimToken claims key and fails t unless the claim took it.
func claimToken(t *testing.T, e *env, key Key, fp string, lease time.Duration) uint64 {
	t.Helper()
	c, err := e.s.Claim(e.ctx, key, fp, lease)
	if err != nil {
		t.Fatalf("Claim(%v): %v", key, err)
	}
	if c.Token == 0 || c.Entry != nil {
		t.Fatalf("Claim(%v) = %+v, want a token and no entry", key, c)
	}
	return c.Token
}

// claimEntry claims key and fails t unless the claim found an existing entry.
func claimEntry(t *testing.T, e *env, key Key, fp string) *Entry {
	t.Helper()
	c, err := e.s.Claim(e.ctx, key, fp, testLease)
	if err != nil {
		t.Fatalf("Claim(%v): %v", key, err)
	}
	if c.Token != 0 || c.Entry == nil {
		t.Fatalf("Claim(%v) = token %d, entry %v; want the existing entry", key, c.Token, c.Entry)
	}
	return c.Entry
}

func mustGet(t *testing.T, e *env, key Key) *Entry {
	t.Helper()
	got, err := e.s.Get(e.ctx, key)
	if err != nil {
		t.Fatalf("Get(%v): %v", key, err)
	}
	return got
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func wantEntry(t *testing.T, got, want *Entry) {
	t.Helper()
	if !sameEntry(got, want) {
		t.Fatalf("entry\n got %s\nwant %s", fmtEntry(got), fmtEntry(want))
	}
}

func sameEntry(a, b *Entry) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Fingerprint == b.Fingerprint && a.Token == b.Token && a.Completed == b.Completed &&
		a.LeaseExpires.Equal(b.LeaseExpires) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		sameResponse(a.Response, b.Response)
}

// sameResponse compares responses; a nil and an empty header list or body are the same.
func sameResponse(a, b *Response) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Status == b.Status && a.BodyTooLarge == b.BodyTooLarge && bytes.Equal(a.Body, b.Body) &&
		(len(a.Header) == 0 && len(b.Header) == 0 || slices.Equal(a.Header, b.Header))
}

func fmtEntry(e *Entry) string {
	if e == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("{fp=%q token=%d completed=%t lease=%s expires=%s", e.Fingerprint, e.Token, e.Completed,
		e.LeaseExpires.UTC().Format(time.RFC3339Nano), e.ExpiresAt.UTC().Format(time.RFC3339Nano))
	if r := e.Response; r != nil {
		s += fmt.Sprintf(" status=%d header=%q body=%x", r.Status, r.Header, r.Body)
	}
	return s + "}"
}

// binaryBody holds every byte value, including NUL and invalid UTF-8.
func binaryBody() []byte {
	b := make([]byte, 0, 512)
	for i := range 512 {
		b = append(b, byte(255-i%256))
	}
	return b
}

func sampleResponse() Response {
	return Response{
		Status: 503,
		Header: []HeaderField{
			{"Content-Type", "application/octet-stream"},
			{"Set-Cookie", "a=1; Path=/"},
			{"Set-Cookie", "b=2"},
			{"X-Empty", ""},
		},
		Body: binaryBody(),
	}
}
