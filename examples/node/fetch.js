// fetch.js: call fetchd's FetchService from Node.js.
//
//   node fetch.js https://api.example.com/v1/charges
//
// It sends one Fetch RPC and prints a JSON summary on stdout: the upstream
// status and body, every attempt fetchd made, whether the answer was replayed
// from the idempotency store, the trace ID and the policy the call ran with.
// A gRPC error is printed as JSON too (code, message and, when fetchd attached
// one, the FetchFailure listing the attempts); the exit status is then 1.
//
// Environment:
//   FETCHD_ADDR            fetchd's gRPC address (default 127.0.0.1:7070)
//   FETCH_URL              the URL, when not given as the first argument
//   FETCH_METHOD           HTTP method (default GET)
//   FETCH_BODY             request body, sent as UTF-8 bytes (default none)
//   FETCH_IDEMPOTENCY_KEY  idempotency key (default a new random UUID)
//   FETCHD_TOKEN           bearer token, when fetchd's policy names callers

import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

// The repository's proto directory. fetchd.proto imports
// "google/protobuf/duration.proto"; proto-loader resolves every import
// against includeDirs, except the well-known google/protobuf/* files, which
// protobufjs bundles, so no copy of them is needed on disk.
const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));
const PROTO_FILE = 'fetchd/v1/fetchd.proto';

// How messages look in JavaScript. keepCase false (the default) turns
// idempotency_key into idempotencyKey, trace_id into traceId and so on.
// int64 values (Duration.seconds) arrive as strings, so no precision is lost;
// bytes (body) arrive as Buffers; unset fields take their defaults (messages:
// null).
const LOADER_OPTIONS = {
  keepCase: false,
  longs: String,
  defaults: true,
  includeDirs: [PROTO_ROOT],
};

// DEADLINE_MS bounds the whole RPC on the client side. The request's
// timeouts.total (shorter) bounds fetchd's work, so a slow upstream ends in
// fetchd's own DEADLINE_EXCEEDED, with the attempts listed, before this
// client gives up.
const DEADLINE_MS = 15_000;
const TOTAL_TIMEOUT_MS = 10_000;

const addr = process.env.FETCHD_ADDR || '127.0.0.1:7070';
const url = process.argv[2] || process.env.FETCH_URL;
if (!url) {
  console.error('usage: node fetch.js URL   (or set FETCH_URL); FETCHD_ADDR names fetchd (default 127.0.0.1:7070)');
  process.exit(2);
}

// 1. Load the proto and build a client stub.
const packageDefinition = protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS);
const fetchdv1 = grpc.loadPackageDefinition(packageDefinition).fetchd.v1;
// Plaintext, as fetchd serves it by default. When fetchd runs with
// --tls-cert/--tls-key use grpc.credentials.createSsl(fs.readFileSync(caFile))
// instead; send a bearer token only over TLS beyond localhost.
const client = new fetchdv1.FetchService(addr, grpc.credentials.createInsecure());

// 2. The request. Field names are camelCase (see LOADER_OPTIONS).
const request = {
  url,
  method: process.env.FETCH_METHOD || 'GET',
  headers: [{ name: 'Accept', value: 'application/json' }],
  body: process.env.FETCH_BODY ? Buffer.from(process.env.FETCH_BODY, 'utf8') : Buffer.alloc(0),
  // The key makes the call deduplicated (a second call with the same key and
  // the same method, URL and body is answered from the store, replayed =
  // true) and lets fetchd retry a POST. A real caller derives it from the
  // operation (an order ID, say) so that its own retries reuse it; a random
  // key per run only protects fetchd's internal retries.
  idempotencyKey: process.env.FETCH_IDEMPOTENCY_KEY || randomUUID(),
  // google.protobuf.Duration is {seconds, nanos}. Unset timeouts take the
  // policy's values; fetchd clamps what is above the organisation's caps.
  timeouts: { total: duration(TOTAL_TIMEOUT_MS) },
};

// 3. Call metadata: the caller's bearer token, when there is one. Without it
// fetchd treats the call as anonymous (its default policy allows that from
// loopback only).
const metadata = new grpc.Metadata();
if (process.env.FETCHD_TOKEN) {
  metadata.set('authorization', `Bearer ${process.env.FETCHD_TOKEN}`);
}

