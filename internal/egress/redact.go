package egress

import "strings"

const maxRedacted = 256

// RedactURL makes raw safe to echo back in an error or a log line: userinfo, query values and
// the fragment are replaced by "xxxxx", and the result is clipped. It works
// on the raw text because the URL may not parse at all.
func RedactURL(raw string) string {
	s, frag, hasFrag := strings.Cut(raw, "#")
	s, query, hasQuery := strings.Cut(s, "?")

	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	end := len(s)
	if i := strings.IndexByte(s[start:], '/'); i >= 0 {
		end = start + i
	}
	if at := strings.LastIndexByte(s[start:end], '@'); at >= 0 {
		s = s[:start] + "xxxxx" + s[start+at:]
	}

	var b strings.Builder
	b.WriteString(s)
	if hasQuery {
		b.WriteByte('?')
		for i, kv := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			k, _, hasValue := strings.Cut(kv, "=")
			switch {
			case hasValue:
				b.WriteString(k + "=xxxxx")
			case kv != "":
				b.WriteString("xxxxx")
			}
		}
	}
	if hasFrag && frag != "" {
		b.WriteString("#xxxxx")
	}
	return clip(b.String(), maxRedacted)
}
