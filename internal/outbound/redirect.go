package outbound

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/fetchd/fetchd/internal/egress"
)

// credentialHeaders are dropped from the first hop that leaves the
// request's own target (scheme, host, port) and from every hop after it,
// even one that comes back: the host that redirected chose where they would
// go. Proxy-Authorization is hop-by-hop and never sent anyway; it is listed
// so that this stays true if that changes.
var credentialHeaders = []string{"Authorization", "Cookie", "Proxy-Authorization"}

// bodyHeaders describe a request body; they are dropped with it when a
// redirect turns the request into a GET (the Fetch standard's
// request-body-header names; Content-Length is never copied).
var bodyHeaders = []string{"Content-Type", "Content-Encoding", "Content-Language", "Content-Location"}

// isRedirect reports a status that is followed when the policy allows:
// 301, 302, 303, 307 and 308. 300 (a choice for the user) and 304 (a cache
// answer) are not redirects to follow.
func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// redirect decides about an answer with a redirect status and header h. It
// returns the URL to follow; or, when the answer is to be returned as it is,
// why (stop: StopMaxRedirects or "") and a detail for the attempt log; or
// the error that ends the run when Request.CheckRedirect refuses the hop.
//
// A missing Location makes the redirect an answer without a detail; one
// that cannot be parsed, or that egress.ParseURL refuses (a scheme other
// than http and https, credentials, a bad host or port), makes it an answer
// with a detail: the upstream's answer is what the caller gets when fetchd
// cannot act on it. A redirect to follow is asked of Request.HopPolicy last,
// whose policy is kept in r.nextPolicy for follow; its error ends the run
// like CheckRedirect's.
func (r *run) redirect(status int, h http.Header) (next *url.URL, stop, detail string, err error) {
	loc := h.Get("Location")
	if loc == "" {
		return nil, "", "", nil
	}
	ref, err := r.url.Parse(loc)
	if err != nil {
		return nil, "", fmt.Sprintf("redirect not followed: Location %q cannot be parsed", egress.RedactURL(loc)), nil
	}
	u, err := egress.ParseURL(ref.String())
	if err != nil {
		var ue *egress.URLError
		if errors.As(err, &ue) {
			return nil, "", fmt.Sprintf("redirect to %q not followed: %s", ue.URL, ue.Reason), nil
		}
		return nil, "", "redirect not followed: Location is malformed", nil
	}
	if r.hops >= r.p.MaxRedirects {
		return nil, StopMaxRedirects, fmt.Sprintf("redirect to %q not followed: the policy follows at most %d redirect(s)", egress.RedactURL(u.String()), r.p.MaxRedirects), nil
	}
	if check := r.req.CheckRedirect; check != nil {
		cu := *u // the check gets a copy: what it does to it changes nothing
		if err := check(&cu); err != nil {
			return nil, "", "", &RedirectError{URL: egress.RedactURL(u.String()), Status: status, Err: err}
		}
	}
	if hopPolicy := r.req.HopPolicy; hopPolicy != nil {
		cu := *u
		p, err := hopPolicy(&cu)
		if err != nil {
			return nil, "", "", &RedirectError{URL: egress.RedactURL(u.String()), Status: status, Err: err}
		}
		r.nextPolicy = &p
	}
	return u, "", "", nil
}

// follow makes r.next the URL of the next hop, as the redirect
// r.nextStatus says: a POST redirected by 301 or 302, and anything but GET and HEAD
// redirected by 303, becomes a GET without a body (RFC 9110 section 15.4,
// the Fetch standard); everything else keeps its method and body. From the
// first hop that leaves the request's own target on, credentials are not
// sent. With Request.HopPolicy, the hop runs with the policy it gave, but
// for TotalTimeout and MaxRedirects, which stay the request's own: the run's
// total deadline (run.total) already bounds every hop, and the hops left
// are counted from the request's limit.
func (r *run) follow() {
	u, status := r.next, r.nextStatus
	r.next, r.nextStatus = nil, 0
	r.hops++
	if r.nextPolicy != nil {
		p := r.nextPolicy.normalized()
		p.TotalTimeout, p.MaxRedirects = r.p.TotalTimeout, r.p.MaxRedirects
		r.p, r.nextPolicy = p, nil
	}

	var drop []string
	if status == http.StatusSeeOther && r.method != http.MethodGet && r.method != http.MethodHead ||
		(status == http.StatusMovedPermanently || status == http.StatusFound) && r.method == http.MethodPost {
		r.method, r.body = http.MethodGet, nil
		drop = append(drop, bodyHeaders...)
	}
	if !r.crossed && targetKey(u) != targetKey(r.req.URL) {
		r.crossed = true
		drop = append(drop, credentialHeaders...)
	}
	if len(drop) > 0 {
		// A copy: the previous hop's request may still be read by net/http.
		// No one has read the copy yet (handed false); what traced says of
		// r.header holds for it too.
		h := r.header.Clone()
		for _, name := range drop {
			delete(h, name)
		}
		r.header, r.handed = h, false
	}
	r.url = u
	r.hopURL = egress.RedactURL(u.String())
}