// 4. Call, with a deadline, and print what happened.
try {
  const response = await new Promise((resolve, reject) => {
    client.Fetch(request, metadata, { deadline: Date.now() + DEADLINE_MS }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
  // A final upstream answer of any HTTP status (404, or a 503 after the
  // retries ran out) is a successful RPC: check response.status.
  print({
    status: response.status,
    body: response.body.toString('utf8'),
    attempts: response.attempts.map(attemptSummary),
    replayed: response.replayed,
    traceId: response.traceId,
    // policy is unset on a replay: the call did not run again.
    policy: response.policy ? response.policy.name : null,
    caller: response.policy ? response.policy.caller : null,
  });
} catch (err) {
  // A gRPC error is an outcome that is not an upstream answer. err.code is
  // the numeric status code (grpc.status.UNAVAILABLE is 14), err.details the
  // message. UNAVAILABLE and DEADLINE_EXCEEDED from fetchd carry a
  // FetchFailure; UNAVAILABLE without one means fetchd itself was not
  // reachable (or its idempotency store was not, and nothing was sent).
  if (typeof err.code !== 'number') throw err; // not a gRPC error
  const failure = fetchFailure(err);
  print({
    error: {
      code: err.code,
      codeName: grpc.status[err.code],
      message: err.details,
      failure: failure && {
        attempts: failure.attempts.map(attemptSummary),
        retryStopped: failure.retryStopped,
        traceId: failure.traceId,
        policy: failure.policy ? failure.policy.name : null,
      },
    },
  });
  process.exitCode = 1;
} finally {
  client.close();
}

// duration converts milliseconds to a google.protobuf.Duration.
function duration(ms) {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

// formatDuration prints a Duration in the proto JSON form ("0.061s").
// seconds arrives as a string (longs: String); an unset Duration is null.
function formatDuration(d) {
  if (!d) return '0s';
  const fraction = String(d.nanos).padStart(9, '0').replace(/0+$/, '');
  return fraction ? `${d.seconds}.${fraction}s` : `${d.seconds}s`;
}

function attemptSummary(a) {
  return {
    number: a.number,
    status: a.status, // 0 when no response arrived
    error: a.error, // a class such as "connect_refused"; empty when a response arrived
    detail: a.detail, // a person-readable description of the error
    backoff: formatDuration(a.backoff), // the wait before this attempt
  };
}

function print(summary) {
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
}

// fetchFailure returns the fetchd.v1.FetchFailure in a gRPC error's status
// details, as a plain object, or null when there is none.
//
// gRPC servers put the full google.rpc.Status (code, message, details) in the
// binary trailer grpc-status-details-bin; each detail is a google.protobuf.Any
// whose type URL names the message. grpc-js exposes the trailer in
// err.metadata but does not decode it, and proto-loader only provides
// serializers for a method's request and response types, so this uses
// protobufjs (the library under proto-loader) directly.
function fetchFailure(err) {
  const [bin] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!bin) return null;
  const types = detailTypes();
  const status = types.Status.decode(bin);
  for (const any of status.details) {
    // protobufjs's bundled google.protobuf.Any keeps the proto field name
    // type_url (messages parsed from .proto text get camelCase names).
    if (any.type_url === 'type.googleapis.com/fetchd.v1.FetchFailure') {
      return types.FetchFailure.toObject(types.FetchFailure.decode(any.value), {
        longs: String,
        defaults: true,
      });
    }
  }
  return null;
}

// detailTypes loads FetchFailure from the same proto file and declares
// google.rpc.Status, which is not bundled with protobufjs (it lives in
// googleapis' google/rpc/status.proto; this is its definition).
function detailTypes() {
  const root = new protobuf.Root();
  // Like includeDirs: every path is relative to the proto root. (protobufjs
  // serves google/protobuf/* from its bundled copies before asking.)
  root.resolvePath = (_origin, target) => path.join(PROTO_ROOT, target);
  root.loadSync([PROTO_FILE, 'google/protobuf/any.proto']);
  protobuf.parse(
    `syntax = "proto3";
     package google.rpc;
     message Status {
       int32 code = 1;
       string message = 2;
       repeated google.protobuf.Any details = 3;
     }`,
    root,
  );
  root.resolveAll();
  return {
    Status: root.lookupType('google.rpc.Status'),
    FetchFailure: root.lookupType('fetchd.v1.FetchFailure'),
  };
}
