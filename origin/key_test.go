package origin

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadOrCreateKeyCreatesOnceThenLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "origin.key")
	priv, created, err := LoadOrCreateKey(path)
	require.NoError(t, err)
	require.True(t, created)
	require.Len(t, priv, ed25519.PrivateKeySize)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a private key is readable by its owner only")

	again, created, err := LoadOrCreateKey(path)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, priv, again)

	require.Error(t, WriteKey(path, priv), "an existing key is never overwritten")
}

func TestLoadKeyRejectsOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-key")
	require.NoError(t, os.WriteFile(path, []byte("hello"), 0o600))
	_, _, err := LoadOrCreateKey(path)
	require.ErrorIs(t, err, ErrBadKeyFile)
}

func TestNewChecksConfig(t *testing.T) {
	_, err := New(Config{})
	require.ErrorIs(t, err, ErrNoKey)

	cfg, _ := testConfig(t)
	cfg.UDPRTPConn, cfg.UDPRTCPConn = nil, nil
	cfg.UDPRTPAddr = "127.0.0.1:8001"
	_, err = New(cfg)
	require.ErrorContains(t, err, "must be even")

	cfg, _ = testConfig(t)
	cfg.Pulls = map[string]string{"bad name": "rtsp://127.0.0.1:1/x"}
	_, err = New(cfg)
	require.Error(t, err)
}
