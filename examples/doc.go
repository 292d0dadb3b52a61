// Package examples holds client examples in other languages and the demo
// upstream of the README (examples/upstream); its tests run the clients, and
// every grpcurl example of the README, against a real fetchd.
//
// The test builds cmd/fetchd, starts it on 127.0.0.1:0 with an in-memory
// idempotency store, and drives the example clients against httptest
// upstreams. It needs node and npm on PATH (Node.js 20 or later) and runs
// `npm ci` in examples/node, which reaches the npm registry. Without node or
// npm the test is skipped, except when CI=true: CI must run it, so there it
// fails instead. The README test runs grpcurl from PATH or ../.bin (`make
// tools` installs the pinned version there), with the same rule.
package examples
