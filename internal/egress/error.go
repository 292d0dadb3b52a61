package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

var (
	// ErrDenied means the guard refused the destination address.
	ErrDenied = errors.New("egress: destination not allowed")
	// ErrMalformed means the URL or host cannot be used: bad scheme, no host,
	// bad port, credentials, an invalid IDN, a zone, a bad numeric host.
	ErrMalformed = errors.New("egress: malformed url")
)

// DeniedError reports a refused address. errors.Is(err, ErrDenied) holds for
// it and for any error wrapping it.
type DeniedError struct {
	Host   string     // the host as the caller wrote it, normalised
	Addr   netip.Addr // the refused address
	Reason string     // why, e.g. "loopback address"
}

// Error names the host and the reason. For a name it leaves out the address
// the name resolved to: the text reaches callers (in the attempt log), and
// echoing resolved internal addresses would let any caller map internal DNS.
// Addr is there for logs.
func (e *DeniedError) Error() string {
	if e.Host == "" || e.Host == e.Addr.String() {
		return fmt.Sprintf("egress: %s is not allowed: %s", e.Addr, e.Reason)
	}
	return fmt.Sprintf("egress: %s resolves to an address that is not allowed: %s", e.Host, e.Reason)
}

// Unwrap returns ErrDenied.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// URLError reports a URL that cannot be used. errors.Is(err, ErrMalformed)
// holds for it and for any error wrapping it.
type URLError struct {
	URL    string // the URL as given, with credentials, query values and fragment redacted
	Reason string // what is wrong, in words a person understands
}

func (e *URLError) Error() string {
	if e.URL == "" {
		return "egress: invalid url: " + e.Reason
	}
	return fmt.Sprintf("egress: invalid url %q: %s", e.URL, e.Reason)
}

// Unwrap returns ErrMalformed.
func (e *URLError) Unwrap() error { return ErrMalformed }

// DNSError reports a failed lookup: the name does not exist, the resolver
// failed or timed out, or the answer held no address. Nothing was sent.
type DNSError struct {
	Host string // the normalised name that was looked up
	Err  error  // the resolver's error

	ctxErr error // the context's error when the lookup ended with it
}

func (e *DNSError) Error() string {
	var de *net.DNSError
	if errors.As(e.Err, &de) {
		// net.DNSError's own text names the DNS server; callers need not see it.
		return fmt.Sprintf("egress: cannot resolve %q: %s", e.Host, de.Err)
	}
	return fmt.Sprintf("egress: cannot resolve %q: %v", e.Host, e.Err)
}

// Unwrap returns the resolver's error and, when the lookup ended because the
// context did, the context's error.
func (e *DNSError) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.Err, e.ctxErr}
	}
	return []error{e.Err}
}

// IsDNSError reports whether err (or an error it wraps) is a name resolution
// failure, from [Guard.Resolve] or from the net package.
func IsDNSError(err error) bool {
	var e *DNSError
	var de *net.DNSError
	return errors.As(err, &e) || errors.As(err, &de)
}

var errNoAddresses = errors.New("no addresses")
