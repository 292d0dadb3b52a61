package idempotency

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// AnonymousScope is the scope of every key until fetchd knows who its callers are.
const AnonymousScope = "anonymous"

// Key is the record key: the caller's scope and the caller-chosen idempotency key. Both are opaque
// byte strings; any two distinct Keys name distinct records in every store.
type Key struct{ Scope, ID string }

// HeaderField is one header line of a stored response. A header with several values is stored as
// several fields, in the order the upstream sent them.
type HeaderField struct{ Name, Value string }

// Response is the final upstream response stored for replay.
type Response struct {
	Status int
	Header []HeaderField
	Body   []byte
	// BodyTooLarge records that the upstream answered with a body over
	// fetchd's limit: Body is empty and a replay is refused the same way,
	// rather than the request being sent again.
	BodyTooLarge bool
}

// Entry is what a store holds for a key. Entries returned by a store are copies: changing one never
// changes the stored record.
type Entry struct {
	Fingerprint  string    // opaque, chosen by the caller of Claim (a hex sha256)
	Token        uint64    // fencing token of the current claim, or of the claim that completed
	Completed    bool      // false: in flight (claimed, lease running or expired)
	Response     *Response // set when Completed
	LeaseExpires time.Time // when !Completed; zero when Completed
	ExpiresAt    time.Time // record expiry (TTL)
}

// Claim is the result of Store.Claim: either this caller holds the key (Entry == nil, Token > 0)
// or the key is held or completed by someone else and Entry describes it (Token == 0).
type Claim struct {
	Token uint64
	Entry *Entry
}

// Store holds idempotency records. See the package documentation for the full contract; every
// implementation passes the same conformance suite. All methods are safe for concurrent use.
type Store interface {
	// Claim claims key with a lease of the given length, recording fingerprint. If the key has no live
	// record, or its record is an in-flight claim whose lease has expired, the caller takes it with a new
	// fencing token strictly greater than any token ever issued for that key by this store. Otherwise
	// Claim returns the existing entry unchanged (the fingerprint is NOT compared by the store).
	// A lease that is not positive is an error, and so is a lease or TTL that would carry the record
	// past the year 2262 (time.Unix(0, math.MaxInt64)); nothing is claimed then. ErrFull means the
	// store is at its size bound and nothing was claimed.
	Claim(ctx context.Context, key Key, fingerprint string, lease time.Duration) (Claim, error)
	// Complete stores resp as the key's final response iff token is the token of the key's in-flight
	// claim (compare-and-set); otherwise ErrFenced and the record is unchanged. A claim whose lease
	// has expired but that nobody has taken over can still complete. The record then lives for the
	// store's TTL, counted from Complete.
	Complete(ctx context.Context, key Key, token uint64, resp Response) error
	// Release deletes the key's in-flight claim iff token is its token (compare-and-set); otherwise
	// ErrFenced and the record is unchanged. Releasing a completed record is ErrFenced: a stored
	// response is only ever removed by its TTL.
	Release(ctx context.Context, key Key, token uint64) error
	// Get returns the key's live entry (in flight or completed) or ErrNotFound.
	Get(ctx context.Context, key Key) (*Entry, error)
	// Close releases the store's resources and stops its background work. Further calls return
	// ErrClosed; Close itself may be called more than once.
	Close() error
}

var (
	_ Store = (*Memory)(nil)
	_ Store = (*File)(nil)
	_ Store = (*Redis)(nil)
)

// live reports whether a record that expires at expiresAt still exists at now.
func live(expiresAt, now time.Time) bool { return expiresAt.After(now) }

// held reports whether e is an in-flight claim whose lease is still running at now.
func held(e *Entry, now time.Time) bool { return !e.Completed && e.LeaseExpires.After(now) }

// newClaimEntry returns the entry a successful claim at now records. The record lives at least as
// long as the lease, so a lease longer than the TTL is never cut short by expiry.
func newClaimEntry(fingerprint string, token uint64, now time.Time, lease, ttl time.Duration) Entry {
	return Entry{
		Fingerprint:  fingerprint,
		Token:        token,
		LeaseExpires: now.Add(lease),
		ExpiresAt:    now.Add(max(ttl, lease)),
	}
}

// clone returns a deep copy of e.
func (e *Entry) clone() *Entry {
	c := *e
	if e.Response != nil {
		r := e.Response.clone()
		c.Response = &r
	}
	return &c
}

// clone returns a deep copy of r.
func (r Response) clone() Response {
	c := Response{Status: r.Status, BodyTooLarge: r.BodyTooLarge}
	if r.Header != nil {
		c.Header = append([]HeaderField(nil), r.Header...)
	}
	if r.Body != nil {
		c.Body = append([]byte{}, r.Body...)
	}
	return c
}

// recordOverhead is roughly what a record costs beyond its variable-length fields: times, token and
// flags, and the store's bookkeeping (Memory: map entry, heap slot and structs, about 250 bytes; File:
// B+tree elements of the record and its expiry index entry). It makes a flood of empty keys count
// against the size bound too.
const recordOverhead = 256

// recordSize is the number of bytes a record counts against a store's size bound: the key, the
// fingerprint, the response's headers and body, and a fixed overhead.
func recordSize(key Key, e *Entry) int64 {
	n := recordOverhead + len(key.Scope) + len(key.ID) + len(e.Fingerprint)
	if e.Response != nil {
		for _, h := range e.Response.Header {
			n += len(h.Name) + len(h.Value)
		}
		n += len(e.Response.Body)
	}
	return int64(n)
}

// size is e's recordSize, or 0 for a nil e.
func (e *Entry) size(key Key) int64 {
	if e == nil {
		return 0
	}
	return recordSize(key, e)
}

// Stats describes what a bounded store holds.
type Stats struct {
	Records int   // stored records, including expired ones not yet swept
	Bytes   int64 // their size as counted against the store's MaxBytes
}

// maxTime is the latest time a record's lease and expiry may reach: the file store encodes times as
// int64 unix nanoseconds, and every store keeps to the same limit (in the year 2262).
var maxTime = time.Unix(0, math.MaxInt64)

// errBadLease is returned by Claim for a lease that is not positive.
var errBadLease = errors.New("idempotency: lease must be positive")

// checkClaim rejects a Claim at now that can never succeed: a lease that is not positive, a lease or
// TTL that would carry the record past maxTime, or a done ctx.
func checkClaim(ctx context.Context, now time.Time, lease, ttl time.Duration) error {
	if lease <= 0 {
		return errBadLease
	}
	if err := checkEnd(now, lease, ttl); err != nil {
		return err
	}
	return ctx.Err()
}

// checkEnd reports an error if a claim at now with lease would end, or its record expire, after
// maxTime. A store that reads its clock again before it records the claim checks again with that
// reading.
func checkEnd(now time.Time, lease, ttl time.Duration) error {
	if d := max(ttl, lease); now.Add(d).After(maxTime) {
		return fmt.Errorf("idempotency: a claim at %s with lease %v and TTL %v would end after %s",
			now.UTC().Format(time.RFC3339), lease, ttl, maxTime.UTC().Format(time.RFC3339))
	}
	return nil
}
