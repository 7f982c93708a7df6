package origin

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// checkStream is what every publishing test asserts about the HLS the origin made.
func checkStream(t *testing.T, o *testOrigin, name string, wantVideo, wantAudio bool, minSegments int) playlist {
	t.Helper()
	video, audio := "", ""
	if wantVideo {
		video = "h264"
	}
	if wantAudio {
		audio = "aac"
	}
	return checkStreamCodecs(t, o, name, video, audio, minSegments)
}

// checkStreamCodecs is checkStream for the codecs ffprobe names (video "h264" or "hevc", audio
// "aac" or "opus"; "" for none).
func checkStreamCodecs(t *testing.T, o *testOrigin, name string, video, audio string, minSegments int) playlist {
	t.Helper()
	wantVideo, wantAudio := video != "", audio != ""
	p := o.playlist(t, name)
	require.GreaterOrEqual(t, len(p.segments), minSegments)

	// A real player decodes it without a single warning: within a timeline continuity counters
	// run on across segments (a restart is a "Packet corrupt" warning, issue 11). ffmpeg reads
	// across EXT-X-DISCONTINUITY as one stream, so there restarted timestamps and counters are
	// warnings whoever made the stream: then only errors count.
	level := "warning"
	for _, seg := range p.segments {
		if seg.discontinuity {
			level = "error"
		}
	}
	require.Empty(t, decodeHLS(t, o.base+"/live/"+name+"/index.m3u8", level))

	for i, seg := range p.segments {
		// Date-times come from the wall clock and, within a timeline, advance by the durations.
		require.WithinDuration(t, time.Now(), seg.pdt, time.Minute)
		if i > 0 && !seg.discontinuity {
			prev := p.segments[i-1]
			require.WithinDuration(t, prev.pdt.Add(time.Duration(prev.duration*float64(time.Second))), seg.pdt, 2*time.Millisecond)
		}
		require.Equal(t, strconv.FormatUint(seg.seq, 10)+".ts", seg.uri)
		code, whole := httpGet(t, o.base+"/live/"+name+"/"+seg.uri)
		require.Equal(t, http.StatusOK, code)

		// Chunks fetched one by one verify and add up to the segment, byte for byte.
		data, chunks := fetchChunks(t, o, name, seg.seq)
		require.Equal(t, whole, data, "segment %d", seg.seq)
		last := chunks[len(chunks)-1]
		require.InDelta(t, seg.duration, last.Info.Duration.Seconds(), 0.0005)

		// The playlist's duration matches the media within one frame.
		streams := probeSegment(t, whole)
		var hasVideo, hasAudio bool
		for _, s := range streams {
			switch s.CodecType {
			case "video":
				hasVideo = true
				require.Equal(t, video, s.CodecName)
				frames, err := strconv.Atoi(s.Frames)
				require.NoError(t, err)
				require.InDelta(t, seg.duration, float64(frames)/25, 1.0/25+0.001, "segment %d: %d frames", seg.seq, frames)
			case "audio":
				hasAudio = true
				require.Equal(t, audio, s.CodecName)
				if !wantVideo {
					packets, err := strconv.Atoi(s.Packets)
					require.NoError(t, err)
					rate, err := strconv.Atoi(s.SampleRate)
					require.NoError(t, err)
					frame := 1024 / float64(rate)
					if audio == "opus" {
						frame = 0.020 // libopus's default frame
					}
					require.InDelta(t, seg.duration, float64(packets)*frame, frame+0.001, "segment %d: %d %s frames", seg.seq, packets, audio)
				}
			}
		}
		require.Equal(t, wantVideo, hasVideo, "segment %d video", seg.seq)
		require.Equal(t, wantAudio, hasAudio, "segment %d audio", seg.seq)
	}
	return p
}

func TestPublishTCPMakesCleanHLS(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	cfg.TrackerURL = "http://127.0.0.1:9" // names the watch links; nothing listens there
	events := make(chan StreamInfo, 10)
	cfg.OnStream = func(si StreamInfo) { events <- si }
	o := startOrigin(t, cfg)

	// An in-process subscriber (the mesh root) sees every chunk as it is emitted.
	var mu sync.Mutex
	subscribed := map[uint64][]byte{}
	cancel := o.Subscribe(func(c *proto.Chunk) {
		mu.Lock()
		defer mu.Unlock()
		subscribed[c.ID.Seq] = append(subscribed[c.ID.Seq], c.Data...)
	})
	defer cancel()

	stderr, err := publish(context.Background(), o.rtsp+"/tcpcam", publishOpts{video: true, audio: true, seconds: 4})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "tcpcam")
	p := checkStream(t, o, "tcpcam", true, true, 3)
	for _, seg := range p.segments {
		_, whole := httpGet(t, o.base+"/live/tcpcam/"+seg.uri)
		mu.Lock()
		require.Equal(t, whole, subscribed[seg.seq], "subscriber saw segment %d", seg.seq)
		mu.Unlock()
	}

	si, ok := o.streamInfo(t, "tcpcam")
	require.True(t, ok)
	require.Equal(t, []string{"H264", "AAC"}, si.Codecs)
	require.NotNil(t, si.NewestSeq)
	require.Greater(t, si.BitrateBps, 50_000.0)
	require.True(t, strings.Contains(si.WatchLink, "tcpcam"), si.WatchLink)

	started, ended := <-events, <-events
	require.True(t, started.Live)
	require.Equal(t, "tcpcam", started.Name)
	require.False(t, ended.Live)

	code, body := httpGet(t, o.base+"/stats")
	require.Equal(t, http.StatusOK, code)
	var stats Stats
	require.NoError(t, json.Unmarshal(body, &stats))
	require.Greater(t, stats.BytesProduced, uint64(100_000))
	require.Greater(t, stats.BytesHTTP, uint64(0))
}
