// Package policy is fetchd's policy model: the organisation's defaults and
// caps, and how a caller's ask is resolved against them into the fully
// specified outbound.Policy that one request runs with.
//
// Invariants:
//   - Resolve never refuses an ask for being too large: asks above a cap are
//     clamped to the cap, and the response's attempt log shows what ran.
//   - Unset (zero) fields of an ask take the policy's values.
//   - Every field of the resolved outbound.Policy is set and within caps.
//
// A Policy is a value; it is safe to share once built.
package policy
