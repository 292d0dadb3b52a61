package service

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"runtime/debug"
	"time"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/outbound"
)

const (
	// leaseMargin is added to the total timeout to make a claim's lease: the
	// send is bounded by the total timeout and the store update after it by
	// storeTimeout, so a live worker always completes or releases before its
	// lease can be taken over.
	leaseMargin = 10 * time.Second
	// storeTimeout bounds one store operation made after the caller may have
	// gone (complete, release).
	storeTimeout = 3 * time.Second
	// inFlightPoll is how often a duplicate of an in-flight request looks
	// for its answer.
	inFlightPoll = 20 * time.Millisecond
)

// fetchKeyed runs the idempotency flow of DESIGN.md for a request that
// carries a key.
func (s *Service) fetchKeyed(ctx context.Context, key idempotency.Key, c *call, oreq *outbound.Request, inFlightWait time.Duration) (*fetchdv1.FetchResponse, error) {
	fp := fingerprint(c)
	lease := oreq.Policy.TotalTimeout + leaseMargin

	cl, err := s.store.Claim(ctx, key, fp, lease)
	if err == nil && cl.Token == 0 && !cl.Entry.Completed && cl.Entry.Fingerprint == fp {
		// A duplicate of a request in flight: wait briefly for its answer.
		waitCtx, cancel := context.WithTimeout(ctx, inFlightWait)
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
		return s.sendClaimed(ctx, key, cl.Token, oreq)
	case cl.Entry.Fingerprint != fp:
		s.idempotencyEvent(ctx, idemConflict)
		return nil, errKeyConflict
	default:
		s.idempotencyEvent(ctx, idemReplayed)
		return replay(cl.Entry.Response)
	}
}

// sendClaimed sends a request whose key this call holds. The send runs
// detached from the caller's cancellation, bounded by the policy's total
// timeout, so that a caller who gives up does not leave the outcome unknown:
// the result is stored and the caller's retry replays it.
func (s *Service) sendClaimed(ctx context.Context, key idempotency.Key, token uint64, oreq *outbound.Request) (*fetchdv1.FetchResponse, error) {
	type result struct {
		resp *outbound.Response
		err  error
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.settle(context.WithoutCancel(ctx), key, token, nil, errDraining)
		return nil, errDraining
	}
	s.detached.Add(1)
	s.mu.Unlock()

	done := make(chan result, 1)
	go func() {
		defer s.detached.Done()
		// A panic here is on a goroutine of its own, out of reach of the
		// server's recovery: it must not end the daemon. The key stays
		// claimed until its lease runs out (the outcome is unknown).
		defer func() {
			if p := recover(); p != nil {
				s.logger.ErrorContext(ctx, "fetch: panic in a keyed send; key held until its lease expires", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				done <- result{err: errSendPanicked}
			}
		}()
		sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), oreq.Policy.TotalTimeout)
		defer cancel()
		defer context.AfterFunc(s.detachedCtx, cancel)()
		resp, err := s.client.Do(sendCtx, oreq)
		s.settle(context.WithoutCancel(ctx), key, token, resp, err)
		done <- result{resp, err}
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

// settle records the outcome of a claimed send: a response of any status is
// completed, and so is an answer whose body was over the limit (replayed as
// that refusal); a failure that provably sent nothing releases the key; an
// outcome that is unknown keeps the claim until its lease runs out, so the
// key is never blindly re-sent.
func (s *Service) settle(ctx context.Context, key idempotency.Key, token uint64, resp *outbound.Response, sendErr error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	var (
		err      error
		tooLarge *outbound.BodyTooLargeError
	)
	switch {
	case sendErr == nil:
		err = s.store.Complete(ctx, key, token, record(resp))
	case errors.As(sendErr, &tooLarge):
		// The upstream answered, so the outcome is known: keep it, so that a
		// retry is refused the same way instead of sending the request again.
		err = s.store.Complete(ctx, key, token, idempotency.Response{Status: tooLarge.Status, BodyTooLarge: true})
	case !sent(sendErr):
		err = s.store.Release(ctx, key, token)
	default:
		s.logger.WarnContext(ctx, "fetch: keyed request outcome unknown; key held until its lease expires", "error", sendErr)
		return
	}
	if err != nil {
		s.logger.ErrorContext(ctx, "fetch: idempotency store update failed", "error", err)
	}
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
