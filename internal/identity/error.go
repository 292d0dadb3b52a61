package identity

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinels for why [Authenticator.Authenticate] refused a call. Every
// refusal is an [*Error] that wraps one of them, so errors.Is tells them
// apart; to gRPC each is UNAUTHENTICATED.
var (
	// ErrMalformedAuthorization: the authorization metadata is not one
	// "Bearer <token>" value.
	ErrMalformedAuthorization = errors.New("malformed authorization metadata")
	// ErrUnknownToken: the bearer token belongs to no caller.
	ErrUnknownToken = errors.New("unknown bearer token")
	// ErrUnverifiedCertificate: the peer presented a client certificate that
	// the TLS handshake did not verify against the client CA pool.
	ErrUnverifiedCertificate = errors.New("client certificate not verified")
	// ErrUnknownCertificate: the verified client certificate matches no caller.
	ErrUnknownCertificate = errors.New("unknown client certificate")
	// ErrAmbiguous: a token or certificate matches more than one caller, so
	// the caller table cannot say who is calling.
	ErrAmbiguous = errors.New("credential matches more than one caller")
	// ErrMismatch: a bearer token and a client certificate were both given
	// and they name different callers.
	ErrMismatch = errors.New("token and certificate name different callers")
	// ErrCredentialsRequired: no credentials were given and the policy does
	// not accept an anonymous call from this peer.
	ErrCredentialsRequired = errors.New("credentials required")
)

// Error is a refused authentication. Its message is written for the caller
// and never contains a token or other secret; Unwrap returns one of the
// sentinels above. GRPCStatus makes it UNAUTHENTICATED with that message
// when it is returned from a gRPC handler or interceptor.
type Error struct {
	err error  // one of the sentinels
	msg string // what the caller sees
}

func refuse(sentinel error, msg string) *Error { return &Error{err: sentinel, msg: msg} }

// Error returns the message the caller sees.
func (e *Error) Error() string { return e.msg }

// Unwrap returns the sentinel that says why the call was refused.
func (e *Error) Unwrap() error { return e.err }

// GRPCStatus returns UNAUTHENTICATED with the error's message.
func (e *Error) GRPCStatus() *status.Status { return status.New(codes.Unauthenticated, e.msg) }
