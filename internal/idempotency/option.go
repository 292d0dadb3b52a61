package idempotency

import (
	"errors"
	"fmt"
	"time"
)

// Defaults for the options.
const (
	DefaultTTL            = 24 * time.Hour
	DefaultSweepInterval  = time.Minute
	DefaultMemoryMaxBytes = 256 << 20 // 256 MiB
	DefaultFileMaxBytes   = 1 << 30   // 1 GiB
)

// Option configures a store. Options that a store does not use are accepted and ignored.
type Option func(*config)

// WithTTL sets how long a record lives, counted from its claim and renewed by Complete. It must be
// positive. The default is DefaultTTL (24h).
func WithTTL(ttl time.Duration) Option {
	return func(c *config) {
		if ttl <= 0 {
			c.fail(fmt.Errorf("idempotency: TTL must be positive, got %v", ttl))
		}
		c.ttl = ttl
	}
}

// WithNow sets the clock that decides lease and record expiry. The default is time.Now. The Redis
// store also uses it, so the clocks of the fetchd replicas sharing a Redis must agree (see the package
// documentation).
func WithNow(now func() time.Time) Option {
	return func(c *config) {
		if now == nil {
			c.fail(errors.New("idempotency: WithNow needs a non-nil clock"))
		}
		c.now = now
	}
}

// WithMaxBytes bounds the bytes a memory or file store holds (see recordSize for what counts). It
// must be positive. The defaults are DefaultMemoryMaxBytes (256 MiB) and DefaultFileMaxBytes (1 GiB).
// The Redis store ignores it: every Redis key carries a PEXPIRE, and the Redis server's maxmemory is
// the bound there, shared by all replicas, which no single fetchd could enforce. That Redis must run
// with maxmemory-policy noeviction: an evicting policy deletes live claims and stored responses, and a
// duplicate request would be sent again. With noeviction a full Redis refuses writes, and keyed
// requests fail closed (ErrUnavailable). Redis.CheckConfig checks the policy.
func WithMaxBytes(n int64) Option {
	return func(c *config) {
		if n <= 0 {
			c.fail(fmt.Errorf("idempotency: max bytes must be positive, got %d", n))
		}
		c.maxBytes = n
	}
}

// WithSweepInterval sets how often a memory or file store removes expired records in the background.
// Zero or a negative interval turns the background sweeper off; Sweep and a Claim at the size bound
// still remove expired records. The default is DefaultSweepInterval (1m). The Redis store ignores it:
// Redis expires its keys itself.
func WithSweepInterval(d time.Duration) Option {
	return func(c *config) { c.sweepInterval = d }
}

// withUpdate makes a file store commit each write in its own bbolt transaction (DB.Update) instead
// of group-committing concurrent writes (DB.Batch). It exists to measure what batching buys.
func withUpdate() Option {
	return func(c *config) { c.update = true }
}

// withBatchDelay sets how long a file store's write waits for others to share its commit.
func withBatchDelay(d time.Duration) Option {
	return func(c *config) { c.batchDelay = d }
}

// withSyncDir replaces the function that syncs a new file store's directories (syncDir).
func withSyncDir(fn func(dir string) error) Option {
	return func(c *config) { c.syncDir = fn }
}

type config struct {
	batchDelay    time.Duration
	ttl           time.Duration
	now           func() time.Time
	maxBytes      int64
	sweepInterval time.Duration
	update        bool
	syncDir       func(dir string) error
	err           error
}

func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// newConfig applies opts over the defaults and validates the result.
func newConfig(defaultMaxBytes int64, opts []Option) (config, error) {
	c := config{
		batchDelay:    fileBatchDelay,
		ttl:           DefaultTTL,
		now:           time.Now,
		maxBytes:      defaultMaxBytes,
		sweepInterval: DefaultSweepInterval,
		syncDir:       syncDir,
	}
	for _, opt := range opts {
		opt(&c)
	}
	return c, c.err
}

// mustConfig is newConfig for constructors that cannot return an error: invalid options are a
// programming error there.
func mustConfig(defaultMaxBytes int64, opts []Option) config {
	c, err := newConfig(defaultMaxBytes, opts)
	if err != nil {
		panic(err)
	}
	return c
}
