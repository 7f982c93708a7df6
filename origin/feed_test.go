package origin

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/proto"
)

// feedConfig is testConfig without RTSP: the origin takes its streams from in-process feeds only.
func feedConfig(t *testing.T) Config {
	t.Helper()
	cfg, _ := testConfig(t)
	cfg.RTSPListener, cfg.UDPRTPConn, cfg.UDPRTCPConn = nil, nil, nil
	cfg.RTSPAddr, cfg.UDPRTPAddr = "-", "-"
	return cfg
}

// feedClip writes the test card's first d of video and audio into f, as fast as it can: the
// segmenter cuts by timestamps, not by the clock.
func feedClip(t *testing.T, f *Feed, clip *testcard.Clip, d time.Duration) {
	t.Helper()
	end := int64(d) * testcard.ClockRate / int64(time.Second)
	a := 0
	for _, v := range clip.Video {
		if v.DTS >= end {
			break
		}
		for ; a < len(clip.Audio) && clip.Audio[a].PTS <= v.DTS; a++ {
			pts := time.Duration(clip.Audio[a].PTS) * time.Second / testcard.ClockRate
			require.NoError(t, f.WriteAAC(pts, [][]byte{clip.Audio[a].AU}))
		}
		require.NoError(t, f.WriteH264(time.Duration(v.PTS)*time.Second/testcard.ClockRate, v.NALUs))
	}
}

func TestFeedPublishesWithoutRTSP(t *testing.T) {
	t.Parallel()
	clip, err := testcard.Load()
	require.NoError(t, err)
	o := startOrigin(t, feedConfig(t))
	require.Nil(t, o.RTSPAddr(), "no RTSP server runs")

	f, err := o.Feed("card", FeedTracks{H264: true, SPS: clip.SPS, PPS: clip.PPS, AAC: clip.AudioConfig})
	require.NoError(t, err)
	_, err = o.Feed("card", FeedTracks{H264: true})
	require.ErrorIs(t, err, ErrStreamBusy, "one publisher per stream, in-process or not")

	feedClip(t, f, clip, min(clip.Duration, 4*time.Second))
	f.Close()
	require.ErrorIs(t, f.WriteH264(0, clip.Video[0].NALUs), ErrNotPublishing)

	code, body := httpGet(t, o.base+"/live/card/index.m3u8")
	require.Equal(t, http.StatusOK, code)
	p := parsePlaylist(t, body)
	require.GreaterOrEqual(t, len(p.segments), 2, "1 s segments from a few seconds of the card")
	require.Contains(t, string(body), "#EXT-X-ENDLIST", "closing the feed ends the stream")
	data, chunks := fetchChunks(t, o, "card", p.segments[0].seq)
	require.True(t, bytes.HasPrefix(data, []byte{0x47}), "MPEG-TS")
	require.Equal(t, proto.ChunkID{Stream: "card", Seq: p.segments[0].seq}, chunks[0].ID)

	si, ok := o.streamInfo(t, "card")
	require.True(t, ok)
	require.False(t, si.Live)
	require.Equal(t, "H264,AAC", strings.Join(si.Codecs, ","))
	require.Positive(t, o.Stats().BytesProduced)
}

func TestFeedRejectsABadName(t *testing.T) {
	t.Parallel()
	o := startOrigin(t, feedConfig(t))
	_, err := o.Feed("../etc", FeedTracks{H264: true})
	require.Error(t, err)
	_, err = o.Feed("silent", FeedTracks{})
	require.Error(t, err, "a feed needs video or audio")
	_, err = o.Feed("silent", FeedTracks{H264: true})
	require.NoError(t, err, "a failed feed leaves the name free")
}
