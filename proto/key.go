package proto

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrBadKey means a string is not an Ed25519 public key in base64.
var ErrBadKey = errors.New("bad public key")

// PublicKeyTextLen is the length of FormatPublicKey's output: 32 bytes in unpadded base64.
const PublicKeyTextLen = 43

// keyEncodings are the spellings ParsePublicKey accepts, canonical first. All are strict: the
// unused low bits of the last character must be zero, so one key has one spelling per alphabet.
var keyEncodings = []*base64.Encoding{
	base64.RawURLEncoding.Strict(),
	base64.RawStdEncoding.Strict(),
	base64.URLEncoding.Strict(),
	base64.StdEncoding.Strict(),
}

// FormatPublicKey spells an origin's public key the way watch links, flags and logs carry it:
// unpadded base64 with the URL alphabet (43 characters), so it needs no escaping in a URL.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return base64.RawURLEncoding.EncodeToString(pub)
}

// ParsePublicKey reads an Ed25519 public key written by FormatPublicKey. It also accepts the
// standard base64 alphabet, padded or not, and surrounding white space, because keys get pasted
// from other tools. Errors wrap ErrBadKey.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty; give the origin's key as printed by `crowdsurf keygen` (%d base64 characters)", ErrBadKey, PublicKeyTextLen)
	}
	// Go's base64 decoders skip '\r' and '\n' anywhere; a key is one line, so refuse them.
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%w: %q contains a line break", ErrBadKey, clipText(s))
	}
	for _, enc := range keyEncodings {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: %q decodes to %d bytes, an Ed25519 public key has %d", ErrBadKey, clipText(s), len(b), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(b), nil
	}
	return nil, fmt.Errorf("%w: %q is not base64 (want %d characters of A-Z a-z 0-9 - _)", ErrBadKey, clipText(s), PublicKeyTextLen)
}

// clipText shortens untrusted text before it goes into an error message.
func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
