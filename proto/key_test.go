package proto_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/stretchr/testify/require"
)

// plusSlashKey is 32 bytes whose base64 uses '+' and '/' in the standard alphabet and '-' and '_'
// in the URL one, so the alphabets really differ.
func plusSlashKey() ed25519.PublicKey {
	k := make(ed25519.PublicKey, ed25519.PublicKeySize)
	for i := range k {
		k[i] = []byte{0xfb, 0xef, 0xff}[i%3]
	}
	return k
}

func TestFormatPublicKey(t *testing.T) {
	require.Equal(t, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", proto.FormatPublicKey(make(ed25519.PublicKey, 32)))
	require.Equal(t, "--__--__--__--__--__--__--__--__--__--__--8", proto.FormatPublicKey(plusSlashKey()))
	require.Len(t, proto.FormatPublicKey(pubOf(testKey())), proto.PublicKeyTextLen)
}

func TestParsePublicKeyAcceptsEverySpelling(t *testing.T) {
	for _, s := range []string{
		"--__--__--__--__--__--__--__--__--__--__--8",     // canonical
		"--__--__--__--__--__--__--__--__--__--__--8=",    // padded URL
		"++//++//++//++//++//++//++//++//++//++//++8",     // standard, unpadded
		"++//++//++//++//++//++//++//++//++//++//++8=",    // standard, padded (openssl, base64(1))
		"  --__--__--__--__--__--__--__--__--__--__--8\n", // pasted with white space around
	} {
		k, err := proto.ParsePublicKey(s)
		require.NoError(t, err, s)
		require.Equal(t, plusSlashKey(), k, s)
	}
}

func TestParsePublicKeyRoundTrip(t *testing.T) {
	pub := pubOf(testKey())
	got, err := proto.ParsePublicKey(proto.FormatPublicKey(pub))
	require.NoError(t, err)
	require.Equal(t, pub, got)
}

func TestParsePublicKeyRejects(t *testing.T) {
	for _, tc := range []struct{ name, s, why string }{
		{"empty", "", "empty"},
		{"white space only", " \t", "empty"},
		{"too short", "AAAA", "decodes to 3 bytes"},
		{"a private key's length", proto.FormatPublicKey(ed25519.PublicKey(testKey())), "decodes to 64 bytes"},
		{"not base64", "not a key at all, just words and spaces here", "is not base64"},
		// The last character carries 2 unused bits; only one spelling per key is accepted.
		{"unused bits set", "--__--__--__--__--__--__--__--__--__--__--9", "is not base64"},
		{"line break inside", "--__--__--__--__--__--__--\n__--__--__--__--__--8", "line break"},
		{"alphabets mixed", "++__--__--__--__--__--__--__--__--__--__--8", "is not base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proto.ParsePublicKey(tc.s)
			require.ErrorIs(t, err, proto.ErrBadKey)
			require.ErrorContains(t, err, tc.why)
		})
	}
}

// FuzzParsePublicKey reads arbitrary key text (flags, pasted watch links): what it accepts is an
// Ed25519 public key whose canonical spelling parses back to it; what it refuses wraps ErrBadKey.
func FuzzParsePublicKey(f *testing.F) {
	f.Add("--__--__--__--__--__--__--__--__--__--__--8")
	f.Add("++//++//++//++//++//++//++//++//++//++//++8=")
	f.Add("  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
	f.Add("--__--__--__--__--__--__--__--__--__--__--9")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := proto.ParsePublicKey(s)
		if err != nil {
			require.ErrorIs(t, err, proto.ErrBadKey)
			require.Nil(t, k)
			return
		}
		require.Len(t, k, ed25519.PublicKeySize)
		again, err := proto.ParsePublicKey(proto.FormatPublicKey(k))
		require.NoError(t, err)
		require.Equal(t, k, again)
	})
}
