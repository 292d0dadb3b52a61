package idempotency

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Memory is a Store held in process memory. Its records do not survive the process; use it for
// tests and single-replica deployments that accept that. It is bounded by WithMaxBytes (default
// 256 MiB) and removes expired records in the background (WithSweepInterval) until Close.
//
// All methods are safe for concurrent use.
type Memory struct {
	cfg     config
	sweeper *sweeper
	once    sync.Once

	mu        sync.Mutex
	closed    bool
	records   map[Key]*memRecord
	byExpiry  expiryHeap // the records, soonest ExpiresAt first
	bytes     int64      // sum of the records' sizes
	lastToken uint64     // the last fencing token issued; tokens are never reused
}

type memRecord struct {
	key   Key
	entry Entry
	size  int64
	index int // position in Memory.byExpiry
}

// NewMemory returns an empty memory store with its background sweeper running. It panics if an
// option is invalid (Open reports the same problems as errors).
func NewMemory(opts ...Option) *Memory {
	return newMemory(mustConfig(DefaultMemoryMaxBytes, opts))
}

func newMemory(cfg config) *Memory {
	m := &Memory{cfg: cfg, records: make(map[Key]*memRecord)}
	m.sweeper = startSweeper(cfg.sweepInterval, m.Sweep)
	return m
}

// Claim implements Store.
func (m *Memory) Claim(ctx context.Context, key Key, fingerprint string, lease time.Duration) (Claim, error) {
	if err := checkClaim(ctx, m.cfg.now(), lease, m.cfg.ttl); err != nil {
		return Claim{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Claim{}, ErrClosed
	}
	now := m.cfg.now()
	if err := checkEnd(now, lease, m.cfg.ttl); err != nil {
		return Claim{}, err
	}
	rec := m.records[key]
	if rec != nil && live(rec.entry.ExpiresAt, now) && (rec.entry.Completed || held(&rec.entry, now)) {
		return Claim{Entry: rec.entry.clone()}, nil
	}
	if rec != nil && !live(rec.entry.ExpiresAt, now) {
		// Drop the expired record first so that the sweep below cannot remove it under us.
		m.remove(rec)
		rec = nil
	}
	// The bound is checked without the record this claim replaces.
	under := func() bool { return m.bytes-rec.sizeOrZero() < m.cfg.maxBytes }
	if !under() {
		m.removeExpired(now, under)
		if !under() {
			return Claim{}, ErrFull
		}
	}
	m.lastToken++
	m.put(key, rec, newClaimEntry(fingerprint, m.lastToken, now, lease, m.cfg.ttl))
	return Claim{Token: m.lastToken}, nil
}

// Complete implements Store.
func (m *Memory) Complete(ctx context.Context, key Key, token uint64, resp Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	now := m.cfg.now()
	rec := m.claimed(key, token, now)
	if rec == nil {
		return ErrFenced
	}
	r := resp.clone()
	e := rec.entry
	e.Completed = true
	e.Response = &r
	e.LeaseExpires = time.Time{}
	e.ExpiresAt = now.Add(m.cfg.ttl)
	m.put(key, rec, e)
	return nil
}

// Release implements Store.
func (m *Memory) Release(ctx context.Context, key Key, token uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	rec := m.claimed(key, token, m.cfg.now())
	if rec == nil {
		return ErrFenced
	}
	m.remove(rec)
	return nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key Key) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	rec := m.records[key]
	if rec == nil || !live(rec.entry.ExpiresAt, m.cfg.now()) {
		return nil, ErrNotFound
	}
	return rec.entry.clone(), nil
}

// Sweep removes the records that have expired and reports how many it removed. It holds the store's
// lock for at most sweepChunk removals at a time and stops early, with ctx's error, when ctx is done.
func (m *Memory) Sweep(ctx context.Context) (removed int, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return removed, ErrClosed
		}
		n := 0
		m.removeExpired(m.cfg.now(), func() bool {
			n++
			return n > sweepChunk
		})
		n = min(n, sweepChunk)
		m.mu.Unlock()
		removed += n
		if n < sweepChunk {
			return removed, nil
		}
	}
}

// Stats reports how many records the store holds and their size.
func (m *Memory) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Stats{}, ErrClosed
	}
	return Stats{Records: len(m.records), Bytes: m.bytes}, nil
}

// Close stops the background sweeper and drops every record.
func (m *Memory) Close() error {
	m.once.Do(func() {
		m.sweeper.stop()
		m.mu.Lock()
		defer m.mu.Unlock()
		m.closed = true
		m.records, m.byExpiry, m.bytes = nil, nil, 0
	})
	return nil
}

// claimed returns key's record if it is a live in-flight claim with the given token, or nil.
func (m *Memory) claimed(key Key, token uint64, now time.Time) *memRecord {
	rec := m.records[key]
	if rec == nil || !live(rec.entry.ExpiresAt, now) || rec.entry.Completed || rec.entry.Token != token {
		return nil
	}
	return rec
}

// put stores e for key, updating rec in place when it is key's existing record.
func (m *Memory) put(key Key, rec *memRecord, e Entry) {
	size := recordSize(key, &e)
	if rec == nil {
		rec = &memRecord{key: key, entry: e, size: size}
		m.records[key] = rec
		heap.Push(&m.byExpiry, rec)
		m.bytes += size
		return
	}
	m.bytes += size - rec.size
	rec.entry, rec.size = e, size
	heap.Fix(&m.byExpiry, rec.index)
}

func (m *Memory) remove(rec *memRecord) {
	heap.Remove(&m.byExpiry, rec.index)
	delete(m.records, rec.key)
	m.bytes -= rec.size
}

// removeExpired removes records that have expired at now, soonest first, until none is left or done
// reports true.
func (m *Memory) removeExpired(now time.Time, done func() bool) {
	for len(m.byExpiry) > 0 && !live(m.byExpiry[0].entry.ExpiresAt, now) && !done() {
		m.remove(m.byExpiry[0])
	}
}

func (r *memRecord) sizeOrZero() int64 {
	if r == nil {
		return 0
	}
	return r.size
}

// expiryHeap orders records by ExpiresAt (container/heap).
type expiryHeap []*memRecord

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].entry.ExpiresAt.Before(h[j].entry.ExpiresAt) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	rec := x.(*memRecord)
	rec.index = len(*h)
	*h = append(*h, rec)
}
func (h *expiryHeap) Pop() any {
	old := *h
	rec := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return rec
}
