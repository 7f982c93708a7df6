package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func testFlagSet() (*flag.FlagSet, *string, *int, *logFlags) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	key := fs.String("publish-key", "", "")
	peers := fs.Int("peers", 20, "")
	logs := addLogFlags(fs, "info", "v", "debug")
	return fs, key, peers, logs
}

func TestEveryFlagReadsCrowdsurfFlagFromTheEnvironmentAndTheCommandLineWins(t *testing.T) {
	t.Setenv("CROWDSURF_PUBLISH_KEY", "from-env")
	t.Setenv("CROWDSURF_PEERS", "7")
	t.Setenv("CROWDSURF_LOG_LEVEL", "warn")

	fs, key, peers, logs := testFlagSet()
	require.NoError(t, parseFlags(fs, []string{"--peers", "3"}, nil))
	require.Equal(t, "from-env", *key, "CROWDSURF_PUBLISH_KEY sets --publish-key")
	require.Equal(t, 3, *peers, "the flag wins over CROWDSURF_PEERS")
	logger, err := logs.logger(io.Discard)
	require.NoError(t, err)
	require.True(t, logger.Enabled(context.Background(), slog.LevelWarn))
	require.False(t, logger.Enabled(context.Background(), slog.LevelInfo), "CROWDSURF_LOG_LEVEL=warn")
}

func TestOldEnvironmentNamesStillWorkButTheNewOneWins(t *testing.T) {
	old := map[string]string{"publish-key": "CROWDSURF_OLD_KEY"}
	t.Setenv("CROWDSURF_OLD_KEY", "old")
	fs, key, _, _ := testFlagSet()
	require.NoError(t, parseFlags(fs, nil, old))
	require.Equal(t, "old", *key)

	t.Setenv("CROWDSURF_PUBLISH_KEY", "new")
	fs, key, _, _ = testFlagSet()
	require.NoError(t, parseFlags(fs, nil, old))
	require.Equal(t, "new", *key)
}

func TestABadEnvironmentValueNamesTheVariableAndTheFlag(t *testing.T) {
	t.Setenv("CROWDSURF_PEERS", "many")
	fs, _, _, _ := testFlagSet()
	err := parseFlags(fs, nil, nil)
	require.ErrorContains(t, err, `CROWDSURF_PEERS="many" (for --peers)`)
}

func TestDeprecatedVFlagMeansLogLevelDebugAndTakesNoEnvironment(t *testing.T) {
	t.Setenv("CROWDSURF_V", "true")
	fs, _, _, logs := testFlagSet()
	require.NoError(t, parseFlags(fs, nil, nil))
	logger, err := logs.logger(io.Discard)
	require.NoError(t, err)
	require.False(t, logger.Enabled(context.Background(), slog.LevelDebug), "CROWDSURF_V is not a variable")

	fs, _, _, logs = testFlagSet()
	require.NoError(t, parseFlags(fs, []string{"-v"}, nil))
	logger, err = logs.logger(io.Discard)
	require.NoError(t, err)
	require.True(t, logger.Enabled(context.Background(), slog.LevelDebug))
}

func TestUnknownLogLevelIsRefusedWithTheChoices(t *testing.T) {
	fs, _, _, logs := testFlagSet()
	require.NoError(t, parseFlags(fs, []string{"--log-level", "loud"}, nil))
	_, err := logs.logger(io.Discard)
	require.ErrorContains(t, err, "use debug, info, warn or error")
}

func TestLoadtestRefusesZeroViewersDurationAndBitrate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--peers", "0"}, "--peers"},
		{[]string{"--peers", "-3"}, "--peers"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--bitrate", "0"}, "--bitrate"},
		{[]string{"--segment", "0s"}, "--segment"},
		{[]string{"--seed-copies", "0"}, "--seed-copies"},
	} {
		err := runLoadtest(t.Context(), tc.args)
		require.ErrorIs(t, err, errBadLoadtestFlag, "%v", tc.args)
		require.True(t, strings.HasPrefix(err.Error(), tc.flag), "%v: %v", tc.args, err)
	}
	t.Setenv("CROWDSURF_PEERS", "0")
	require.ErrorIs(t, runLoadtest(t.Context(), nil), errBadLoadtestFlag, "the environment is checked like the flag")
}

func TestKeygenTakesItsOutputFileFromTheEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "origin.key")
	t.Setenv("CROWDSURF_OUT", out)
	stdout := os.Stdout
	devnull, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer devnull.Close()
	os.Stdout = devnull
	err = runKeygen(t.Context(), nil)
	os.Stdout = stdout
	require.NoError(t, err)
	require.FileExists(t, out)
}

// A port in use: the error names the flag and its variable, and no key file is left behind.
func TestOriginWithATakenPortNamesTheFlagAndWritesNoKey(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	keyFile := filepath.Join(t.TempDir(), "origin.key")
	err = runOrigin(t.Context(), []string{
		"--key", keyFile, "--http", taken.Addr().String(), "--rtsp", "127.0.0.1:0", "--mesh", "-", "--udp", "-",
	})
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "--http "+taken.Addr().String()), err.Error())
	require.Contains(t, err.Error(), "pick another with --http or CROWDSURF_HTTP")
	require.NotContains(t, err.Error(), "origin:")
	require.NoFileExists(t, keyFile)
	require.NoFileExists(t, keyFile+".pub")
}

func TestOriginWritesANewKeyOnceItsPortsAreOpen(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "origin.key")
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the origin stops as soon as it has started
	err := runOrigin(ctx, []string{
		"--key", keyFile, "--http", "127.0.0.1:0", "--rtsp", "127.0.0.1:0", "--mesh", "-", "--udp", "-", "--log-level", "error",
	})
	require.ErrorIs(t, err, context.Canceled)
	require.FileExists(t, keyFile)
	require.FileExists(t, keyFile+".pub")
}

func TestDemoRefusesZeroPeersInsteadOfRunningThree(t *testing.T) {
	err := runDemo(t.Context(), []string{"--peers", "0"})
	require.ErrorContains(t, err, "--peers 0: the demo runs at least one peer")
}
