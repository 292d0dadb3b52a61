package identity

import (
	"context"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServiceName is the full name of fetchd's gRPC service, whose calls the
// interceptors authenticate.
const ServiceName = "fetchd.v1.FetchService"

// protectedPackage is the proto package prefix of the services that need
// credentials: fetchd's own (fetchd.v1.FetchService and any later fetchd.*
// service). Infrastructure services (grpc.health.v1, grpc.reflection.*) stay
// reachable without credentials so probes and tooling work.
const protectedPackage = "fetchd."

func requiresCredentials(_ context.Context, c interceptors.CallMeta) bool {
	return strings.HasPrefix(c.Service, protectedPackage)
}

// UnaryServerInterceptor authenticates unary calls to fetchd's services
// (see [ServiceName]) with [Authenticator.Authenticate] and passes every
// other call through untouched. A service implementation that overrides
// authentication (auth.ServiceAuthFuncOverride) is refused with INTERNAL
// rather than trusted, so a stray method cannot switch authentication off.
func (a *Authenticator) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	authn := auth.UnaryServerInterceptor(a.Authenticate)
	guarded := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if _, ok := info.Server.(auth.ServiceAuthFuncOverride); ok {
			return nil, errOverride
		}
		return authn(ctx, req, info, handler)
	}
	return selector.UnaryServerInterceptor(guarded, selector.MatchFunc(requiresCredentials))
}

// StreamServerInterceptor is [Authenticator.UnaryServerInterceptor] for
// streaming calls.
func (a *Authenticator) StreamServerInterceptor() grpc.StreamServerInterceptor {
	authn := auth.StreamServerInterceptor(a.Authenticate)
	guarded := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if _, ok := srv.(auth.ServiceAuthFuncOverride); ok {
			return errOverride
		}
		return authn(srv, ss, info, handler)
	}
	return selector.StreamServerInterceptor(guarded, selector.MatchFunc(requiresCredentials))
}

// errOverride refuses a call whose service tries to replace authentication.
var errOverride = status.Error(codes.Internal,
	"fetchd is misconfigured: this service overrides caller authentication, so the call was refused")
