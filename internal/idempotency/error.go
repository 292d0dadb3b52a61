package idempotency

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound means the key has no live record.
	ErrNotFound = errors.New("idempotency: key not found")
	// ErrFenced means the token is stale: a newer claim owns the key, the claim completed, or the
	// record is gone. The record was not changed.
	ErrFenced = errors.New("idempotency: fencing token is not current")
	// ErrUnavailable means the store could not be reached. Errors carrying it also wrap the cause.
	ErrUnavailable = errors.New("idempotency: store unavailable")
	// ErrFull means the store is at its size bound; nothing was claimed.
	ErrFull = errors.New("idempotency: store is full")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("idempotency: store is closed")
)

// unavailable wraps cause so that both errors.Is(err, ErrUnavailable) and errors.Is(err, cause) hold.
func unavailable(cause error) error {
	return fmt.Errorf("%w: %w", ErrUnavailable, cause)
}
