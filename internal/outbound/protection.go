package outbound

import (
	"sync/atomic"
	"time"
)

// protection is the state that protects one target, shared by every Do to
// it: its retry budget, its circuit breaker and its shared Retry-After hold.
// It lives as long as the target's place in the pool: a target evicted as
// least recently used forgets it, and starts afresh when it comes back. A
// new transport for the target (a MaxConns change) keeps it.
//
// Each Do reads its settings from its own Policy. The budget and the breaker
// remember the settings they were built with; a Do that carries different
// ones (the policy was reloaded) replaces that piece with a fresh one, so a
// reload resets the counts, and an open breaker closes. Every request to one
// target is meant to carry the same settings; two policies that disagree
// about one target would reset each other's state over and over.
//
// It is safe for concurrent use: the pieces are swapped atomically and each
// has its own synchronisation.
type protection struct {
	key     string // the target, for messages
	budget  atomic.Pointer[budget]
	breaker atomic.Pointer[breaker]
	hold    hold
}

// budgetFor returns the target's budget for cfg (normalized), building it
// anew if it was built with other settings; nil when cfg bounds nothing.
func (p *protection) budgetFor(cfg Budget, now func() time.Time) *budget {
	if !cfg.Enabled() {
		return nil
	}
	for {
		b := p.budget.Load()
		if b != nil && b.cfg == cfg {
			return b
		}
		nb := newBudget(cfg, now())
		if p.budget.CompareAndSwap(b, nb) {
			return nb
		}
	}
}

// breakerFor returns the target's breaker for cfg (normalized), building it
// anew if it was built with other settings; nil when cfg never opens.
func (p *protection) breakerFor(cfg Breaker, now func() time.Time) *breaker {
	if !cfg.Enabled() {
		return nil
	}
	for {
		b := p.breaker.Load()
		if b != nil && b.cfg == cfg {
			return b
		}
		nb := newBreaker(cfg, p.key, now())
		if p.breaker.CompareAndSwap(b, nb) {
			return nb
		}
	}
}
