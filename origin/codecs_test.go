package origin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/Eyevinn/hls-m3u8/m3u8"

	"github.com/stretchr/testify/require"
)

// H.265 and Opus publishers make MPEG-TS segments that ffmpeg decodes without a warning, with
// the frame counts their durations say (checkStreamCodecs).
func TestPublishH265AndOpus(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	for _, tc := range []struct {
		name         string
		opts         publishOpts
		video, audio string
		codecs       []string
		master       string // CODECS in master.m3u8
	}{
		// libx265 Main profile, level 2 (320x240 at 25 fps), progressive frames
		{"hevc", publishOpts{video: true, vcodec: "libx265", audio: true, seconds: 3}, "hevc", "aac", []string{"H265", "AAC"}, "hvc1.1.6.L60.90,mp4a.40.2"},
		{"opus", publishOpts{video: true, audio: true, acodec: "libopus", seconds: 3}, "h264", "opus", []string{"H264", "Opus"}, "avc1.42c00d,opus"},
		{"hevcopus", publishOpts{video: true, vcodec: "libx265", audio: true, acodec: "libopus", seconds: 3}, "hevc", "opus", []string{"H265", "Opus"}, "hvc1.1.6.L60.90,opus"},
		{"opusradio", publishOpts{audio: true, acodec: "libopus", seconds: 3}, "", "opus", []string{"Opus"}, "opus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, _ := testConfig(t)
			o := startOrigin(t, cfg)
			stderr, err := publish(context.Background(), o.rtsp+"/"+tc.name, tc.opts)
			require.NoError(t, err, stderr)
			o.waitIdle(t, tc.name)
			checkStreamCodecs(t, o, tc.name, tc.video, tc.audio, 2)
			si, _ := o.streamInfo(t, tc.name)
			require.Equal(t, tc.codecs, si.Codecs)
			checkLLCodecs(t, o, tc.name, tc.video, tc.audio, tc.master)
		})
	}
}

// checkLLCodecs checks the fMP4 variant of a finished stream: init.mp4 with each part of a whole
// segment decodes cleanly with ffprobe, with the codecs and frame counts of the TS segment, and
// master.m3u8 names the right CODECS (and, for H.265 or Opus, ll.m3u8 alone).
func checkLLCodecs(t *testing.T, o *testOrigin, name, video, audio, codecs string) {
	t.Helper()
	_, body := httpGetOK(t, o.base+"/live/"+name+"/ll.m3u8")
	final := decodeMedia(t, body)
	require.True(t, final.Closed)
	segs := final.GetAllSegments()
	require.GreaterOrEqual(t, len(segs), 2, "%s", body)
	seg := segs[len(segs)-2] // a whole one: the publisher cut the last short
	segSeq, err := strconv.ParseUint(strings.TrimSuffix(seg.URI, ".mp4"), 10, 64)
	require.NoError(t, err)
	var parts []*m3u8.PartialSegment
	for _, p := range final.PartialSegments {
		if s, _ := parsePartURI(t, p.URI); s == segSeq {
			parts = append(parts, p)
		}
	}
	require.GreaterOrEqual(t, len(parts), 4, "%s", body)

	dir := t.TempDir()
	_, init := httpGetOK(t, o.base+"/live/"+name+"/init.mp4")
	whole := append([]byte(nil), init...)
	for i, p := range parts {
		_, part := httpGetOK(t, o.base+"/live/"+name+"/"+p.URI)
		whole = append(whole, part...)
		file := filepath.Join(dir, p.URI)
		require.NoError(t, os.WriteFile(file, append(append([]byte(nil), init...), part...), 0o644))
		if video == "" {
			probeFile(t, file) // audio-only: every part decodes on its own
			require.True(t, p.Independent)
			continue
		}
		// The segment's first part opens on a keyframe and decodes alone; the others start
		// on a frame that is not one (decoded alone, they miss their references).
		require.Equal(t, i == 0, p.Independent, p.URI)
		packets := probeVideo(t, file, "packet=flags")
		require.NotEmpty(t, packets, p.URI)
		require.Equal(t, p.Independent, strings.HasPrefix(packets[0], "K"), "%s: first packet %s", p.URI, packets[0])
		if p.Independent {
			probeFile(t, file)
		}
	}
	file := filepath.Join(dir, "whole.mp4")
	require.NoError(t, os.WriteFile(file, whole, 0o644))
	byType := map[string]probeStream{}
	for _, s := range probeFile(t, file) {
		byType[s.CodecType] = s
	}
	if video != "" {
		require.Equal(t, video, byType["video"].CodecName)
		require.Equal(t, "25", byType["video"].Frames, "1 s of 25 fps video")
	}
	require.Equal(t, audio, byType["audio"].CodecName)
	frames, err := strconv.Atoi(byType["audio"].Frames)
	require.NoError(t, err)
	frame := 0.020 // libopus
	if audio == "aac" {
		rate, err := strconv.Atoi(byType["audio"].SampleRate)
		require.NoError(t, err)
		frame = 1024 / float64(rate)
	}
	require.InDelta(t, 1.0, float64(frames)*frame, 0.1, "about a second of audio: %d frames", frames)

	_, master := httpGetOK(t, o.base+"/live/"+name+"/master.m3u8")
	require.Contains(t, string(master), fmt.Sprintf("CODECS=%q\nll.m3u8", codecs), "%s", master)
	if video == "hevc" || audio == "opus" {
		require.NotContains(t, string(master), "index.m3u8", "hls.js and Safari do not demux H.265 or Opus in MPEG-TS")
	}
	// ffmpeg (as VLC and ffplay) plays ll.m3u8 as plain HLS without an error.
	require.Empty(t, decodeHLS(t, o.base+"/live/"+name+"/ll.m3u8", "error"))
}

// A publisher of a codec the origin cannot mux hears 415 and the operator's log names the codec
// and what to send instead.
func TestUnsupportedCodecNamesWhatIsSupported(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	for _, tc := range []struct {
		stream, vcodec, named string
		extra                 []string
	}{
		{"vp8", "libvpx", "VP8", nil},
		{"mjpeg", "mjpeg", "M-JPEG", []string{"-pix_fmt", "yuvj420p"}},
	} {
		t.Run(tc.stream, func(t *testing.T) {
			t.Parallel()
			cfg, logs := testConfig(t)
			o := startOrigin(t, cfg)
			stderr, err := publish(context.Background(), o.rtsp+"/"+tc.stream,
				publishOpts{video: true, vcodec: tc.vcodec, seconds: 1, extra: tc.extra})
			require.Error(t, err)
			// ffmpeg shows the status line, which carries the reason.
			require.Contains(t, stderr, "415 Unsupported Media Type: unsupported codec "+tc.named+": "+supportedCodecs, stderr)
			require.Contains(t, logs.String(), "unsupported codec "+tc.named+": "+supportedCodecs)
			_, listed := o.streamInfo(t, tc.stream)
			require.False(t, listed)
		})
	}
}
