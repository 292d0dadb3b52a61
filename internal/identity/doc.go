// Package identity decides who a fetchd gRPC call runs as, and carries what
// the policy grants that caller: the targets it may reach and its rate limit.
//
// An [Authenticator] holds the caller table of one policy generation
// ([Config]). Its interceptors run [Authenticator.Authenticate] (through
// go-grpc-middleware's auth interceptor) on every call to a fetchd service;
// the handler reads the result with [FromContext] and asks the [Identity]
// [Identity.Permits] and [Identity.Allow].
//
// Invariants:
//
//   - Every call to a service in the fetchd.* proto packages (today
//     fetchd.v1.FetchService) is authenticated before its handler runs, or
//     refused with UNAUTHENTICATED; a refused call never reaches the
//     handler. Other services (grpc.health.v1, grpc.reflection.*) pass
//     through untouched and need no credentials. A service implementation
//     that tries to override authentication (auth.ServiceAuthFuncOverride)
//     is refused with INTERNAL, never trusted.
//   - Credentials are a bearer token (one "authorization: Bearer <token>"
//     metadata value), a client certificate that the TLS handshake verified,
//     or both; both must then name the same caller. Anything presented must
//     be valid: a bad token is refused even beside a good certificate, and a
//     presented but unverified certificate is refused, never treated as
//     absent. A credential that matches two callers is refused
//     ([ErrAmbiguous]), never resolved by order.
//   - A call without credentials runs as [AnonymousName] only as
//     [Config.Anonymous] allows: always, from a loopback peer address
//     (127.0.0.0/8, ::1, IPv4-mapped loopback), or never. Anything that is
//     not an IP address (a Unix socket) is not loopback.
//   - Tokens exist only as SHA-256 digests ([HashToken]); a token is never
//     stored, logged or put in an error message. Lookup is by digest in a
//     map; its timing depends on the digest's bytes, which an attacker
//     cannot steer without a SHA-256 preimage, and learning bytes of a
//     stored digest does not reveal its token, so it is no useful oracle.
//   - Refusals are [*Error] values that wrap one sentinel (errors.Is) and
//     carry a message for a person; gRPC reports them as UNAUTHENTICATED.
//   - Authenticate does not rate-limit. Each caller has one token bucket
//     (golang.org/x/time/rate, read with the clock from [WithNow]) shared by
//     all its calls; anonymous calls share one. The service calls
//     [Identity.Allow] and maps a refusal to RESOURCE_EXHAUSTED itself.
//   - [Authenticator.Update] swaps the whole table atomically; each call is
//     judged by one table. A caller whose name and [Rate] are unchanged keeps
//     its bucket's state; a changed Rate starts a full bucket. An Identity
//     already handed out keeps the allowance and limiter it was given.
//
// An Authenticator is safe for concurrent use; an Identity is immutable
// after Authenticate returns it.
package identity
