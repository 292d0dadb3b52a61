package outbound

import "time"

// windowSlots is how many slots a sliding window is cut into: the window
// slides by a tenth of its length at a time.
const windowSlots = 10

// window counts two quantities (a and b) over a sliding span of time: the
// current slot plus the windowSlots-1 before it. It is not safe for
// concurrent use; its owner's mutex guards it. Times are measured from base
// with time.Time.Sub, so a clock with a monotonic reading is immune to wall
// clock jumps; a time before base counts as base.
type window struct {
	base  time.Time
	width time.Duration // one slot
	slots [windowSlots]windowSlot
}

type windowSlot struct {
	epoch int64 // which slot-length interval since base it counts; 0 = never used
	a, b  int64
}

func newWindow(span time.Duration, base time.Time) window {
	return window{base: base, width: max(span/windowSlots, 1)}
}

// epoch numbers the slot interval now falls in, from 1.
func (w *window) epoch(now time.Time) int64 {
	return int64(max(now.Sub(w.base), 0)/w.width) + 1
}

// add counts da and db at now.
func (w *window) add(now time.Time, da, db int64) {
	e := w.epoch(now)
	s := &w.slots[e%windowSlots]
	if s.epoch != e {
		*s = windowSlot{epoch: e}
	}
	s.a += da
	s.b += db
}

// sum returns the counts of the window that ends at now.
func (w *window) sum(now time.Time) (a, b int64) {
	e := w.epoch(now)
	for i := range w.slots {
		if s := &w.slots[i]; s.epoch > e-windowSlots && s.epoch <= e {
			a += s.a
			b += s.b
		}
	}
	return a, b
}
