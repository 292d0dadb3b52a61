package idempotency

import (
	"context"
	"errors"
	"time"
)

// ClaimWait claims key like s.Claim, but while the key is in flight for a request with the same
// fingerprint it waits and tries again every interval, so that a duplicate sent while the first is
// still running gets the first one's response. It returns as soon as a Claim
//   - takes the key (Token > 0: it was released, its lease ended or its record expired),
//   - finds a completed entry (replay it),
//   - finds an entry with a different fingerprint (waiting cannot help), or
//   - fails.
//
// If ctx ends first, ClaimWait returns the last Claim, whose Entry is the in-flight claim, together
// with ctx's error; bound the wait with a ctx deadline. interval must be positive.
func ClaimWait(ctx context.Context, s Store, key Key, fingerprint string, lease, interval time.Duration) (Claim, error) {
	if interval <= 0 {
		return Claim{}, errors.New("idempotency: ClaimWait interval must be positive")
	}
	var timer *time.Timer
	for {
		c, err := s.Claim(ctx, key, fingerprint, lease)
		if err != nil || c.Token != 0 || c.Entry.Completed || c.Entry.Fingerprint != fingerprint {
			return c, err
		}
		if timer == nil {
			timer = time.NewTimer(interval)
			defer timer.Stop()
		} else {
			timer.Reset(interval)
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-timer.C:
		}
	}
}
