package egress

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ParseURL validates and normalises a caller-supplied URL.
//
// The URL must be absolute with scheme http or https (any case; returned in
// lower case), have a host, carry no userinfo, and have a port, if any, in
// 1-65535. The host is normalised to what a resolver would reach: lower case,
// IDN mapped to ASCII with a strict IDNA lookup profile, one trailing dot
// removed, and numeric IPv4 spellings (2130706433, 0x7f000001, 0177.0.0.1,
// 127.1, 0x7f.1) rewritten to the dotted quad. IPv6 literals are written in
// canonical form; zones are refused. The fragment is dropped, and a space in
// the query is escaped (%20). The port is
// kept as written, without leading zeros, and an empty port is removed.
//
// Every error is a *URLError (errors.Is(err, ErrMalformed)). ParseURL does
// not resolve names nor judge addresses: that is [Guard.Resolve]'s job.
func ParseURL(raw string) (*url.URL, error) {
	fail := func(reason string) (*url.URL, error) {
		return nil, &URLError{URL: RedactURL(raw), Reason: reason}
	}
	switch {
	case raw == "":
		return fail("url is empty")
	case hasControl(raw):
		return fail("url contains a control character")
	case strings.TrimSpace(raw) != raw:
		return fail("url has leading or trailing spaces")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fail(parseFailure(raw, err))
	}
	switch {
	case u.Scheme == "":
		return fail("url must be absolute (http:// or https://)")
	case u.Scheme != "http" && u.Scheme != "https":
		return fail(fmt.Sprintf("scheme %q is not allowed: only http and https", clip(u.Scheme, 32)))
	case u.Opaque != "":
		// "http:example.com": a scheme but no "//" authority.
		return fail("url must be absolute (http:// or https://)")
	case u.User != nil:
		return fail("credentials in the url are not allowed; send an Authorization header")
	case u.Host == "":
		return fail("url has no host")
	}

	port := u.Port()
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 64)
		if err != nil || n < 1 || n > 65535 {
			return fail(fmt.Sprintf("port %s is out of range 1-65535", clip(port, 16)))
		}
		port = strconv.FormatUint(n, 10)
	}

	var host string
	if strings.HasPrefix(u.Host, "[") {
		addr, reason := ipv6Literal(u.Hostname())
		if reason != "" {
			return fail(reason)
		}
		host = addr.String()
	} else {
		name, addr, reason := normalizeHost(u.Hostname())
		if reason != "" {
			return fail(reason)
		}
		host = name
		if addr.IsValid() {
			host = addr.String()
		}
	}

	switch {
	case port != "":
		u.Host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		u.Host = "[" + host + "]"
	default:
		u.Host = host
	}
	u.Fragment, u.RawFragment = "", ""
	// url.Parse keeps a space in the query as it is, and it would go out
	// in the request line ("GET /?a b HTTP/1.1"), where a space ends the
	// target: it is sent escaped, as a browser does.
	u.RawQuery = strings.ReplaceAll(u.RawQuery, " ", "%20")
	return u, nil
}

// parseFailure turns a url.Parse error into a reason a person understands.
func parseFailure(raw string, err error) string {
	if p, ok := rawPort(raw); ok && !allDigits(p) {
		return fmt.Sprintf("port %q is not a number", clip(p, 16))
	}
	var hostErr url.InvalidHostError
	if errors.As(err, &hostErr) {
		return fmt.Sprintf("host contains %q, which is not allowed in a host", string(hostErr))
	}
	var escErr url.EscapeError
	if errors.As(err, &escErr) {
		return fmt.Sprintf("url contains an invalid escape %q", clip(string(escErr), 16))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "url cannot be parsed: " + ue.Err.Error()
	}
	return "url cannot be parsed"
}

// rawPort finds the port text of an unparsable absolute URL, if it has one.
func rawPort(raw string) (string, bool) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return "", false
	}
	auth := raw[i+3:]
	if j := strings.IndexAny(auth, "/?#"); j >= 0 {
		auth = auth[:j]
	}
	if j := strings.LastIndexByte(auth, '@'); j >= 0 {
		auth = auth[j+1:]
	}
	if strings.HasPrefix(auth, "[") {
		j := strings.IndexByte(auth, ']')
		if j < 0 || !strings.HasPrefix(auth[j+1:], ":") {
			return "", false
		}
		return auth[j+2:], true
	}
	j := strings.LastIndexByte(auth, ':')
	if j < 0 {
		return "", false
	}
	return auth[j+1:], true
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// clip shortens s to at most n bytes (on a rune boundary) for a message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
