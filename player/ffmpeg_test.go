package player

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// ffmpegHLS encodes seconds of test pattern and tone as HLS (H.264 with B-frames, AAC) into a
// new directory and returns it. ffmpeg is part of the test toolchain (make test installs it).
func ffmpegHLS(t *testing.T, seconds string) string {
	t.Helper()
	bin, err := exec.LookPath("ffmpeg")
	require.NoError(t, err, "ffmpeg is needed for this test: install it (apt-get install ffmpeg) or run make test")
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", seconds,
		"-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "25",
		"-c:a", "aac",
		"-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
		"-hls_segment_filename", filepath.Join(dir, "seg%03d.ts"),
		filepath.Join(dir, "index.m3u8"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "ffmpeg: %s", out)
	return dir
}

// ffmpegFMP4HLS is ffmpegHLS with fMP4 segments (CMAF: an init segment, then moof+mdat).
func ffmpegFMP4HLS(t *testing.T, seconds string) string {
	t.Helper()
	bin, err := exec.LookPath("ffmpeg")
	require.NoError(t, err, "ffmpeg is needed for this test: install it (apt-get install ffmpeg) or run make test")
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", seconds,
		"-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "25",
		"-c:a", "aac",
		"-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
		"-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
		"-hls_segment_filename", filepath.Join(dir, "seg%03d.m4s"),
		filepath.Join(dir, "index.m3u8"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "ffmpeg: %s", out)
	return dir
}

// A real encoder's fMP4 (B-frames, so composition offsets; an audio track beside the video)
// passes the fMP4 checks: they are no stricter than a real player.
func TestRealEncoderFMP4PlaysWithoutErrors(t *testing.T) {
	t.Parallel()
	dir := ffmpegFMP4HLS(t, "3")
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	segs, err := filepath.Glob(filepath.Join(dir, "seg*.m4s"))
	require.NoError(t, err)
	require.NotEmpty(t, segs)

	p, err := New(Config{URL: srv.URL + "/index.m3u8"})
	require.NoError(t, err)
	require.NoError(t, p.Run(t.Context()))
	sum := p.Summary()
	require.Equal(t, ModeHLS, sum.Mode)
	require.Zero(t, sum.Errors, sum.ErrorMessages)
	require.Equal(t, len(segs), sum.Segments)

	// The same checks catch a broken segment in it.
	c := newFMP4Checker()
	init, err := os.ReadFile(filepath.Join(dir, "init.mp4"))
	require.NoError(t, err)
	require.NoError(t, c.setInit(init))
	seg, err := os.ReadFile(segs[0])
	require.NoError(t, err)
	require.NoError(t, c.check(seg, true))
	require.ErrorIs(t, c.check(seg[:len(seg)/2], false), ErrFMP4Parse)
}

func TestRealEncoderOutputPlaysWithoutErrors(t *testing.T) {
	t.Parallel()
	dir := ffmpegHLS(t, "3")
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)

	segs, err := filepath.Glob(filepath.Join(dir, "seg*.ts"))
	require.NoError(t, err)
	require.NotEmpty(t, segs)
	var size int64
	for _, s := range segs {
		fi, err := os.Stat(s)
		require.NoError(t, err)
		size += fi.Size()
	}

	p, err := New(Config{URL: srv.URL + "/index.m3u8"})
	require.NoError(t, err)
	require.NoError(t, p.Run(t.Context())) // a VOD playlist: returns once played out
	sum := p.Summary()
	require.Zero(t, sum.Errors, sum.ErrorMessages)
	require.Equal(t, len(segs), sum.Segments)
	require.Equal(t, size, sum.Bytes)
	require.Zero(t, sum.Stalls)
	require.Zero(t, sum.LiveLatencyMs.Samples, "no EXT-X-PROGRAM-DATE-TIME, no latency")
}

func TestTwoEncoderRunsBackToBackGoBackInTime(t *testing.T) {
	t.Parallel()
	// Two separate encoder runs both start their clock at the same value, like a publisher that
	// reconnects: the second run's first segment goes back in time.
	first, second := ffmpegHLS(t, "2"), ffmpegHLS(t, "2")
	read := func(dir, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		return b
	}
	c := newTSChecker()
	require.NoError(t, c.check(read(first, "seg000.ts")))
	require.NoError(t, c.check(read(first, "seg001.ts")))
	require.ErrorIs(t, c.check(read(second, "seg000.ts")), ErrTimestampBack)

	// After an EXT-X-DISCONTINUITY the player resets the checker, and the same bytes are fine.
	c.reset()
	require.NoError(t, c.check(read(second, "seg000.ts")))
	require.NoError(t, c.check(read(second, "seg001.ts")))
}
