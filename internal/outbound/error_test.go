package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/fetchd/fetchd/internal/egress"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	opErr := func(op string, err error) error { return &net.OpError{Op: op, Net: "tcp", Err: err} }
	viaURL := func(err error) error { return &url.Error{Op: "Get", URL: "http://h/?token=s3cret", Err: err} }
	denied := &egress.DeniedError{Host: "h", Addr: netip.MustParseAddr("10.0.0.1"), Reason: "private address"}
	tests := []struct {
		name    string
		err     error
		onConn  bool
		connErr error
		want    string
	}{
		{"refused", viaURL(&dialError{err: opErr("dial", os.NewSyscallError("connect", syscall.ECONNREFUSED))}), false, nil, ClassConnectRefused},
		{"dns", viaURL(&dialError{err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}), false, nil, ClassDNS},
		{"dns timeout is dns", viaURL(&dialError{err: &net.DNSError{Err: "i/o timeout", IsTimeout: true}}), false, nil, ClassDNS},
		{"denied at dial", viaURL(&dialError{err: opErr("dial", denied)}), false, nil, ClassDenied},
		{"denied plain", denied, false, nil, ClassDenied},
		{"connect timeout", viaURL(&dialError{err: opErr("dial", os.ErrDeadlineExceeded)}), false, nil, ClassConnectTimeout},
		{"connect ctx deadline", viaURL(&dialError{err: context.DeadlineExceeded}), false, nil, ClassConnectTimeout},
		{"handshake timeout", viaURL(&dialError{err: context.DeadlineExceeded, handshake: true}), false, nil, ClassConnectTimeout},
		{"handshake unknown authority", viaURL(&dialError{err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, handshake: true}), false, nil, ClassTLS},
		{"handshake alert", viaURL(&dialError{err: opErr("remote error", errors.New("tls: handshake failure")), handshake: true}), false, nil, ClassTLS},
		{"handshake reset", viaURL(&dialError{err: opErr("read", os.NewSyscallError("read", syscall.ECONNRESET)), handshake: true}), false, nil, ClassReset},
		{"handshake EOF", viaURL(&dialError{err: io.EOF, handshake: true}), false, nil, ClassReset},
		{"record header", viaURL(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), true, nil, ClassTLS},
		{"unreachable at dial", viaURL(&dialError{err: opErr("dial", os.NewSyscallError("connect", syscall.EHOSTUNREACH))}), false, nil, ClassOther},
		{"reset", viaURL(opErr("read", os.NewSyscallError("read", syscall.ECONNRESET))), true, nil, ClassReset},
		{"broken pipe", viaURL(opErr("write", os.NewSyscallError("write", syscall.EPIPE))), true, nil, ClassReset},
		{"EOF", viaURL(io.EOF), true, nil, ClassReset},
		{"unexpected EOF in body", fmt.Errorf("body: %w", io.ErrUnexpectedEOF), true, nil, ClassReset},
		{"untyped on a closed conn", viaURL(errors.New("http: server closed idle connection")), true, io.EOF, ClassReset},
		{"untyped on a reset conn", viaURL(errors.New("connection broken")), true, syscall.ECONNRESET, ClassReset},
		{"untyped on a live conn", viaURL(errors.New(`malformed HTTP status code "abc"`)), true, nil, ClassProtocol},
		{"closed after a refused re-send", viaURL(errWritesRefused), true, nil, ClassReset},
		{"closed conn", viaURL(opErr("write", net.ErrClosed)), true, nil, ClassReset},
		{"untyped, no conn", viaURL(errors.New("something")), false, nil, ClassOther},
		{"stray timeout", viaURL(os.ErrDeadlineExceeded), true, nil, ClassOther},
	}
	for _, tt := range tests {
		if got := classify(tt.err, tt.onConn, tt.connErr); got != tt.want {
			t.Errorf("%s: classify(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestDescribeRedacts(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("http://user:pw@api.example/v1?token=s3cret&sig=abc")
	// The wrapper repeats the URL; a layer below echoes it too.
	err := &url.Error{Op: "Get", URL: u.String(), Err: fmt.Errorf("upstream at %s refused", u)}
	got := describe(err, u)
	if want := "upstream at http://REDACTED@api.example/v1?REDACTED refused"; got != want {
		t.Errorf("describe = %q, want %q", got, want)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	parse := func(raw string) *url.URL {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	long := strings.Repeat("é", 400) // 800 bytes
	tests := []struct {
		name string
		s    string
		u    *url.URL
		want string
	}{
		{"no URL", "connection refused", nil, "connection refused"},
		{"short query left in words", "dial tcp 1.2.3.4:80: connect: connection refused", parse("http://h/?e"), "dial tcp 1.2.3.4:80: connect: connection refused"},
		{"short query echoed", "GET http://h/?e: refused", parse("http://h/?e"), "GET http://h/?REDACTED: refused"},
		{"query echoed twice", "a ?t=1 b ?t=1", parse("http://h/p?t=1"), "a ?REDACTED b ?REDACTED"},
		{"bare query text is not a query", "t=1 is fine", parse("http://h/p?t=1"), "t=1 is fine"},
		{"query with a fragment", "GET http://h/p?t=1#top", parse("http://h/p?t=1#top"), "GET http://h/p?REDACTED#top"},
		{"credentials", "GET http://user:pw@h/: no", parse("http://user:pw@h/"), "GET http://REDACTED@h/: no"},
		{"user alone", "GET http://e@h/: connection refused", parse("http://e@h/"), "GET http://REDACTED@h/: connection refused"},
		{"both", "http://u:p@h/x?k=v", parse("http://u:p@h/x?k=v"), "http://REDACTED@h/x?REDACTED"},
		{"empty query", "GET http://h/?: x", parse("http://h/?"), "GET http://h/?: x"},
		{"exactly the limit", strings.Repeat("a", 512), nil, strings.Repeat("a", 512)},
		{"clipped", strings.Repeat("a", 600), nil, strings.Repeat("a", 512) + "..."},
		{"clipped on a rune boundary", long, nil, long[:512] + "..."},
		{"clipped mid rune", "a" + long, nil, "a" + long[:510] + "..."},
	}
	for _, tt := range tests {
		if got := redact(tt.s, tt.u); got != tt.want {
			t.Errorf("%s: redact(%q) = %q, want %q", tt.name, tt.s, got, tt.want)
		}
	}
}

func TestExhaustedErrorUnwrapsOnlyWhatCallersBranchOn(t *testing.T) {
	t.Parallel()
	timeout := &ExhaustedError{Attempts: []Attempt{{Number: 1, Error: ClassAttemptTimeout}}, Err: &attemptError{class: ClassAttemptTimeout, detail: "attempt took longer than 1s"}, Sent: true}
	if errors.Is(timeout, context.DeadlineExceeded) {
		t.Error("an attempt timeout reads as the deadline")
	}
	deadline := &ExhaustedError{Err: &attemptError{class: ClassDeadline, cause: context.DeadlineExceeded}}
	if !errors.Is(deadline, context.DeadlineExceeded) {
		t.Error("the total deadline does not read as context.DeadlineExceeded")
	}
	if got := timeout.Error(); got != "outbound: no response after 1 attempt: attempt_timeout: attempt took longer than 1s" {
		t.Errorf("Error() = %q", got)
	}
	tooLarge := &BodyTooLargeError{Limit: 10, Status: 200}
	if !errors.Is(tooLarge, ErrBodyTooLarge) {
		t.Error("BodyTooLargeError is not ErrBodyTooLarge")
	}
}
