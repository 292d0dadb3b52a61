package outbound

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

// protection is the state that protects one target, shared by every Do to
// it: its retry budget, its circuit breaker and its shared Retry-After hold.
// It lives in the Client's protections table, apart from the target's
// transports: dropping a transport (WithMaxTargets, a MaxConns change,
// SetGuard) keeps it.
//
// Each Do reads its settings from its own Policy. The budget and the breaker
// remember the settings they were built with; a Do whose settings are the
// target's own (see budgetFor) and differ (the policy was reloaded) replaces
// that piece with a fresh one, so a reload resets the counts, and an open
// breaker closes. Every request to one target is meant to carry the same
// settings; two policies that disagree about one target would reset each
// other's state over and over.
//
// It is safe for concurrent use: the pieces are swapped atomically and each
// has its own synchronisation.
type protection struct {
	key     string // the target, for messages
	budget  atomic.Pointer[budget]
	breaker atomic.Pointer[breaker]
	hold    hold

	uses  atomic.Int64 // hops using it now; taken under the table's mutex
	elem  *list.Element
	grade standing // the last sweep's grade; the table's mutex guards it
}

// release ends one use taken by protections.get.
func (p *protection) release() { p.uses.Add(-1) }

// budgetFor returns the target's budget for cfg (normalized). When own is
// true (cfg is the target's own setting), a budget built with other settings
// is replaced by a fresh one, and a cfg that bounds nothing drops it and
// returns nil. When own is false (a redirect hop run with another target's
// settings), the budget in place is kept and used whatever cfg says, and one
// is built from cfg only when there is none: settings that are not the
// target's must never reset or switch off its state.
func (p *protection) budgetFor(cfg Budget, now func() time.Time, own bool) *budget {
	for {
		b := p.budget.Load()
		switch {
		case b != nil && (b.cfg == cfg || !own):
			return b
		case !cfg.Enabled():
			if own && b != nil && !p.budget.CompareAndSwap(b, nil) {
				continue
			}
			return nil
		}
		nb := newBudget(cfg, now())
		if p.budget.CompareAndSwap(b, nb) {
			return nb
		}
	}
}

// breakerFor returns the target's breaker for cfg (normalized). When own is
// true (cfg is the target's own setting), a breaker built with other
// settings is replaced by a fresh, closed one, and a cfg that never opens
// drops it and returns nil. When own is false (a redirect hop run with
// another target's settings), the breaker in place is kept and used whatever
// cfg says, and one is built from cfg only when there is none.
func (p *protection) breakerFor(cfg Breaker, now func() time.Time, own bool) *breaker {
	for {
		b := p.breaker.Load()
		switch {
		case b != nil && (b.cfg == cfg || !own):
			return b
		case !cfg.Enabled():
			if own && b != nil && !p.breaker.CompareAndSwap(b, nil) {
				continue
			}
			return nil
		}
		nb := newBreaker(cfg, p.key, now())
		if p.breaker.CompareAndSwap(b, nb) {
			return nb
		}
	}
}

// standing grades what forgetting a target's protection would lose, for
// the protections table's evictions.
type standing int

const (
	// standingIdle: nothing; the state is as good as new. No Do is using
	// it, its breaker (if any) is closed with no failure in a row and none
	// counted in its window, no hold is in force, and its budget (if any)
	// counted no request and no retry in its window.
	standingIdle standing = iota
	// standingActive: counts that shape the next decisions (failures
	// towards opening the breaker, requests and retries in the budget), or
	// a Do using it now.
	standingActive
	// standingGuarding: it is holding calls back: the breaker is open or
	// half-open, or a shared Retry-After hold is in force.
	standingGuarding
)

// standing grades p at now. It takes the budget's and the breaker's
// mutexes, one at a time.
func (p *protection) standing(now time.Time) standing {
	if p.hold.left(now) > 0 {
		return standingGuarding
	}
	s := standingIdle
	if b := p.breaker.Load(); b != nil {
		s = b.standing(now)
		if s == standingGuarding {
			return s
		}
	}
	if s == standingIdle && p.uses.Load() > 0 {
		s = standingActive
	}
	if s == standingIdle {
		if b := p.budget.Load(); b != nil && !b.empty(now) {
			s = standingActive
		}
	}
	return s
}

// protections keeps the protection state of at most max targets, apart from
// the pool of transports, so that calls to other targets (another port of
// the same host, say) cannot make a target forget an open breaker by
// pushing its transport out of the pool.
//
// When a new target would make it hold more than max, it sweeps: it forgets
// every idle target (standingIdle: nothing is lost, the next call starts the
// same state afresh); only when that frees fewer than max/64 places (at
// least one), that is, when every target left is active, does it forget
// active ones until it has freed that many, the least recently used first,
// and the ones guarding (an open or half-open breaker, a hold in force) only
// once no other is left. The target just added is never swept. A sweep
// visits every target (O(max), under the table's mutex) and frees at least
// max/64 places, so it happens at most once per max/64 new targets: its cost
// per new target is bounded by a constant.
//
// It is safe for concurrent use.
type protections struct {
	now func() time.Time

	mu    sync.Mutex
	max   int
	lru   *list.List // of *protection, most recently used at the front
	byKey map[string]*protection
}

// sweepFraction is the share of the table a sweep frees at least: 1/64.
const sweepFraction = 64

func newProtections(n int, now func() time.Time) *protections {
	return &protections{now: now, max: n, lru: list.New(), byKey: make(map[string]*protection)}
}

// get returns the protection state of the target key, creating it (and
// sweeping when the table is full), and takes one use of it, which the
// caller ends with release. While used, a target is at least active.
func (t *protections) get(key string) *protection {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.byKey[key]; ok {
		t.lru.MoveToFront(p.elem)
		p.uses.Add(1)
		return p
	}
	p := &protection{key: key}
	p.uses.Add(1)
	p.elem = t.lru.PushFront(p)
	t.byKey[key] = p
	if t.lru.Len() > t.max {
		t.sweep()
	}
	return p
}

// sweep makes room (see protections). t.mu is held.
func (t *protections) sweep() {
	now := t.now()
	quota := max(t.lru.Len()-t.max, t.max/sweepFraction, 1)
	newest := t.lru.Front()
	freed := 0
	for e := t.lru.Back(); e != newest; {
		prev := e.Prev()
		p := e.Value.(*protection)
		if p.grade = p.standing(now); p.grade == standingIdle {
			t.forget(p)
			freed++
		}
		e = prev
	}
	for _, grade := range []standing{standingActive, standingGuarding} {
		for e := t.lru.Back(); e != newest && freed < quota; {
			prev := e.Prev()
			if p := e.Value.(*protection); p.grade == grade {
				t.forget(p)
				freed++
			}
			e = prev
		}
	}
}

// forget drops p from the table. A Do still using it goes on with it; the
// next get of its key starts afresh. t.mu is held.
func (t *protections) forget(p *protection) {
	t.lru.Remove(p.elem)
	delete(t.byKey, p.key)
}

// keys lists the targets, most recently used first.
func (t *protections) keys() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, t.lru.Len())
	for e := t.lru.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*protection).key)
	}
	return out
}
