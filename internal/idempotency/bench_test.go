package idempotency

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkFileStoreParallel measures Claim+Complete on the file store from 32 goroutines, with
// writes group-committed (DB.Batch, what fetchd uses) and with one transaction and fsync per write
// (DB.Update). Run it with:
//
//	go test -run '^$' -bench BenchmarkFileStoreParallel -benchtime 2000x ./internal/idempotency/
func BenchmarkFileStoreParallel(b *testing.B) {
	b.Run("batch", func(b *testing.B) { benchmarkFileStore(b) })
	b.Run("update", func(b *testing.B) { benchmarkFileStore(b, withUpdate()) })
}

// BenchmarkFileStoreBatchDelay measures the same load for several batch delays; it is how
// fileBatchDelay was chosen. Run it with:
//
//	go test -run '^$' -bench BenchmarkFileStoreBatchDelay -benchtime 2000x ./internal/idempotency/
func BenchmarkFileStoreBatchDelay(b *testing.B) {
	for _, d := range []time.Duration{200 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond} {
		b.Run(d.String(), func(b *testing.B) { benchmarkFileStore(b, withBatchDelay(d)) })
	}
}

func benchmarkFileStore(b *testing.B, opts ...Option) {
	const goroutines = 32
	f, err := OpenFile(filepath.Join(b.TempDir(), "idem.db"), append(opts, WithSweepInterval(0))...)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	resp := Response{Status: 200, Header: []HeaderField{{"Content-Type", "application/json"}}, Body: make([]byte, 512)}
	var next atomic.Int64
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((goroutines + procs - 1) / procs) // RunParallel starts parallelism*GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := b.Context()
		for pb.Next() {
			key := Key{AnonymousScope, fmt.Sprint(next.Add(1))}
			c, err := f.Claim(ctx, key, "fingerprint", testLease)
			if err != nil {
				b.Error(err)
				return
			}
			if err := f.Complete(ctx, key, c.Token, resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
