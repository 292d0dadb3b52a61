package outbound

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// hopByHop lists the headers that describe one connection, not the message
// (RFC 9110 section 7.6.1, plus the obsolete Proxy-Connection and Keep-Alive).
var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// defaultUserAgent is sent when the caller gives no User-Agent; without it
// net/http would send "Go-http-client/1.1".
const defaultUserAgent = "fetchd"

// requestHeader returns the headers to send upstream: the caller's, with
// canonical names, minus hop-by-hop headers (and those Connection names), Host
// (the URL decides it) and Content-Length (computed from the body). It sets
// User-Agent to "fetchd" when the caller gave none; a caller that sets an
// empty User-Agent sends none.
func requestHeader(h http.Header) http.Header {
	out := endToEnd(h, "Host", "Content-Length")
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = []string{defaultUserAgent}
	}
	return out
}

// responseHeader returns the upstream's headers minus hop-by-hop ones.
func responseHeader(h http.Header) http.Header { return endToEnd(h) }

// endToEnd copies h with canonical names, leaving out hop-by-hop headers,
// the names listed in Connection, and drop.
func endToEnd(h http.Header, drop ...string) http.Header {
	out := make(http.Header, len(h)+1)
	var listed []string
	for name, values := range h {
		if textproto.CanonicalMIMEHeaderKey(name) != "Connection" {
			continue
		}
		for _, v := range values {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" {
					listed = append(listed, textproto.CanonicalMIMEHeaderKey(tok))
				}
			}
		}
	}
	for name, values := range h {
		name = textproto.CanonicalMIMEHeaderKey(name)
		if hopByHop[name] || slices.Contains(listed, name) || slices.Contains(drop, name) {
			continue
		}
		out[name] = append(out[name], values...)
	}
	return out
}
