package origin

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestPublishUDPMakesCleanHLS(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)
	stderr, err := publish(context.Background(), o.rtsp+"/udpcam", publishOpts{video: true, audio: true, transport: "udp", seconds: 4})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "udpcam")
	checkStream(t, o, "udpcam", true, true, 3)
}

func TestPublishVideoOnly(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)
	stderr, err := publish(context.Background(), o.rtsp+"/video", publishOpts{video: true, seconds: 3})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "video")
	checkStream(t, o, "video", true, false, 2)
	si, _ := o.streamInfo(t, "video")
	require.Equal(t, []string{"H264"}, si.Codecs)
}

func TestPublishAudioOnly(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)
	stderr, err := publish(context.Background(), o.rtsp+"/radio", publishOpts{audio: true, seconds: 3})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "radio")
	checkStream(t, o, "radio", false, true, 2)
	si, _ := o.streamInfo(t, "radio")
	require.Equal(t, []string{"AAC"}, si.Codecs)
}

func TestWrongPublishKeyIsRejected(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, logs := testConfig(t)
	cfg.PublishKey = "s3cret"
	o := startOrigin(t, cfg)
	u, err := url.Parse(o.rtsp)
	require.NoError(t, err)

	for _, creds := range []string{"", "anyone:wrong@"} {
		target := "rtsp://" + creds + u.Host + "/locked"
		stderr, err := publish(context.Background(), target, publishOpts{video: true, seconds: 1})
		require.Error(t, err, "publishing with %q must fail", creds)
		require.Contains(t, stderr, "401", stderr)
	}
	_, listed := o.streamInfo(t, "locked")
	require.False(t, listed, "a rejected publisher never creates the stream")
	code, _ := httpGet(t, o.base+"/live/locked/index.m3u8")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, logs.String(), "wrong publish key")

	// Any user name with the right key gets in.
	stderr, err := publish(context.Background(), "rtsp://whoever:s3cret@"+u.Host+"/locked", publishOpts{video: true, seconds: 2})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "locked")
	o.waitSegments(t, "locked", 1)
}

func TestUnsupportedCodecIsRejectedClearly(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, logs := testConfig(t)
	o := startOrigin(t, cfg)
	stderr, err := publish(context.Background(), o.rtsp+"/mpeg4", publishOpts{video: true, vcodec: "mpeg4", seconds: 1})
	require.Error(t, err)
	require.Contains(t, stderr, "415", stderr)
	require.Contains(t, logs.String(), "MPEG-4 Video", "the log names the codec")
	_, listed := o.streamInfo(t, "mpeg4")
	require.False(t, listed)
}

func TestPublisherReconnectContinuesAfterDiscontinuity(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)

	stderr, err := publish(context.Background(), o.rtsp+"/again", publishOpts{video: true, audio: true, seconds: 2.5})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "again")
	first := o.playlist(t, "again")
	require.NotEmpty(t, first.segments)
	firstNext := first.segments[len(first.segments)-1].seq + 1

	stderr, err = publish(context.Background(), o.rtsp+"/again", publishOpts{video: true, audio: true, seconds: 2.5})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "again")

	p := checkStream(t, o, "again", true, true, 4)
	discontinuities := 0
	for i, seg := range p.segments {
		if i > 0 {
			require.Equal(t, p.segments[i-1].seq+1, seg.seq, "sequence numbers never repeat or go back")
		}
		_, chunks := fetchChunks(t, o, "again", seg.seq)
		for _, c := range chunks {
			require.Equal(t, seg.discontinuity, c.Flags&proto.FlagDiscontinuity != 0, "chunk flags match the playlist")
		}
		if seg.discontinuity {
			discontinuities++
			require.Equal(t, firstNext, seg.seq, "the second session starts right after the first")
		}
	}
	require.Equal(t, 1, discontinuities)
}

func TestSecondPublisherIsRejected(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)

	firstDone := make(chan error, 1)
	go func() {
		_, err := publish(context.Background(), o.rtsp+"/busy", publishOpts{video: true, seconds: 4})
		firstDone <- err
	}()
	require.Eventually(t, func() bool {
		si, ok := o.streamInfo(t, "busy")
		return ok && si.Live
	}, 10*time.Second, 50*time.Millisecond)

	stderr, err := publish(context.Background(), o.rtsp+"/busy", publishOpts{video: true, seconds: 1})
	require.Error(t, err)
	require.True(t, strings.Contains(stderr, "403") || strings.Contains(stderr, "already being published"), stderr)

	require.NoError(t, <-firstDone, "the first publisher is untouched")
	o.waitIdle(t, "busy")
	p := o.playlist(t, "busy")
	require.GreaterOrEqual(t, len(p.segments), 3)
	for _, seg := range p.segments {
		require.False(t, seg.discontinuity)
	}
}

// TestPublishAACAsLATM covers MP4A-LATM packetization (GStreamer's rtpmp4apay; ffmpeg with
// -rtpflags latm): the origin unpacks it into ADTS AAC that HLS players understand.
func TestPublishAACAsLATM(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, logs := testConfig(t)
	o := startOrigin(t, cfg)
	stderr, err := publish(context.Background(), o.rtsp+"/latm", publishOpts{video: true, audio: true, seconds: 3, extra: []string{"-rtpflags", "latm"}})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "latm")
	checkStream(t, o, "latm", true, true, 2)
	require.Contains(t, logs.String(), "MP4A-LATM", "ffmpeg really sent LATM")
}

func TestPublishH264WithBFrames(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)
	stderr, err := publish(context.Background(), o.rtsp+"/bframes", publishOpts{video: true, audio: true, vcodec: "libx264-bframes", seconds: 3})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "bframes")
	checkStream(t, o, "bframes", true, true, 2)
}
