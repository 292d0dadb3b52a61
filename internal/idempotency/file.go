package idempotency

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// File is a durable Store in a single bbolt file: every Claim, Complete and Release is committed
// (fsynced) before it returns, so records and the fencing-token counter survive a restart or crash.
// Concurrent writes are group-committed with bbolt's DB.Batch, so many callers share one fsync; a
// write waits up to fileBatchDelay (1ms) for others to join it. A Claim that finds the key held or
// completed only reads. Only one process can open the file at a time; OpenFile gives up after
// fileLockTimeout (1s).
//
// The file holds three buckets: "records" (record key -> encoded entry; its bucket sequence is the
// fencing-token counter), "expiry" (expiry time + record key -> nothing, the sweep order) and
// "meta" (the record count and byte total counted against WithMaxBytes, default 1 GiB). The file
// does not shrink when records are removed; bbolt reuses the freed pages.
//
// All methods are safe for concurrent use.
type File struct {
	cfg     config
	db      *bolt.DB
	sweeper *sweeper
	once    sync.Once
	closed  atomic.Bool
	err     error // from closing db
}

var (
	bucketRecords = []byte("records")
	bucketExpiry  = []byte("expiry")
	bucketMeta    = []byte("meta")
	metaRecords   = []byte("records")
	metaBytes     = []byte("bytes")
)

// fileBatchDelay is how long a write waits for concurrent writes to join its commit (bbolt's
// MaxBatchDelay, 10ms by default). It is about one fsync: long enough that writers arriving during a
// commit share the next one, short enough that a lone write is not held up much. See
// BenchmarkFileStoreParallel.
const fileBatchDelay = time.Millisecond

// fileLockTimeout bounds how long OpenFile waits for another process to let go of the file.
const fileLockTimeout = time.Second

// OpenFile opens or creates the file store at path, creating missing parent directories, and starts
// its background sweeper. When it creates the file it also syncs the directories that name it and any
// directory it created, so that the new store survives a power loss. The caller must Close it.
func OpenFile(path string, opts ...Option) (*File, error) {
	cfg, err := newConfig(DefaultFileMaxBytes, opts)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("idempotency: file store needs a path")
	}
	dir := filepath.Dir(path)
	created := missingDirs(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("idempotency: file store: %w", err)
	}
	_, err = os.Stat(path)
	isNew := errors.Is(err, fs.ErrNotExist)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: fileLockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("idempotency: file store %s is locked by another process: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency: file store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketExpiry, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && isNew {
		// bbolt fsyncs the file's contents but not the directory entries that name the new file and
		// any directory made for it: until their directories are synced, a power loss soon after the
		// first start could lose the whole store, token counter included.
		for _, d := range append([]string{dir}, parents(created)...) {
			if err = cfg.syncDir(d); err != nil {
				break
			}
		}
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("idempotency: file store: %w", err)
	}
	db.MaxBatchDelay = cfg.batchDelay
	f := &File{cfg: cfg, db: db}
	f.sweeper = startSweeper(cfg.sweepInterval, f.Sweep)
	return f, nil
}

// missingDirs returns dir and those of its ancestors that do not exist, deepest first.
func missingDirs(dir string) []string {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			return missing
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			return missing
		}
	}
}

// parents returns the directory that holds each of dirs.
func parents(dirs []string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = filepath.Dir(d)
	}
	return out
}

