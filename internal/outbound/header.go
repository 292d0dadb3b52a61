package outbound

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// hopByHop reports a header that describes one connection, not the
// message (RFC 9110 section 7.6.1, plus the obsolete Proxy-Connection and
// Keep-Alive); name is canonical.
func hopByHop(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// connectionListed returns the names listed in Connection values, canonical.
func connectionListed(listed []string, values []string) []string {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				listed = append(listed, textproto.CanonicalMIMEHeaderKey(tok))
			}
		}
	}
	return listed
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

// responseHeader returns a copy of the upstream's headers minus hop-by-hop
// ones.
func responseHeader(h http.Header) http.Header { return endToEnd(h, false) }

// ownResponseHeader returns the upstream's headers minus hop-by-hop ones
// and the names listed in Connection, as responseHeader does, but removes
// them from h itself rather than copying it, when it can: h must belong to
// the caller, as the header of a response net/http returned does once
// RoundTrip has returned it (net/http writes only Response.Trailer after
// that, never Header). Every name net/http reads is canonical; a header
// with a name that is not (or a nil one) is copied by responseHeader
// instead, which merges names that canonicalise alike.
func ownResponseHeader(h http.Header) http.Header {
	if h == nil {
		return responseHeader(h)
	}
	listed := connectionListed(nil, h["Connection"])
	for name := range h {
		if textproto.CanonicalMIMEHeaderKey(name) != name {
			// Only names the copy leaves out are gone so far, and the
			// names the deleted Connection listed are left out by name:
			// the copy is what it would have been from h untouched.
			return endToEnd(h, false, listed...)
		}
		if hopByHop(name) || slices.Contains(listed, name) {
			delete(h, name) // deleting while ranging is allowed
		}
	}
	return h
}

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
		if textproto.CanonicalMIMEHeaderKey(name) == "Connection" {
			listed = connectionListed(listed, values)
		}
	}
	out := make(http.Header, len(h)+1)
	if agent {
		n++ // room for the User-Agent
	}
	all := make([]string, 0, n)
	for name, values := range h {
		name = textproto.CanonicalMIMEHeaderKey(name)
		if hopByHop(name) || slices.Contains(listed, name) || slices.Contains(drop, name) {
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
