package service

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"runtime/debug"
	"time"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/outbound"
)

const (
	// leaseMargin is added to the total timeout to make a claim's lease: the
	// send is bounded by the total timeout and the first store update after
	// it by storeTimeout, so a live worker with a working store always
	// completes or releases before its lease can be taken over. The rest of
	// the margin is for retrying that update while the store is unreachable.
	leaseMargin = 10 * time.Second
	// storeTimeout bounds one store operation made after the caller may have
	// gone (complete, release).
	storeTimeout = 3 * time.Second
	// inFlightPoll is how often a duplicate of an in-flight request looks
	// for its answer.
	inFlightPoll = 20 * time.Millisecond
	// settleBackoff and settleMaxBackoff pace the retries of a store update
	// that failed because the store could not be reached: the wait doubles
	// from settleBackoff up to settleMaxBackoff, each one jittered down to
	// as little as half.
	settleBackoff    = 50 * time.Millisecond
	settleMaxBackoff = 2 * time.Second
)

// fetchKeyed runs the idempotency flow of DESIGN.md for a request that
// carries a key.
func (s *Service) fetchKeyed(ctx context.Context, key idempotency.Key, c *call, oreq *outbound.Request, inFlightWait time.Duration) (*fetchdv1.FetchResponse, error) {
	fp := fingerprint(c)
	lease := oreq.Policy.TotalTimeout + leaseMargin

	// A claim's lease runs from when the store records it, which is no
	// earlier than this reading: leaseEnd never overstates the lease.
	leaseEnd := s.now().Add(lease)
	cl, err := s.store.Claim(ctx, key, fp, lease)
	if err == nil && cl.Token == 0 && !cl.Entry.Completed && cl.Entry.Fingerprint == fp {
		// A duplicate of a request in flight: wait briefly for its answer.
		waitCtx, cancel := context.WithTimeout(ctx, inFlightWait)
		leaseEnd = s.now().Add(lease)
		cl, err = idempotency.ClaimWait(waitCtx, s.store, key, fp, lease, inFlightPoll)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			s.idempotencyEvent(ctx, idemInFlight)
			return nil, errInFlight
		}
	}
	switch {
	case err != nil:
		return nil, err
	case cl.Token != 0:
		s.idempotencyEvent(ctx, idemClaimed)
		return s.sendClaimed(ctx, key, cl.Token, leaseEnd, oreq)
	case cl.Entry.Fingerprint != fp:
		s.idempotencyEvent(ctx, idemConflict)
		return nil, errKeyConflict
	default:
		s.idempotencyEvent(ctx, idemReplayed)
		return replay(cl.Entry.Response)
	}
}

