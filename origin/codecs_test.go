package origin

import (
	"context"
	"testing"

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
	}{
		{"hevc", publishOpts{video: true, vcodec: "libx265", audio: true, seconds: 3}, "hevc", "aac", []string{"H265", "AAC"}},
		{"opus", publishOpts{video: true, audio: true, acodec: "libopus", seconds: 3}, "h264", "opus", []string{"H264", "Opus"}},
		{"hevcopus", publishOpts{video: true, vcodec: "libx265", audio: true, acodec: "libopus", seconds: 3}, "hevc", "opus", []string{"H265", "Opus"}},
		{"opusradio", publishOpts{audio: true, acodec: "libopus", seconds: 3}, "", "opus", []string{"Opus"}},
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
		})
	}
}
