package idempotency

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boundedStore is what Memory and File offer beyond Store.
type boundedStore interface {
	Store
	Sweep(context.Context) (int, error)
	Stats(context.Context) (Stats, error)
}

type boundedFactory struct {
	name string
	open func(t *testing.T, opts ...Option) boundedStore
}

func boundedFactories() []boundedFactory {
	return []boundedFactory{
		{"memory", func(t *testing.T, opts ...Option) boundedStore {
			return memoryFactory().open(t, "", opts...).(*Memory)
		}},
		{"file", func(t *testing.T, opts ...Option) boundedStore {
			return fileFactory().open(t, "", opts...).(*File)
		}},
	}
}

// TestBounded runs the cases about sweeping and the size bound against Memory and File.
func TestBounded(t *testing.T) {
	t.Parallel()
	for _, f := range boundedFactories() {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range boundedCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, f)
				})
			}
		})
	}
}

func wantStats(t *testing.T, s boundedStore, want Stats) {
	t.Helper()
	got, err := s.Stats(t.Context())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

func mustSweep(t *testing.T, s boundedStore, want int) {
	t.Helper()
	n, err := s.Sweep(t.Context())
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if n != want {
		t.Fatalf("Sweep removed %d, want %d", n, want)
	}
}

var boundedCases = []struct {
	name string
	run  func(t *testing.T, f boundedFactory)
}{
	{"SweepRemovesExpiredAndAccountsBytes", func(t *testing.T, f boundedFactory) {
		clk := newFakeClock()
		s := f.open(t, WithNow(clk.Now), WithTTL(testTTL))
		e := &env{ctx: t.Context(), s: s, clk: clk, scope: "scope"}
		tokens := make([]uint64, 10)
		var claimed int64
		for i := range tokens {
			tokens[i] = claimToken(t, e, e.key(fmt.Sprint("k", i)), "fingerprint", testLease)
			claimed += recordSize(e.key(fmt.Sprint("k", i)), &Entry{Fingerprint: "fingerprint"})
		}
		wantStats(t, s, Stats{Records: 10, Bytes: claimed})
		mustSweep(t, s, 0)

		clk.Advance(30 * time.Minute)
		resp := sampleResponse()
		var completed int64
		for i := range 5 { // renews their TTL
			k := e.key(fmt.Sprint("k", i))
			if err := s.Complete(e.ctx, k, tokens[i], resp); err != nil {
				t.Fatal(err)
			}
			completed += recordSize(k, &Entry{Fingerprint: "fingerprint", Response: &resp})
		}
		wantStats(t, s, Stats{Records: 10, Bytes: completed + claimed/2})

		clk.Advance(30 * time.Minute) // k5..k9 expire now
		mustSweep(t, s, 5)
		wantStats(t, s, Stats{Records: 5, Bytes: completed})
		mustSweep(t, s, 0)
		mustGet(t, e, e.key("k0"))

		clk.Advance(30 * time.Minute)
		mustSweep(t, s, 5)
		wantStats(t, s, Stats{})
	}},
	{"SweepLargeBacklog", func(t *testing.T, f boundedFactory) {
		// More than one sweepChunk, so the sweep takes several rounds.
		clk := newFakeClock()
		s := f.open(t, WithNow(clk.Now), WithTTL(testTTL))
		e := &env{ctx: t.Context(), s: s, clk: clk, scope: "scope"}
		n := sweepChunk*2 + 10
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := w; i < n; i += 16 {
					if _, err := s.Claim(e.ctx, e.key(fmt.Sprint(i)), "fp", testLease); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		clk.Advance(testTTL)
		mustSweep(t, s, n)
		wantStats(t, s, Stats{})
	}},
	{"FullRefusesNewClaims", func(t *testing.T, f boundedFactory) {
		clk := newFakeClock()
		one := recordSize(Key{Scope: "scope", ID: "k0"}, &Entry{Fingerprint: "fp"})
		max := 3 * one
		s := f.open(t, WithNow(clk.Now), WithTTL(testTTL), WithMaxBytes(max))
		e := &env{ctx: t.Context(), s: s, clk: clk, scope: "scope"}
		k := func(i int) Key { return e.key(fmt.Sprint("k", i)) }
		tokens := make([]uint64, 5)
		for i := range 3 {
			tokens[i] = claimToken(t, e, k(i), "fp", testLease)
		}
		_, err := s.Claim(e.ctx, k(3), "fp", testLease)
		wantErr(t, "Claim at the bound", err, ErrFull)
		_, err = s.Get(e.ctx, k(3))
		wantErr(t, "Get of the refused key", err, ErrNotFound)
		wantStats(t, s, Stats{Records: 3, Bytes: max})
		claimEntry(t, e, k(1), "fp") // an existing record is still reported, not refused

		// Releasing makes room.
		if err := s.Release(e.ctx, k(2), tokens[2]); err != nil {
			t.Fatal(err)
		}
		tokens[3] = claimToken(t, e, k(3), "fp", testLease)
		_, err = s.Claim(e.ctx, k(4), "fp", testLease)
		wantErr(t, "Claim at the bound", err, ErrFull)

		// A lease takeover replaces a record; the bound is checked without it, so it is not refused.
		clk.Advance(testLease)
		claimToken(t, e, k(1), "fp", testLease)
		wantStats(t, s, Stats{Records: 3, Bytes: max})

		// Completing a held claim is accepted over the bound.
		big := Response{Status: 200, Body: make([]byte, 4*max)}
		if err := s.Complete(e.ctx, k(0), tokens[0], big); err != nil {
			t.Fatalf("Complete over the bound: %v", err)
		}
		bigSize := recordSize(k(0), &Entry{Fingerprint: "fp", Response: &big})
		wantStats(t, s, Stats{Records: 3, Bytes: 2*one + bigSize})
		_, err = s.Claim(e.ctx, k(4), "fp", testLease)
		wantErr(t, "Claim over the bound", err, ErrFull)

		// Once records expire, a claim sweeps them, oldest first, until the store is under the bound.
		clk.Advance(testTTL + testLease)
		claimToken(t, e, k(4), "fp", testLease)
		got, err := s.Stats(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Bytes > max || got.Records > 2 {
			t.Fatalf("Stats = %+v after the claim swept, want at most 2 records and %d bytes", got, max)
		}
	}},
	{"FloodStaysBounded", func(t *testing.T, f boundedFactory) {
		clk := newFakeClock()
		const max = 8 << 10
		s := f.open(t, WithNow(clk.Now), WithTTL(time.Minute), WithMaxBytes(max))
		e := &env{ctx: t.Context(), s: s, clk: clk, scope: "flood"}
		// The largest record the flood writes: an ID of up to 6 digits, and a fingerprint.
		largest := recordSize(e.key("999999"), &Entry{Fingerprint: "fingerprint"})
		rounds, perRound := 20, 400
		if f.name == "file" { // every file write is fsynced
			rounds, perRound = 4, 150
		}
		id := 0
		for round := range rounds {
			var (
				mu         sync.Mutex
				ok, full   int
				wg         sync.WaitGroup
				start, end = id, id + perRound
			)
			id = end
			for w := range 8 {
				wg.Go(func() {
					for i := start + w; i < end; i += 8 {
						_, err := s.Claim(e.ctx, e.key(fmt.Sprint(i)), "fingerprint", testLease)
						mu.Lock()
						switch {
						case err == nil:
							ok++
						case errors.Is(err, ErrFull):
							full++
						default:
							t.Error(err)
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			st, err := s.Stats(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Concurrent claims check the bound one at a time, so the store ends at most one record over.
			// Every record counts at least recordOverhead bytes, so this bounds the record count too.
			if st.Bytes > max+largest {
				t.Fatalf("round %d: %+v exceeds the bound %d", round, st, max)
			}
			// Nothing expires during a round: every claim taken in it is still stored and counted.
			if st.Records < ok {
				t.Fatalf("round %d: %+v counts fewer records than the %d claims taken", round, st, ok)
			}
			if ok == 0 || full == 0 {
				t.Fatalf("round %d: %d claims taken, %d refused; want both (records expire between rounds)", round, ok, full)
			}
			clk.Advance(time.Minute) // every record of this round expires
		}
	}},
	{"ClaimReplacesExpiredRecord", func(t *testing.T, f boundedFactory) {
		clk := newFakeClock()
		s := f.open(t, WithNow(clk.Now), WithTTL(testTTL))
		e := &env{ctx: t.Context(), s: s, clk: clk, scope: "scope"}
		k := e.key("k")
		tok := claimToken(t, e, k, "fp", testLease)
		resp := sampleResponse()
		if err := s.Complete(e.ctx, k, tok, resp); err != nil {
			t.Fatal(err)
		}
		clk.Advance(testTTL)
		claimToken(t, e, k, "fp", testLease)
		wantStats(t, s, Stats{Records: 1, Bytes: recordSize(k, &Entry{Fingerprint: "fp"})})
		mustSweep(t, s, 0)
	}},
}

func TestFileDurableAcrossReopen(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "nested", "dir", "idem.db") // parents are created
	opts := []Option{WithNow(clk.Now), WithTTL(testTTL), WithSweepInterval(0)}
	f, err := OpenFile(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ctx: t.Context(), s: f, clk: clk, scope: "scope"}
	done, inFlight, released := e.key("done"), e.key("in-flight"), e.key("released")
	resp := sampleResponse()
	tokDone := claimToken(t, e, done, "fp-done", testLease)
	if err := f.Complete(e.ctx, done, tokDone, resp); err != nil {
		t.Fatal(err)
	}
	tokInFlight := claimToken(t, e, inFlight, "fp-in-flight", testLease)
	tokReleased := claimToken(t, e, released, "fp", testLease)
	if err := f.Release(e.ctx, released, tokReleased); err != nil {
		t.Fatal(err)
	}
	wantDone, wantInFlight := mustGet(t, e, done), mustGet(t, e, inFlight)
	stats, err := f.Stats(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f, err = OpenFile(path, opts...)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	e.s = f
	wantEntry(t, mustGet(t, e, done), wantDone)
	wantEntry(t, mustGet(t, e, inFlight), wantInFlight)
	_, err = f.Get(e.ctx, released)
	wantErr(t, "Get of the released key", err, ErrNotFound)
	wantStats(t, f, stats)
	// The token counter survived: the new claim's token is above every token issued before.
	if tok := claimToken(t, e, released, "fp", testLease); tok <= tokReleased {
		t.Fatalf("token after reopen = %d, want > %d", tok, tokReleased)
	}
	// The in-flight claim's holder can still complete after the restart.
	if err := f.Complete(e.ctx, inFlight, tokInFlight, Response{Status: 200}); err != nil {
		t.Fatal(err)
	}
}

func TestFileLockedByAnotherOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "idem.db")
	f, err := OpenFile(path, WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	// bbolt's file lock is per open file, so a second open in this process waits for it too.
	if g, err := OpenFile(path, WithSweepInterval(0)); err == nil {
		_ = g.Close()
		t.Fatal("second OpenFile of a file in use succeeded")
	}
}

func TestFileCorruptRecordIsUnavailable(t *testing.T) {
	t.Parallel()
	f := fileFactory().open(t, "").(*File)
	key := Key{Scope: "s", ID: "corrupt"}
	err := f.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).Put(recordKey(key), []byte{recordVersion, 0, 0xff})
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Get(t.Context(), key)
	wantErr(t, "Get", err, ErrUnavailable)
	wantErr(t, "Get", err, errCorrupt)
	_, err = f.Claim(t.Context(), key, "fp", testLease)
	wantErr(t, "Claim", err, ErrUnavailable)
}

func TestMemoryNewMemoryPanicsOnInvalidOption(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("NewMemory(WithTTL(0)) did not panic")
		}
	}()
	NewMemory(WithTTL(0))
}

func TestSyncDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(dir); err != nil {
		t.Fatalf("syncDir of a new directory: %v", err)
	}
	if err := syncDir(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("syncDir of a missing directory: err = %v, want fs.ErrNotExist", err)
	}
}

func TestFileOpenSyncsNewDirectories(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "idem.db")
	var synced []string
	f, err := OpenFile(path, withSyncDir(func(dir string) error {
		synced = append(synced, dir)
		return syncDir(dir)
	}), WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	// The new file's directory, and each directory that holds a new directory.
	want := []string{filepath.Join(root, "a", "b"), filepath.Join(root, "a"), root}
	if !slices.Equal(synced, want) {
		t.Fatalf("synced %q, want %q", synced, want)
	}

	// Reopening an existing file creates nothing and syncs nothing.
	synced = nil
	f, err = OpenFile(path, withSyncDir(func(dir string) error {
		synced = append(synced, dir)
		return nil
	}), WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if len(synced) != 0 {
		t.Fatalf("reopening synced %q, want nothing", synced)
	}

	// A failed directory sync fails the open: the new file may not survive a power loss.
	boom := errors.New("boom")
	_, err = OpenFile(filepath.Join(root, "c", "idem.db"), withSyncDir(func(string) error { return boom }), WithSweepInterval(0))
	wantErr(t, "OpenFile when syncing the directory fails", err, boom)
}
