package idempotency

import (
	"context"
	"time"
)

// sweeper calls a store's Sweep on a ticker until stopped.
type sweeper struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startSweeper starts the background sweeper, or returns nil when interval is not positive.
func startSweeper(interval time.Duration, sweep func(context.Context) (int, error)) *sweeper {
	if interval <= 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &sweeper{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// A failed sweep is retried at the next tick, and a Claim at the size bound sweeps
				// on its own, so there is nothing more to do with the error here.
				_, _ = sweep(ctx)
			}
		}
	}()
	return s
}

// stop stops the sweeper and waits for its goroutine to return. It is safe on a nil sweeper.
func (s *sweeper) stop() {
	if s == nil {
		return
	}
	s.cancel()
	<-s.done
}

// sweepChunk is how many records a sweep removes per lock hold or transaction, so that a large
// sweep never stalls the store's callers for long.
const sweepChunk = 1024
