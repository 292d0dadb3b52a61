// Package fakeclock is a manually advanced clock for tests, passed where
// fetchd takes a Now func (WithNow options). It is safe for concurrent use.
package fakeclock

import (
	"sync"
	"time"
)

// Clock reads a time that moves only when Advance is called.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a Clock reading start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
