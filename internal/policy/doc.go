// Package policy is fetchd's policy model: the organisation's defaults, caps,
// named policies and per-target rules, the callers it knows, and how a
// caller's ask is resolved against them into the fully specified
// outbound.Policy that one request runs with.
//
// A policy file (YAML, format version 1; examples/policy.yaml shows and
// explains every key) is read by [Load] or [LoadFile] into a [Set]. Without a
// file, [DefaultSet] holds the built-in values of [Default].
//
// # Precedence
//
// For every value a request runs with (timeouts, retry settings,
// max_request_bytes, max_response_bytes) the first of these that sets it
// wins:
//
//  1. the caller's ask ([Ask]; zero or negative is unset);
//  2. the named policy the request selects (FetchRequest.policy);
//  3. the target rule that matches the URL's host;
//  4. the file's defaults section;
//  5. the built-in default ([Default]).
//
// Then the caps clamp it: the org caps (the caps section over the built-in
// caps), tightened for a target by the rule's own caps (the lower wins).
// Caps clamp asks and file values alike, and every clamp is reported in
// [Resolved].Clamped. max_backoff is then raised to initial_backoff if it is
// below it, and a multiplier asked below 1 reads as 1.
//
// Target-only settings (max_conns, idempotency_header, follow_redirects and
// max_redirects, protection) come from the matched rule over the org's
// protection section and the built-in values; a rule's protection replaces
// the org's field by field. Host patterns are exact hosts, "*.suffix" or
// "*"; the most specific matching one wins (egress.HostPattern.Specificity):
// an exact host, then the longest suffix, then "*".
//
// # Invariants
//
//   - Resolve never refuses an ask for being too large: asks above a cap are
//     clamped to the cap, and each clamp is reported.
//   - Every field of a resolved outbound.Policy is set and within the caps
//     that apply to its target.
//   - A file value above a cap is refused at Load, naming both keys: a value
//     in defaults, a named policy or a target rule above the org cap, a
//     target value above its rule's own caps, a target cap above the org cap.
//     A named policy or a default value above a target rule's caps is not
//     an error: it is clamped for that target, and reported.
//   - Built-in defaults the file does not replace are lowered to the file's
//     caps, so a file that lowers a cap need not restate the default.
//   - Load is strict: unknown keys, wrong types (a string where a number is,
//     a list where a mapping is, a duration without a unit, a fraction where
//     a whole number is), keys without a value, duplicate keys, anchors and
//     aliases (refused, not resolved), YAML tags, more than one document, an
//     empty file and a missing or other version are refused. Every problem
//     is an [Error] naming the file, line and key path
//     ("targets[1].retry.max_attempts"; list indexes count from 0). Load
//     reports every problem of shape (keys, types) it finds, up to 20; once
//     the shape is right, every problem of value, up to 20.
//   - Durations are Go duration strings with a unit ("250ms", "3s", "24h").
//     Sizes are a number of bytes or a string with a binary unit ("512B",
//     "64KiB", "4MiB", "1GiB"); the decimal units KB, MB and GB are refused
//     as ambiguous, and so are negative sizes and sizes that overflow.
//   - Hard limits: max_request_bytes at most 8 MiB (fetchd's gRPC receive
//     limit is 8 MiB + 64 KiB), max_response_bytes at most 64 MiB,
//     max_redirects at most 20.
//   - The caller table is unambiguous: a token hash or a certificate
//     identity belongs to one caller (DNS names compared in any case, as
//     the authenticator matches them), and the compiled table passes
//     identity.Config.Validate, whose problems are reported as Errors on
//     the callers key.
//   - Resolve sets outbound.Policy.ShortenedTimeouts when the ask lowers
//     the connect, read or attempt timeout below what the policy gives
//     without it, so that a caller's own short timeouts never count against
//     the target's breaker.
//   - Secrets never appear in messages: a malformed token hash and the store
//     URL are not echoed.
//   - A Set is immutable after Load and safe for concurrent use; accessors
//     return copies. Resolve is cheap (no file work per request: layers, caps
//     and target rules are compiled at Load).
//
// Policy and Default are the built-in values; Policy.Resolve applies them
// without a file and agrees with DefaultSet().Resolve.
package policy