// syncDir fsyncs the directory dir, so that the entries created in it survive a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Claim implements Store.
func (f *File) Claim(ctx context.Context, key Key, fingerprint string, lease time.Duration) (Claim, error) {
	if err := checkClaim(ctx, f.cfg.now(), lease, f.cfg.ttl); err != nil {
		return Claim{}, err
	}
	rk := recordKey(key)
	// A replay or a request in flight elsewhere needs no write: look first, without a write
	// transaction (and its fsync), and decide again inside the write if the key looks claimable.
	var existing *Entry
	err := f.read(func(b fileTx) (err error) {
		existing, err = b.get(rk)
		return err
	})
	if err != nil {
		return Claim{}, err
	}
	if now := f.cfg.now(); existing != nil && live(existing.ExpiresAt, now) && (existing.Completed || held(existing, now)) {
		return Claim{Entry: existing}, nil
	}
	// Batch may run the function more than once; it only sets these results, which the last run,
	// the one that committed, leaves behind.
	var (
		out     Claim
		full    bool
		tooLate error
	)
	err = f.write(func(tx *bolt.Tx) error {
		out, full, tooLate = Claim{}, false, nil
		b := fileBuckets(tx)
		now := f.cfg.now()
		if tooLate = checkEnd(now, lease, f.cfg.ttl); tooLate != nil {
			return nil
		}
		old, err := b.get(rk)
		if err != nil {
			return err
		}
		if old != nil && live(old.ExpiresAt, now) && (old.Completed || held(old, now)) {
			out.Entry = old
			return nil
		}
		if old != nil && !live(old.ExpiresAt, now) {
			// Drop the expired record first so that the sweep below cannot remove it under us.
			if err := b.delete(rk, key, old); err != nil {
				return err
			}
			old = nil
		}
		// The bound is checked without the record this claim replaces.
		under := func() bool { return b.bytes()-old.size(key) < f.cfg.maxBytes }
		if !under() {
			if err := b.removeExpired(now, under); err != nil {
				return err
			}
			if !under() {
				full = true
				return nil
			}
		}
		token, err := b.records.NextSequence()
		if err != nil {
			return err
		}
		e := newClaimEntry(fingerprint, token, now, lease, f.cfg.ttl)
		if err := b.put(rk, key, old, &e); err != nil {
			return err
		}
		out.Token = token
		return nil
	})
	switch {
	case err != nil:
		return Claim{}, err
	case tooLate != nil:
		return Claim{}, tooLate
	case full:
		return Claim{}, ErrFull
	}
	return out, nil
}

// Complete implements Store.
func (f *File) Complete(ctx context.Context, key Key, token uint64, resp Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rk := recordKey(key)
	var fenced bool
	err := f.write(func(tx *bolt.Tx) error {
		b := fileBuckets(tx)
		now := f.cfg.now()
		old, err := b.claimed(rk, token, now)
		if fenced = old == nil; fenced || err != nil {
			return err
		}
		e := *old
		e.Completed = true
		e.Response = &resp
		e.LeaseExpires = time.Time{}
		e.ExpiresAt = now.Add(f.cfg.ttl)
		return b.put(rk, key, old, &e)
	})
	if err == nil && fenced {
		return ErrFenced
	}
	return err
}

// Release implements Store.
func (f *File) Release(ctx context.Context, key Key, token uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rk := recordKey(key)
	var fenced bool
	err := f.write(func(tx *bolt.Tx) error {
		b := fileBuckets(tx)
		old, err := b.claimed(rk, token, f.cfg.now())
		if fenced = old == nil; fenced || err != nil {
			return err
		}
		return b.delete(rk, key, old)
	})
	if err == nil && fenced {
		return ErrFenced
	}
	return err
}

// Get implements Store.
func (f *File) Get(ctx context.Context, key Key) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var e *Entry
	err := f.read(func(b fileTx) (err error) {
		e, err = b.get(recordKey(key))
		return err
	})
	if err != nil {
		return nil, err
	}
	if e == nil || !live(e.ExpiresAt, f.cfg.now()) {
		return nil, ErrNotFound
	}
	return e, nil
}

// Sweep removes the records that have expired and reports how many it removed. It commits at most
// sweepChunk removals per transaction and stops early, with ctx's error, when ctx is done.
func (f *File) Sweep(ctx context.Context) (removed int, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		// Most sweeps find nothing to do; finding that out needs no write transaction and no fsync.
		var due bool
		err := f.read(func(b fileTx) error {
			due = !b.nextExpiry().After(f.cfg.now())
			return nil
		})
		if err != nil || !due {
			return removed, err
		}
		n := 0
		err = f.db.Update(func(tx *bolt.Tx) error {
			n = 0
			return fileBuckets(tx).removeExpired(f.cfg.now(), func() bool {
				n++
				return n > sweepChunk
			})
		})
		n = min(n, sweepChunk)
		if err != nil {
			return removed, f.wrap(err)
		}
		removed += n
		if n < sweepChunk {
			return removed, nil
		}
	}
}

// Stats reports how many records the store holds and their size.
func (f *File) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	var s Stats
	err := f.read(func(b fileTx) error {
		s = Stats{Records: int(b.count(metaRecords)), Bytes: b.bytes()}
		return nil
	})
	return s, err
}

// Close stops the background sweeper and closes the file, waiting for writes in progress.
func (f *File) Close() error {
	f.once.Do(func() {
		f.closed.Store(true)
		f.sweeper.stop()
		if err := f.db.Close(); err != nil {
			f.err = fmt.Errorf("idempotency: close file store: %w", err)
		}
	})
	return f.err
}

