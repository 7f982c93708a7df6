package proto_test

import (
	"encoding/hex"
	"strings"
)

// unhex reads hex written for people: spaces, newlines and | separators between fields are
// ignored. A typo in a table is a bug in the test, so it panics.
func unhex(s string) []byte {
	s = strings.NewReplacer(" ", "", "\n", "", "\t", "", "|", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// rep repeats a hex byte n times, for hashes and signatures whose content does not matter.
func rep(byteHex string, n int) string { return strings.Repeat(byteHex, n) }
