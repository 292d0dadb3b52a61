package outbound

import (
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/fetchd/fetchd/internal/egress"
)

// literals remembers IP literal hosts that egress guards allowed, so that
// checkLiteral need not ask the guard again on every call. An egress.Guard
// is immutable and its answer for a literal depends on nothing else, so an
// entry never goes stale. Entries are per guard: a guard that replaces
// another (SetGuard, another Request.Guard) is asked afresh, and the old
// guard's entries are replaced in time (each keeps its guard alive until
// then). Refusals are not kept: they are asked every time, and carry their
// error.
//
// It is a direct-mapped table of literalSlots entries, indexed by host:
// lock-free, bounded, and a host that collides with another replaces it.
// The zero value is not usable; build one with newLiterals.
type literals struct {
	seed  maphash.Seed
	slots [literalSlots]atomic.Pointer[literal]
}

// literal is one allowed host of one guard.
type literal struct {
	guard *egress.Guard
	host  string
}

// literalSlots is the size of the table. Hosts past it share places, and
// their guard is asked more often.
const literalSlots = 64

func newLiterals() *literals { return &literals{seed: maphash.MakeSeed()} }

// slot returns the entry place of host.
func (l *literals) slot(host string) *atomic.Pointer[literal] {
	return &l.slots[maphash.String(l.seed, host)%literalSlots]
}

// allowed reports whether g is known to allow host.
func (l *literals) allowed(g *egress.Guard, host string) bool {
	e := l.slot(host).Load()
	return e != nil && e.guard == g && e.host == host
}

// allow remembers that g allows host.
func (l *literals) allow(g *egress.Guard, host string) {
	l.slot(host).Store(&literal{guard: g, host: strings.Clone(host)}) // not the URL's string
}
