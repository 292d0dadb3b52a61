package service

import "net/url"

// redactURL returns raw fit for a log line: credentials dropped and every
// query value replaced, since signatures and tokens often travel there.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable url)"
	}
	u.User = nil
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			for i := range vs {
				vs[i] = "REDACTED"
			}
			q[k] = vs
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment = ""
	return u.String()
}
