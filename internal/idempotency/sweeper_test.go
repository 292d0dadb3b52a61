package idempotency

import (
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"
)

// The background sweeper removes expired records on its own and stops at Close: synctest fails the
// test if a goroutine started in the bubble is still running when it ends.
func TestBackgroundSweeper(t *testing.T) {
	t.Parallel()
	open := map[string]func(t *testing.T, opts ...Option) boundedStore{
		"memory": func(t *testing.T, opts ...Option) boundedStore { return NewMemory(opts...) },
		"file": func(t *testing.T, opts ...Option) boundedStore {
			f, err := OpenFile(filepath.Join(t.TempDir(), "idem.db"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			return f
		},
	}
	for name, open := range open {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				// time.Now is the bubble's fake clock, so the default clock is used on purpose.
				s := open(t, WithTTL(90*time.Second), WithSweepInterval(time.Minute))
				t.Cleanup(func() { _ = s.Close() }) // also when the test fails early
				key := Key{AnonymousScope, "k"}
				if _, err := s.Claim(t.Context(), key, "fp", time.Second); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute) // fake time; the first tick finds nothing expired
				synctest.Wait()
				wantStats(t, s, Stats{Records: 1, Bytes: recordSize(key, &Entry{Fingerprint: "fp"})})
				time.Sleep(time.Minute)
				synctest.Wait()
				wantStats(t, s, Stats{})
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}
