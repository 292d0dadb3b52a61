// Package service implements fetchd.v1.FetchService: it validates a Fetch
// request, resolves its policy, runs the idempotency flow for keyed requests,
// hands the request to the outbound client and maps every failure to one gRPC
// status in exactly one place (status.go).
//
// Invariants:
//   - Bad input is answered INVALID_ARGUMENT with a message a person
//     understands, before anything is sent or any key is claimed.
//   - A final upstream response of any HTTP status is a successful RPC.
//   - Messages never carry secrets (URL credentials, query values, header
//     values) or internal error text.
//   - A keyed request is sent at most once per claim: a repeat is replayed
//     from the store, a different request under the same key is refused, and
//     when the store cannot be reached nothing is sent.
//   - A keyed request whose caller goes away still finishes upstream, bounded
//     by its total timeout, and its result is stored; Service.Shutdown waits
//     for such detached work, and cancels it only at the drain deadline.
//
// Service is safe for concurrent use.
package service
