package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestOriginKeyFlagTakesTheKeyOrAFileHoldingIt(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	text := proto.FormatPublicKey(pub)
	file := filepath.Join(t.TempDir(), "origin.key.pub")
	require.NoError(t, os.WriteFile(file, []byte(text+"\n"), 0o644))

	got, err := readOriginKey(text)
	require.NoError(t, err)
	require.Equal(t, []byte(pub), got)

	got, err = readOriginKey("@" + file)
	require.NoError(t, err, "the key file ends with a newline, as the origin writes it")
	require.Equal(t, []byte(pub), got)

	_, err = readOriginKey("@" + filepath.Join(t.TempDir(), "missing.pub"))
	require.ErrorIs(t, err, os.ErrNotExist)

	bad := filepath.Join(t.TempDir(), "bad.pub")
	require.NoError(t, os.WriteFile(bad, []byte("not a key\n"), 0o644))
	_, err = readOriginKey("@" + bad)
	require.Error(t, err)
}