// sendClaimed sends a request whose key this call holds until leaseEnd. The
// send runs detached from the caller's cancellation, bounded by the policy's
// total timeout, so that a caller who gives up does not leave the outcome
// unknown: the result is stored and the caller's retry replays it. The
// caller is answered after the first attempt to store the result; if the
// store could not be reached, the same detached goroutine goes on trying
// until the lease ends (see retryUpdate).
func (s *Service) sendClaimed(ctx context.Context, key idempotency.Key, token uint64, leaseEnd time.Time, oreq *outbound.Request) (*fetchdv1.FetchResponse, error) {
	type result struct {
		resp *outbound.Response
		err  error
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		// Nothing was sent. Shutdown has begun, so no retry is started:
		// if this release fails the key is held until its lease ends.
		if u := s.settle(context.WithoutCancel(ctx), key, token, nil, errDraining); u != nil {
			s.logger.ErrorContext(ctx, "fetch: idempotency store update failed", "error", u.err, "update", u.kind)
		}
		return nil, errDraining
	}
	s.detached.Add(1)
	s.mu.Unlock()

	done := make(chan result, 1)
	go func() {
		defer s.detached.Done()
		answered := false
		// A panic here is on a goroutine of its own, out of reach of the
		// server's recovery: it must not end the daemon. The key stays
		// claimed until its lease runs out (the outcome is unknown).
		defer func() {
			if p := recover(); p != nil {
				s.logger.ErrorContext(ctx, "fetch: panic in a keyed send; key held until its lease expires", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !answered {
					done <- result{err: errSendPanicked}
				}
			}
		}()
		resp, err := s.send(ctx, oreq)
		u := s.settle(context.WithoutCancel(ctx), key, token, resp, err)
		done <- result{resp, err}
		answered = true
		if u != nil {
			s.retryUpdate(context.WithoutCancel(ctx), u, leaseEnd)
		}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		return responsePB(r.resp), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// send makes a claimed send, detached from ctx's cancellation and bounded by
// the policy's total timeout; Shutdown's deadline cancels it.
func (s *Service) send(ctx context.Context, oreq *outbound.Request) (*outbound.Response, error) {
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), oreq.Policy.TotalTimeout)
	defer cancel()
	defer context.AfterFunc(s.detachedCtx, cancel)()
	return s.client.Do(sendCtx, oreq)
}

// storeUpdate is a store update that records a claimed send's outcome.
type storeUpdate struct {
	kind  string // "complete" or "release"
	key   idempotency.Key
	token uint64
	run   func(ctx context.Context) error
	err   error // of the last attempt
}

// settle records the outcome of a claimed send: a response of any status is
// completed, and so is an answer whose body was over the limit (replayed as
// that refusal); a failure that provably sent nothing releases the key; an
// outcome that is unknown keeps the claim until its lease runs out, so the
// key is never blindly re-sent.
//
// settle makes one attempt, bounded by storeTimeout. When that attempt
// failed for a reason that may pass (the store was unreachable or too slow)
// it returns the update for the caller to retry; any other failure is logged
// here, and settle returns nil.
func (s *Service) settle(ctx context.Context, key idempotency.Key, token uint64, resp *outbound.Response, sendErr error) *storeUpdate {
	var (
		u        = &storeUpdate{key: key, token: token}
		tooLarge *outbound.BodyTooLargeError
	)
	switch {
	case sendErr == nil:
		u.kind = "complete"
		rec := record(resp)
		u.run = func(ctx context.Context) error { return s.store.Complete(ctx, key, token, rec) }
	case errors.As(sendErr, &tooLarge):
		// The upstream answered, so the outcome is known: keep it, so that a
		// retry is refused the same way instead of sending the request again.
		u.kind = "complete"
		rec := idempotency.Response{Status: tooLarge.Status, BodyTooLarge: true}
		u.run = func(ctx context.Context) error { return s.store.Complete(ctx, key, token, rec) }
	case !sent(sendErr):
		u.kind = "release"
		u.run = func(ctx context.Context) error { return s.store.Release(ctx, key, token) }
	default:
		s.logger.WarnContext(ctx, "fetch: keyed request outcome unknown; key held until its lease expires", "error", sendErr)
		return nil
	}
	attemptCtx, cancel := context.WithTimeout(ctx, storeTimeout)
	u.err = u.run(attemptCtx)
	cancel()
	switch {
	case u.err == nil:
		return nil
	case transient(u.err):
		return u
	}
	s.logger.ErrorContext(ctx, "fetch: idempotency store update failed", "error", u.err, "update", u.kind)
	return nil
}

// transient reports whether a failed store update may succeed if tried
// again: the store could not be reached, or did not answer in time. A
// refusal (ErrFenced: the claim is no longer this call's) or a closed store
// is final.
func transient(err error) bool {
	return errors.Is(err, idempotency.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// retryUpdate tries u again, with capped, jittered exponential backoff,
// after its first attempt failed transiently, so that an answer the caller
// already has is recorded once the store is back. It stops when the update
// succeeds, when the store refuses it for good, when the claim's lease ends
// at leaseEnd (another call may take the key over from then on; the fencing
// token would refuse a later update anyway), or when Shutdown gives up
// waiting (s.detachedCtx). Keys are never logged.
func (s *Service) retryUpdate(ctx context.Context, u *storeUpdate, leaseEnd time.Time) {
	left := leaseEnd.Sub(s.now())
	s.logger.WarnContext(ctx, "fetch: idempotency store update failed", "error", u.err, "update", u.kind, "retry_for", left.Round(time.Millisecond))
	leaseCtx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	defer context.AfterFunc(s.detachedCtx, cancel)()

	attempts := 1
	giveUp := func(reason string) {
		args := []any{"error", u.err, "update", u.kind, "attempts", attempts, "reason", reason}
		if u.kind == "release" {
			// Nothing was sent: once the lease ends, sending the key is safe.
			s.logger.WarnContext(ctx, "fetch: idempotency store update abandoned; key held until its lease expires", args...)
			return
		}
		s.logger.ErrorContext(ctx, "fetch: idempotency store update abandoned; outcome recorded nowhere; key re-sendable after its lease", args...)
	}
	wait := settleBackoff
	for {
		timer := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-leaseCtx.Done():
			timer.Stop()
			giveUp(s.stopReason())
			return
		case <-s.detachedCtx.Done():
			timer.Stop()
			giveUp(s.stopReason())
			return
		case <-timer.C:
		}
		wait = min(2*wait, settleMaxBackoff)

		attempts++
		attemptCtx, cancelAttempt := context.WithTimeout(leaseCtx, storeTimeout)
		err := u.run(attemptCtx)
		landed := err == nil
		switch {
		case !errors.Is(err, idempotency.ErrFenced):
		case u.kind == "release":
			// The claim is gone, released by an earlier attempt whose reply
			// was lost or taken over after its lease: either way there is
			// nothing left to release.
			landed = true
		default:
			// An earlier attempt that timed out or lost its reply may have
			// been applied: then the record is this claim's.
			// The Get gets its own time: the failed Complete may have used up
			// the attempt's. If it cannot tell, the next round asks again.
			getCtx, cancelGet := context.WithTimeout(leaseCtx, storeTimeout)
			e, gerr := s.store.Get(getCtx, u.key)
			cancelGet()
			landed = gerr == nil && e.Completed && e.Token == u.token
			if gerr != nil && transient(gerr) {
				err = gerr
			}
		}
		cancelAttempt()
		switch {
		case landed:
			s.logger.InfoContext(ctx, "fetch: idempotency store update succeeded on retry", "update", u.kind, "attempts", attempts)
			return
		case leaseCtx.Err() != nil:
			// The attempt was cut short by the lease end or Shutdown.
			if err != nil {
				u.err = err
			}
			giveUp(s.stopReason())
			return
		case !transient(err):
			u.err = err
			giveUp("refused")
			return
		}
		u.err = err
	}
}

// stopReason says why retryUpdate stopped before its update succeeded.
func (s *Service) stopReason() string {
	if s.detachedCtx.Err() != nil {
		return "shutdown"
	}
	return "lease ended"
}

// sent reports whether a failed send may have reached the upstream.
func sent(err error) bool {
	var exhausted *outbound.ExhaustedError
	switch {
	case errors.As(err, &exhausted):
		// First: a guard refusal of a redirect hop comes after the first
		// hop reached the upstream, and Sent says so.
		return exhausted.Sent
	case errors.Is(err, egress.ErrDenied), errors.Is(err, egress.ErrMalformed), errors.Is(err, errDraining):
		return false
	}
	return true
}

func record(r *outbound.Response) idempotency.Response {
	out := idempotency.Response{Status: r.Status, Body: r.Body}
	eachHeader(r.Header, func(name, value string) {
		out.Header = append(out.Header, idempotency.HeaderField{Name: name, Value: value})
	})
	return out
}

func replay(r *idempotency.Response) (*fetchdv1.FetchResponse, error) {
	if r.BodyTooLarge {
		return nil, errReplayTooLarge
	}
	hs := make([]*fetchdv1.Header, len(r.Header))
	for i, h := range r.Header {
		hs[i] = &fetchdv1.Header{Name: h.Name, Value: h.Value}
	}
	return &fetchdv1.FetchResponse{Status: uint32(r.Status), Headers: hs, Body: r.Body, Replayed: true}, nil
}

// fingerprint identifies the request a key was first used with: method,
// normalised URL and body. Headers are left out, so a new Authorization token
// or trace context on a retry does not count as a different request.
func fingerprint(c *call) string {
	h := sha256.New()
	writeField(h, []byte(c.method))
	writeField(h, []byte(c.u.String()))
	writeField(h, c.body)
	return hex.EncodeToString(h.Sum(nil))
}

// writeField length-prefixes each field so that ("a", "bc") and ("ab", "c")
// hash differently.
func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}
