package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchdv1 "github.com/fetchd/fetchd/gen/fetchd/v1"
	"github.com/fetchd/fetchd/internal/egress"
	"github.com/fetchd/fetchd/internal/idempotency"
	"github.com/fetchd/fetchd/internal/identity"
	"github.com/fetchd/fetchd/internal/outbound"
	"github.com/fetchd/fetchd/internal/policy"
)

// Sentinels of the idempotency flow.
var (
	errKeyConflict = errors.New("idempotency key was already used with a different request (method, URL or body); use a new key")
	errInFlight    = errors.New("a request with this idempotency key is still in flight or its outcome is unknown; retry later with the same key")
	errDraining    = errors.New("fetchd is shutting down")
	// errSendPanicked is a keyed send that panicked; it answers INTERNAL.
	errSendPanicked = errors.New("keyed send panicked")
	// errReplayTooLarge replays an upstream answer whose body was over the limit.
	errReplayTooLarge = fmt.Errorf("replayed: %w", outbound.ErrBodyTooLarge)
)

// notPermittedError is a target outside the caller's allowance.
type notPermittedError struct {
	caller, host string
	redirect     bool
}

func (e *notPermittedError) Error() string {
	if e.redirect {
		return fmt.Sprintf("redirect to %s refused: caller %q may not reach it (not in its allow_targets)", e.host, e.caller)
	}
	return fmt.Sprintf("caller %q may not reach %s (not in its allow_targets)", e.caller, e.host)
}

// rateLimitedError is a caller over its rate limit.
type rateLimitedError struct {
	caller string
	rate   identity.Rate
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("caller %q is over its rate limit of %g requests/s (burst %d); retry later", e.caller, e.rate.PerSecond, e.rate.Burst)
}

// toStatus maps every error the Fetch flow can produce to its gRPC status.
// It is the only place that chooses codes and client-visible messages.
// applied and traceID, when known, go into the failure details.
func toStatus(err error, applied *fetchdv1.AppliedPolicy, traceID string) error {
	var (
		invalid      *invalidError
		urlErr       *egress.URLError
		denied       *egress.DeniedError
		exhausted    *outbound.ExhaustedError
		notPermitted *notPermittedError
		limited      *rateLimitedError
	)
	switch {
	case errors.As(err, &invalid):
		return status.Error(codes.InvalidArgument, invalid.msg)
	case errors.Is(err, policy.ErrUnknownPolicy):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.As(err, &limited):
		return status.Error(codes.ResourceExhausted, limited.Error())
	case errors.As(err, &notPermitted):
		return status.Error(codes.PermissionDenied, notPermitted.Error())
	case errors.As(err, &urlErr):
		return status.Error(codes.InvalidArgument, "url: "+urlErr.Reason)
	case errors.Is(err, egress.ErrMalformed):
		return status.Error(codes.InvalidArgument, "url is malformed")
	case errors.As(err, &denied):
		// The resolved address stays out: it would map internal names for any caller.
		return status.Errorf(codes.PermissionDenied, "egress guard refused %s: %s", denied.Host, denied.Reason)
	case errors.Is(err, egress.ErrDenied):
		return status.Error(codes.PermissionDenied, "egress guard refused the destination")
	case errors.Is(err, errReplayTooLarge):
		return status.Error(codes.ResourceExhausted, "upstream response body was over the policy's size limit (replayed from the idempotency store; not sent again)")
	case errors.Is(err, outbound.ErrBodyTooLarge):
		return status.Error(codes.ResourceExhausted, "upstream response body is over the policy's size limit")
	case errors.Is(err, idempotency.ErrUnavailable), errors.Is(err, idempotency.ErrClosed):
		return status.Error(codes.Unavailable, "idempotency store is unavailable; nothing was sent upstream")
	case errors.Is(err, idempotency.ErrFull):
		return status.Error(codes.ResourceExhausted, "idempotency store is full; nothing was sent upstream")
	case errors.Is(err, errKeyConflict):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errInFlight):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, errDraining):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return withAttempts(codes.DeadlineExceeded, "deadline exceeded before the upstream answered", exhausted, err, applied, traceID)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.As(err, &exhausted):
		return withAttempts(codes.Unavailable, "no upstream answer", exhausted, err, applied, traceID)
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	return status.Error(codes.Internal, "internal error") // Fetch logs err
}

// withAttempts builds a status whose message names the last attempt's
// outcome class and whose details carry every attempt as a FetchFailure (with
// its person-readable detail, for on-call engineers).
func withAttempts(code codes.Code, msg string, exhausted *outbound.ExhaustedError, err error, applied *fetchdv1.AppliedPolicy, traceID string) error {
	if exhausted == nil && !errors.As(err, &exhausted) {
		return status.Error(code, msg)
	}
	atts := exhausted.Attempts
	if n := len(atts); n > 0 {
		last := atts[n-1]
		if refused(last) && !exhausted.Sent {
			// Nothing reached the upstream: say why, not "no answer".
			msg = last.Detail + "; nothing was sent"
		} else {
			msg = fmt.Sprintf("%s after %d attempt(s); last: %s", msg, n, describe(last))
		}
	}
	st, derr := status.New(code, msg).WithDetails(&fetchdv1.FetchFailure{
		Attempts:     attemptsPB(atts),
		Policy:       applied,
		RetryStopped: exhausted.Stopped,
		TraceId:      traceID,
	})
	if derr != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// refused reports an attempt that fetchd's own protection of the target
// refused before sending.
func refused(a outbound.Attempt) bool {
	return a.Error == outbound.ClassBreakerOpen || a.Error == outbound.ClassTargetHold
}

func describe(a outbound.Attempt) string {
	switch {
	case refused(a):
		// The detail says why and for how long.
		return a.Detail
	case a.Error != "":
		return a.Error
	default:
		return fmt.Sprintf("HTTP %d", a.Status)
	}
}

func attemptsPB(atts []outbound.Attempt) []*fetchdv1.Attempt {
	// One array holds the attempt messages, one their durations.
	ms := make([]fetchdv1.Attempt, len(atts))
	ds := make([]durationpb.Duration, 2*len(atts))
	out := make([]*fetchdv1.Attempt, len(atts))
	for i, a := range atts {
		d, b := &ds[2*i], &ds[2*i+1]
		d.Seconds, d.Nanos = durationParts(a.Duration)
		b.Seconds, b.Nanos = durationParts(a.Backoff)
		m := &ms[i]
		m.Number, m.Status, m.Error = uint32(a.Number), uint32(a.Status), a.Error
		m.Duration, m.Backoff, m.BackoffReason = d, b, a.BackoffReason
		m.Detail, m.Url = a.Detail, a.URL
		out[i] = m
	}
	return out
}

// durationParts splits d the way durationpb.New does.
func durationParts(d time.Duration) (int64, int32) {
	nanos := d.Nanoseconds()
	return nanos / 1e9, int32(nanos % 1e9)
}