// write runs fn in a read-write transaction: a group commit with concurrent writers (DB.Batch), or
// its own transaction when the store was built withUpdate.
func (f *File) write(fn func(*bolt.Tx) error) error {
	if f.closed.Load() {
		return ErrClosed
	}
	var err error
	if f.cfg.update {
		err = f.db.Update(fn)
	} else {
		err = f.db.Batch(fn)
	}
	return f.wrap(err)
}

// read runs fn in a read-only transaction.
func (f *File) read(fn func(fileTx) error) error {
	if f.closed.Load() {
		return ErrClosed
	}
	return f.wrap(f.db.View(func(tx *bolt.Tx) error { return fn(fileBuckets(tx)) }))
}

// wrap maps bbolt's errors: a closed database is ErrClosed, anything else (I/O, a corrupt record)
// makes the store unavailable.
func (f *File) wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return ErrClosed
	}
	return unavailable(fmt.Errorf("file store: %w", err))
}

// fileTx is the file store's buckets inside one transaction.
type fileTx struct {
	records, expiry, meta *bolt.Bucket
}

func fileBuckets(tx *bolt.Tx) fileTx {
	return fileTx{
		records: tx.Bucket(bucketRecords),
		expiry:  tx.Bucket(bucketExpiry),
		meta:    tx.Bucket(bucketMeta),
	}
}

// get returns the record stored under rk, expired or not, or nil.
func (b fileTx) get(rk []byte) (*Entry, error) {
	v := b.records.Get(rk)
	if v == nil {
		return nil, nil
	}
	return decodeEntry(v)
}

// claimed returns the record under rk if it is a live in-flight claim with the given token, or nil.
func (b fileTx) claimed(rk []byte, token uint64, now time.Time) (*Entry, error) {
	e, err := b.get(rk)
	if err != nil || e == nil || !live(e.ExpiresAt, now) || e.Completed || e.Token != token {
		return nil, err
	}
	return e, nil
}

// put stores e under rk, replacing old (nil if there is none), and keeps the expiry index and the
// totals in step.
func (b fileTx) put(rk []byte, key Key, old, e *Entry) error {
	records, bytes := b.count(metaRecords), b.bytes()
	if old != nil {
		if err := b.expiry.Delete(expiryKey(old.ExpiresAt, rk)); err != nil {
			return err
		}
		bytes -= old.size(key)
	} else {
		records++
	}
	if err := b.records.Put(rk, appendEntry(nil, e)); err != nil {
		return err
	}
	if err := b.expiry.Put(expiryKey(e.ExpiresAt, rk), nil); err != nil {
		return err
	}
	return b.setTotals(records, bytes+e.size(key))
}

// delete removes the record old stored under rk.
func (b fileTx) delete(rk []byte, key Key, old *Entry) error {
	if err := b.records.Delete(rk); err != nil {
		return err
	}
	if err := b.expiry.Delete(expiryKey(old.ExpiresAt, rk)); err != nil {
		return err
	}
	return b.setTotals(b.count(metaRecords)-1, b.bytes()-old.size(key))
}

// nextExpiry returns the earliest expiry in the index, or the far future when it is empty.
func (b fileTx) nextExpiry() time.Time {
	k, _ := b.expiry.Cursor().First()
	return expiryOf(k)
}

// expiryOf returns the time an expiry index key starts with; a key too short to hold one (there
// is none) sorts as the far future, so it is never swept.
func expiryOf(k []byte) time.Time {
	if len(k) < 8 {
		return time.Unix(1<<62, 0)
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(k)))
}

// removeExpired removes records that have expired at now, soonest first, until none is left or done
// reports true.
func (b fileTx) removeExpired(now time.Time, done func() bool) error {
	c := b.expiry.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		if expiryOf(k).After(now) || done() {
			return nil
		}
		rk := append([]byte{}, k[8:]...)
		key, err := keyFromRecordKey(rk)
		if err != nil {
			return err
		}
		e, err := b.get(rk)
		if err != nil {
			return err
		}
		if e == nil || live(e.ExpiresAt, now) { // an index entry out of step with its record: drop it
			if err := b.expiry.Delete(append([]byte{}, k...)); err != nil {
				return err
			}
			continue
		}
		if err := b.delete(rk, key, e); err != nil {
			return err
		}
	}
	return nil
}

func (b fileTx) count(name []byte) int64 {
	v := b.meta.Get(name)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func (b fileTx) bytes() int64 { return b.count(metaBytes) }

func (b fileTx) setTotals(records, bytes int64) error {
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(records))
	binary.BigEndian.PutUint64(buf[8:], uint64(bytes))
	if err := b.meta.Put(metaRecords, buf[:8]); err != nil {
		return err
	}
	return b.meta.Put(metaBytes, buf[8:])
}
