package identity

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// matches reports whether the certificate has the identity m names: its URI
// SAN (the exact string of the URL), its DNS SAN (case-insensitive) or its
// subject common name (exact). A CertMatch with more than one field set
// matches only a certificate that has all of them ([Config.Validate]
// refuses such a CertMatch); one with none set matches nothing.
func (m CertMatch) matches(c *x509.Certificate) bool {
	if m == (CertMatch{}) {
		return false
	}
	if m.URI != "" && !slices.ContainsFunc(c.URIs, func(u *url.URL) bool { return u.String() == m.URI }) {
		return false
	}
	if m.DNS != "" && !containsFold(c.DNSNames, m.DNS) {
		return false
	}
	if m.CommonName != "" && c.Subject.CommonName != m.CommonName {
		return false
	}
	return true
}

func containsFold(names []string, name string) bool {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// verifiedLeaf returns the peer's client certificate if the TLS handshake
// verified it. presented is true when the peer sent a certificate at all.
func verifiedLeaf(p *peer.Peer) (leaf *x509.Certificate, presented bool) {
	if p == nil {
		return nil, false
	}
	var state *credentials.TLSInfo
	switch info := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		state = &info
	case *credentials.TLSInfo:
		state = info
	}
	if state == nil {
		return nil, false
	}
	// Every verified chain starts with the same leaf: the peer's certificate.
	for _, chain := range state.State.VerifiedChains {
		if len(chain) > 0 {
			return chain[0], true
		}
	}
	return nil, len(state.State.PeerCertificates) > 0
}

// fromCertificate returns the caller the peer's verified client certificate
// names, nil when the peer sent no certificate.
func (t *table) fromCertificate(p *peer.Peer) (*caller, error) {
	leaf, presented := verifiedLeaf(p)
	switch {
	case !presented:
		return nil, nil
	case leaf == nil:
		// Only a misconfigured server (a ClientAuth that does not verify)
		// gets here. Falling back to anonymous would hand an unverified
		// peer whatever anonymous calls may do, so refuse.
		return nil, refuse(ErrUnverifiedCertificate,
			"client certificate was not verified against the server's client CA pool; send a certificate it trusts, or none")
	}
	var found *caller
	for _, c := range t.callers {
		for _, m := range c.certs {
			if !m.matches(leaf) {
				continue
			}
			if found != nil && found != c {
				return nil, refuse(ErrAmbiguous,
					"client certificate matches more than one caller; the policy must name each certificate for one caller")
			}
			found = c
			break
		}
	}
	if found == nil {
		return nil, refuse(ErrUnknownCertificate, fmt.Sprintf(
			"client certificate (%s) is not a known caller; the policy must name it in a caller's certificates", describe(leaf)))
	}
	return found, nil
}

// describe names a certificate briefly for a message: its subject common
// name and its first URI and DNS SANs. None of this is secret.
func describe(c *x509.Certificate) string {
	var parts []string
	if c.Subject.CommonName != "" {
		parts = append(parts, "subject CN="+strconv.Quote(clip(c.Subject.CommonName, 64)))
	}
	uris := make([]string, len(c.URIs))
	for i, u := range c.URIs {
		uris[i] = u.String()
	}
	if len(uris) > 0 {
		parts = append(parts, "URI SANs "+shortList(uris))
	}
	if len(c.DNSNames) > 0 {
		parts = append(parts, "DNS SANs "+shortList(c.DNSNames))
	}
	if len(parts) == 0 {
		return "no subject CN, URI or DNS SANs"
	}
	return strings.Join(parts, ", ")
}

// shortList quotes up to three entries and counts the rest.
func shortList(xs []string) string {
	const shown = 3
	var b strings.Builder
	for i, x := range xs {
		if i == shown {
			fmt.Fprintf(&b, " and %d more", len(xs)-shown)
			break
		}
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(strconv.Quote(clip(x, 64)))
	}
	return b.String()
}
