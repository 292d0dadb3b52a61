// Package idempotency stores fetchd's idempotency records: for each key, who is sending the request
// now, or the final response to replay.
//
// # Keys and scopes
//
// A record's Key is the caller's scope (its identity; AnonymousScope until fetchd authenticates
// callers) and the caller-chosen idempotency key. Scopes isolate: the same ID in two scopes names two
// records. Every store keeps any two distinct Keys apart, whatever bytes they hold.
//
// # Claim, lease, fencing token
//
// A request with a key first Claims it. If the key has no live record, or its record is an in-flight
// claim whose lease has ended, the caller takes the key: the store records the caller's fingerprint
// and a lease, and returns a fencing token. Tokens come from one store-wide counter, so a token is
// never issued twice and a claim's token is greater than every token issued before it, for that key
// or any other, even after the earlier record was released or expired (the Redis store also keeps
// this when its counter goes back; see Redis). Otherwise Claim changes nothing and returns the
// existing Entry; comparing fingerprints is the caller's business. A lease that is not positive, or
// a lease or TTL that would carry the record past the year 2262 (time.Unix(0, math.MaxInt64)), is
// an error and claims nothing.
//
// # Complete and release
//
// The holder of a claim finishes with exactly one of:
//   - Complete, which stores the final response (any status) for replay;
//   - Release, which deletes the claim so that the key can be claimed again (nothing was sent).
//
// Both are compare-and-set on the token: they succeed only while the key's record is an in-flight
// claim with that token. A worker whose lease was taken over, or whose claim was already completed
// or released, gets ErrFenced and the record is left as it is, so a late or duplicate worker can
// never overwrite a newer record. A claim whose lease has ended but that nobody took over can still
// complete. Release of a completed record is ErrFenced: a stored response is removed only by expiry.
//
// ClaimWait wraps Claim for a duplicate that arrives while the first request is in flight: it polls
// until the first completes (replay), is released or loses its lease (the caller takes the key), or
// the caller's ctx ends.
//
// # Expiry
//
// Every store decides expiry with its clock (WithNow, default time.Now): a record whose ExpiresAt is
// at or before now does not exist for Claim, Complete, Release and Get, and a lease has ended when
// LeaseExpires is at or before now. The Redis store uses the clock of each fetchd replica that calls
// it, so the replicas' clocks must agree to well within a lease's margin (see Redis). A record
// expires WithTTL (default 24h) after its claim, or after the lease if that is longer, and its TTL
// starts again from Complete. Expired records are removed physically in the background: Memory and
// File run a sweeper goroutine every WithSweepInterval (default 1m) until Close, and also offer
// Sweep; Redis deletes keys itself (PEXPIRE).
//
// # Bounds
//
// Memory and File count each record's bytes (key, fingerprint, response headers and body, and a fixed
// overhead) against WithMaxBytes (256 MiB and 1 GiB by default). A Claim that would add a record while
// the store is at or over its bound first removes expired records, oldest first, and if that does not
// bring the store under the bound it returns ErrFull and claims nothing. Complete of a held claim is
// always accepted, so the store exceeds its bound by at most the responses of the claims in flight.
// Whatever keys arrive, the store's memory and disk stay bounded. The Redis store is bounded by Redis
// (key expiry and maxmemory), not by fetchd, and Redis must run with maxmemory-policy noeviction: an
// evicting policy deletes live claims and records, so a duplicate would be sent again, while under
// noeviction a full Redis refuses writes and keyed requests fail closed (Redis.CheckConfig).
//
// # Durability
//
// Memory keeps nothing across restarts. File commits every write to disk before returning (bbolt,
// group-committed across concurrent callers), and syncs the directory of a file it creates, so
// records and the token counter survive restarts, crashes and power loss. Redis is as durable as
// the server's persistence settings.
//
// # Errors
//
// ErrNotFound, ErrFenced, ErrFull and ErrClosed are sentinels for branching. ErrUnavailable means the
// store could not do its work (Redis unreachable, a disk error); such errors wrap the cause too, and
// fetchd fails keyed requests closed on them. A context that is done before or during a call yields
// the context's error (context.Canceled or context.DeadlineExceeded), not ErrUnavailable.
//
// # Concurrency
//
// All methods of all stores are safe for concurrent use. Of any number of concurrent Claims of one
// key, exactly one takes it.
package idempotency
