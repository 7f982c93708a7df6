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

// --cores sets the peer's GOMAXPROCS: one by default, what the flag (or CROWDSURF_CORES) says
// when given, and an operator's GOMAXPROCS stands when the flag is not given.
func TestPeerCoresFlagSetsGOMAXPROCSUnlessTheEnvironmentDoes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cores int
		given bool
		env   string
		want  int
		err   bool
	}{
		{name: "default", cores: 1, want: 1},
		{name: "given", cores: 2, given: true, want: 2},
		{name: "zero leaves Go's default", cores: 0, given: true, want: 0},
		{name: "GOMAXPROCS in the environment wins over the default", cores: 1, env: "2", want: 0},
		{name: "the flag wins over GOMAXPROCS", cores: 1, given: true, env: "2", want: 1},
		{name: "negative", cores: -1, given: true, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := peerCores(tc.cores, tc.given, tc.env)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
