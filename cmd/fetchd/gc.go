package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// gcTuner keeps the garbage collector's heap goal at no less than a floor:
// with GOGC=100 the goal is twice the live heap, and a gateway's live heap
// is small (a few MiB) while it allocates tens of KiB per call, so the
// collector would run dozens of times a second, and each cycle stops,
// scans and restarts every goroutine. While GOGC=100 would put the goal
// under the floor, the tuner raises GOGC so that the goal is the floor;
// above it, GOGC is 100 as usual, so memory still follows the load. It re-computes
// after every collection (a cleanup on a sentinel object runs once per
// cycle). At 64 calls in flight a floor of 64 MiB cut the CPU per call by
// about a fifth (scripts/bench-compare); the cost is that an idle fetchd
// may hold up to the floor in garbage.
type gcTuner struct {
	floor   uint64
	mu      sync.Mutex // orders tune and stop
	stopped bool
	// set and live are debug.SetGCPercent and the live heap and the
	// roots (stacks and globals) in bytes; tests replace them.
	set  func(int) int
	live func() (heap, roots uint64)
	// tuned is called after each re-computation with the percent set.
	tuned func(int)
}

// maxGCPercent bounds the raised GOGC (a live heap of a few hundred KiB
// right after start would otherwise ask for a huge multiple).
const maxGCPercent = 5000

// minHeapUnit is the runtime's minimum heap goal at GOGC=100: the goal is
// never below minHeapUnit × GOGC/100, so GOGC is also capped at
// floor/minHeapUnit × 100, or the goal would pass the floor.
const minHeapUnit = 4 << 20

func newGCTuner(floor uint64) *gcTuner {
	return &gcTuner{floor: floor, set: debug.SetGCPercent, live: gcState}
}

// percent is the GOGC that puts the goal at the floor, never under 100.
// The runtime's goal is live + (live + roots) × GOGC/100, roots being the
// stacks and globals it scans.
func (t *gcTuner) percent(live, roots uint64) int {
	if live+(live+roots) >= t.floor {
		return 100
	}
	p := (t.floor - live) * 100 / max(live+roots, 1)
	return int(max(min(p, maxGCPercent, t.floor*100/minHeapUnit), 100))
}

// start sets GOGC now and after every collection until stop.
func (t *gcTuner) start() {
	t.tune()
	t.arm()
}

func (t *gcTuner) arm() {
	s := new(gcSentinel)
	runtime.AddCleanup(s, func(t *gcTuner) {
		if t.tune() {
			t.arm()
		}
	}, t)
}

// gcSentinel is large enough not to be a tiny allocation, whose cleanups
// may never run.
type gcSentinel struct{ _ [32]byte }

// tune sets GOGC from the live heap; false once stopped.
func (t *gcTuner) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	p := t.percent(t.live())
	t.set(p)
	if t.tuned != nil {
		t.tuned(p)
	}
	return true
}

// stop ends the tuning and puts GOGC back to 100.
func (t *gcTuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.set(100)
}

// gcState reads the live heap and the roots the collector scans.
func gcState() (heap, roots uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	metrics.Read(s)
	var v [3]uint64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	return v[0], v[1] + v[2]
}
