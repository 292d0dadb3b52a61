package identity

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeStream is a ServerStream that only has a context.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

// overrider is a service that tries to replace authentication.
type overrider struct{}

func (overrider) AuthFuncOverride(ctx context.Context, _ string) (context.Context, error) {
	return NewContext(ctx, &Identity{Name: "admin"}), nil
}

func TestStreamInterceptor(t *testing.T) {
	t.Parallel()
	const tok = "stream-token-0000"
	a := New(Config{Callers: []Caller{{Name: "svc", Tokens: [][32]byte{HashToken(tok)}}}, Anonymous: AnonymousNever})
	intercept := a.StreamServerInterceptor()

	for _, tc := range []struct {
		desc   string
		method string
		auth   []string
		srv    any
		code   codes.Code // of the call's error; OK means the handler ran
		name   string     // identity the handler saw; "" means none
	}{
		{"fetchd stream with a token", "/fetchd.v1.FetchService/Watch", []string{"Bearer " + tok}, struct{}{}, codes.OK, "svc"},
		{"fetchd stream without credentials", "/fetchd.v1.FetchService/Watch", nil, struct{}{}, codes.Unauthenticated, ""},
		{"later fetchd service", "/fetchd.v2.Admin/Reload", nil, struct{}{}, codes.Unauthenticated, ""},
		{"reflection", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", nil, struct{}{}, codes.OK, ""},
		{"look-alike package", "/fetchdx.v1.FetchService/Watch", nil, struct{}{}, codes.OK, ""},
		{"override refused", "/fetchd.v1.FetchService/Watch", []string{"Bearer " + tok}, overrider{}, codes.Internal, ""},
	} {
		ran, saw := false, ""
		handler := func(_ any, ss grpc.ServerStream) error {
			ran = true
			if id, ok := FromContext(ss.Context()); ok {
				saw = id.Name
			}
			return nil
		}
		err := intercept(tc.srv, fakeStream{ctx: callCtx(t, remote, nil, tc.auth...)},
			&grpc.StreamServerInfo{FullMethod: tc.method, IsServerStream: true}, handler)
		if got := status.Code(err); got != tc.code {
			t.Errorf("%s: code %v (%v); want %v", tc.desc, got, err, tc.code)
		}
		if ran != (tc.code == codes.OK) || saw != tc.name {
			t.Errorf("%s: handler ran %v as %q; want ran %v as %q", tc.desc, ran, saw, tc.code == codes.OK, tc.name)
		}
	}
}

func TestUnaryInterceptor(t *testing.T) {
	t.Parallel()
	const tok = "unary-token-0000"
	a := New(Config{Callers: []Caller{{Name: "svc", Tokens: [][32]byte{HashToken(tok)}}}, Anonymous: AnonymousNever})
	intercept := a.UnaryServerInterceptor()
	for _, tc := range []struct {
		desc   string
		method string
		auth   []string
		srv    any
		code   codes.Code
		name   string
	}{
		{"Fetch with a token", "/fetchd.v1.FetchService/Fetch", []string{"Bearer " + tok}, struct{}{}, codes.OK, "svc"},
		{"Fetch with a bad token", "/fetchd.v1.FetchService/Fetch", []string{"Bearer nope"}, struct{}{}, codes.Unauthenticated, ""},
		{"health without credentials", "/grpc.health.v1.Health/Check", nil, struct{}{}, codes.OK, ""},
		{"override refused", "/fetchd.v1.FetchService/Fetch", nil, overrider{}, codes.Internal, ""},
	} {
		ran, saw := false, ""
		handler := func(ctx context.Context, _ any) (any, error) {
			ran = true
			if id, ok := FromContext(ctx); ok {
				saw = id.Name
			}
			return "ok", nil
		}
		_, err := intercept(callCtx(t, remote, nil, tc.auth...), struct{}{},
			&grpc.UnaryServerInfo{FullMethod: tc.method, Server: tc.srv}, handler)
		if got := status.Code(err); got != tc.code {
			t.Errorf("%s: code %v (%v); want %v", tc.desc, got, err, tc.code)
		}
		if ran != (tc.code == codes.OK) || saw != tc.name {
			t.Errorf("%s: handler ran %v as %q; want ran %v as %q", tc.desc, ran, saw, tc.code == codes.OK, tc.name)
		}
		if tc.code == codes.Unauthenticated && !errors.As(err, new(*Error)) {
			t.Errorf("%s: err %T; want *identity.Error", tc.desc, err)
		}
	}
}
