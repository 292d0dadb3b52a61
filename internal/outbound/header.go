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
	return endToEnd(h, true, "Host", "Content-Length")
}

// responseHeader returns the upstream's headers minus hop-by-hop ones.
func responseHeader(h http.Header) http.Header { return endToEnd(h, false) }

// endToEnd copies h with canonical names, leaving out hop-by-hop headers,
// the names listed in Connection, and drop; with agent, it adds the default
// User-Agent when h has none. The values of all names share one array, each
// name's slice capped at its own values, so that an append to one never
// overwrites another's.
func endToEnd(h http.Header, agent bool, drop ...string) http.Header {
	var listed []string
	n := 0 // values in h
	for name, values := range h {
		n += len(values)
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
	out := make(http.Header, len(h)+1)
	if agent {
		n++ // room for the User-Agent
	}
	all := make([]string, 0, n)
	for name, values := range h {
		name = textproto.CanonicalMIMEHeaderKey(name)
		if hopByHop[name] || slices.Contains(listed, name) || slices.Contains(drop, name) {
			continue
		}
		start := len(all)
		all = append(all, values...)
		if prev, ok := out[name]; ok {
			// Two names of h canonicalise alike: the values are joined
			// in an array of their own.
			out[name] = append(prev, all[start:]...)
			continue
		}
		out[name] = all[start:len(all):len(all)]
	}
	if _, ok := out["User-Agent"]; agent && !ok {
		all = append(all, defaultUserAgent)
		out["User-Agent"] = all[len(all)-1 : len(all) : len(all)]
	}
	return out
}
