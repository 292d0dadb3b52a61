package main

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGCTunerPercent(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tu := &gcTuner{floor: 64 * mib}
	for _, tt := range []struct {
		live, roots uint64
		want        int
	}{
		{16 * mib, 0, 300},      // 16 + 16 × 3 = 64 MiB
		{8 * mib, 8 * mib, 350}, // 8 + 16 × 3.5 = 64 MiB
		{32 * mib, 0, 100},      // the usual goal is the floor already
		{200 * mib, 0, 100},     // above the floor: as without the tuner
		{1 * mib, 0, 1600},      // capped: the runtime's minimum heap, 4 MiB × 16, is the floor
		{0, 0, 1600},            // nothing live yet
	} {
		if got := tu.percent(tt.live, tt.roots); got != tt.want {
			t.Errorf("percent(%d MiB, %d MiB) = %d, want %d", tt.live/mib, tt.roots/mib, got, tt.want)
		}
	}
}

// TestGCTunerGoalIsTheFloor: with the real runtime, the heap goal after
// tuning is about the floor, not a multiple of it. Not parallel: GOGC is
// process-wide.
func TestGCTunerGoalIsTheFloor(t *testing.T) {
	const floor = 64 << 20
	tu := newGCTuner(floor)
	tu.start()
	defer tu.stop()
	runtime.GC()
	tu.tune() // after a fresh collection: the live heap is exact
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	if goal := s[0].Value.Uint64(); goal < floor*9/10 || goal > floor*11/10 {
		t.Fatalf("heap goal %d MiB, want about %d MiB", goal>>20, floor>>20)
	}
}

// TestGCTunerFollowsCollections: the tuner sets GOGC at start and again
// after each collection, from the live heap it reads then, and stop puts
// 100 back and ends it.
func TestGCTunerFollowsCollections(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	var (
		mu   sync.Mutex
		last int
		live atomic.Uint64
	)
	live.Store(8 * mib)
	tuned := make(chan int, 100)
	tu := &gcTuner{
		floor: 64 * mib,
		set:   func(p int) int { mu.Lock(); last = p; mu.Unlock(); return 100 },
		live:  func() (uint64, uint64) { return live.Load(), 0 },
	}
	tu.tuned = func(p int) { tuned <- p }
	tu.start()
	if p := <-tuned; p != 700 {
		t.Fatalf("at start: GOGC %d, want 700", p)
	}
	live.Store(16 * mib) // read by the cleanup goroutine after the GC below
	for got := false; !got; {
		runtime.GC()
		select {
		case p := <-tuned:
			if p != 300 {
				t.Fatalf("after a collection: GOGC %d, want 300", p)
			}
			got = true
		default:
		}
	}
	tu.stop()
	live.Store(1 * mib)
	runtime.GC()
	runtime.GC()
	mu.Lock()
	defer mu.Unlock()
	if last != 100 {
		t.Fatalf("after stop: GOGC %d, want 100", last)
	}
}

// TestStartGCTuner: the environment's GOGC or GOMEMLIMIT, or a floor of 0,
// leaves the collector alone.
func TestStartGCTuner(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	m := NewMain()
	m.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	env := map[string]string{"GOMEMLIMIT": "1GiB"}
	if tu := startGCTuner(m, func(k string) string { return env[k] }); tu != nil {
		t.Fatal("tuning although GOMEMLIMIT is set")
	}
	if !strings.Contains(logs.String(), `"GOMEMLIMIT":"1GiB"`) {
		t.Errorf("log = %s", logs.String())
	}
	m.GCMinHeapMiB = 0
	if tu := startGCTuner(m, func(string) string { return "" }); tu != nil {
		t.Fatal("tuning with a floor of 0")
	}
}
