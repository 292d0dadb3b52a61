package telemetry

import (
	"net/url"
	"strings"
)

// DefaultRedactedQueryParams are the query parameters whose values never
// reach a span, a log line or a metric: the OpenTelemetry semantic
// conventions' list (AWSAccessKeyId, Signature, sig, X-Goog-Signature) and
// the rest of a presigned S3 URL's credentials.
var DefaultRedactedQueryParams = []string{
	"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature",
	"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
}

// Redacted replaces a redacted value, as the semantic conventions say.
const Redacted = "REDACTED"

// URLRedactor writes URLs for url.full: without userinfo, and with the
// values of the named query parameters replaced by [Redacted]. Names match
// case-insensitively. The zero URLRedactor drops userinfo only. It is
// immutable and safe for concurrent use.
type URLRedactor struct {
	params map[string]struct{} // lower-case names
}

// NewURLRedactor redacts DefaultRedactedQueryParams plus extra.
func NewURLRedactor(extra ...string) URLRedactor {
	r := URLRedactor{params: make(map[string]struct{}, len(DefaultRedactedQueryParams)+len(extra))}
	for _, p := range DefaultRedactedQueryParams {
		r.params[strings.ToLower(p)] = struct{}{}
	}
	for _, p := range extra {
		if p != "" {
			r.params[strings.ToLower(p)] = struct{}{}
		}
	}
	return r
}

// Full returns u as text fit for url.full. The fragment is dropped (it is
// never sent), and so is userinfo; a redacted parameter keeps its name.
// The rest of the query is kept as sent.
func (r URLRedactor) Full(u *url.URL) string {
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" && len(r.params) > 0 {
		c.RawQuery = r.query(c.RawQuery)
	}
	return c.String()
}

func (r URLRedactor) query(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	for i, kv := range strings.Split(raw, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		k, _, hasValue := strings.Cut(kv, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if _, secret := r.params[strings.ToLower(name)]; secret && hasValue {
			b.WriteString(k + "=" + Redacted)
			continue
		}
		b.WriteString(kv)
	}
	return b.String()
}
