package identity

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestTokenHash(t *testing.T) {
	t.Parallel()
	// SHA-256("abc"), FIPS 180-2 appendix B.1.
	const abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := FormatTokenHash(HashToken("abc")); got != abc {
		t.Fatalf("FormatTokenHash(HashToken(abc)) = %s; want %s", got, abc)
	}
	for _, s := range []string{abc, "sha256:" + strings.ToUpper(abc[len("sha256:"):])} {
		h, err := ParseTokenHash(s)
		if err != nil || h != HashToken("abc") {
			t.Fatalf("ParseTokenHash(%q) = %x, %v; want the digest of abc", s, h, err)
		}
	}
	for _, bad := range []string{
		"",
		abc[len("sha256:"):],  // no prefix
		"SHA256:" + abc[7:],   // prefix is case-sensitive
		"sha256:" + abc[7:70], // short
		abc + "00",            // long
		"sha256:" + strings.Repeat("zz", 32),
	} {
		if _, err := ParseTokenHash(bad); err == nil {
			t.Errorf("ParseTokenHash(%q) succeeded; want an error", bad)
		}
	}
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 8 {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) != 32 || len(tok) != 43 {
			t.Fatalf("NewToken = %q (%d bytes decoded, err %v); want 32 bytes as 43 base64url characters", tok, len(b), err)
		}
		if seen[tok] {
			t.Fatalf("NewToken repeated %q", tok)
		}
		seen[tok] = true
	}
}
