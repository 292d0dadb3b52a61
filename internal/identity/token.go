package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// tokenHashPrefix starts the text form of a token digest in the policy file.
const tokenHashPrefix = "sha256:"

// HashToken returns the SHA-256 digest of a bearer token, the form in which
// [Caller.Tokens] holds it. Only digests are kept, so the policy file and
// fetchd's memory never hold a token.
func HashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// FormatTokenHash returns "sha256:" followed by the digest in lower-case
// hex, the form the policy file stores.
func FormatTokenHash(h [sha256.Size]byte) string { return tokenHashPrefix + hex.EncodeToString(h[:]) }

// ParseTokenHash parses the form [FormatTokenHash] writes. The "sha256:"
// prefix is required; the hex may be upper or lower case. Since s is a
// digest, not a token, the error may quote it.
func ParseTokenHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	rest, ok := strings.CutPrefix(s, tokenHashPrefix)
	if !ok {
		return h, fmt.Errorf("token hash %q must start with %q (run `fetchd token` to make one)", clip(s, 80), tokenHashPrefix)
	}
	if len(rest) != hex.EncodedLen(sha256.Size) {
		return h, fmt.Errorf("token hash %q must have %d hex digits after %q, not %d", clip(s, 80), hex.EncodedLen(sha256.Size), tokenHashPrefix, len(rest))
	}
	if _, err := hex.Decode(h[:], []byte(rest)); err != nil {
		return h, fmt.Errorf("token hash %q is not hex: %w", clip(s, 80), err)
	}
	return h, nil
}

// NewToken returns a new bearer token: 32 bytes from crypto/rand, encoded
// as unpadded base64url (43 characters). Pass it to [HashToken] and
// [FormatTokenHash] for the policy file; give the token itself to the caller.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// clip shortens s to at most n bytes for a message, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
