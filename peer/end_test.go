package peer

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// playFlagged emits segments from..to-1 live like testOrigin.play, re-signing each chunk with
// extra flags: FlagDiscontinuity on every chunk of disc, FlagEnd on the last chunk of end.
func (o *testOrigin) playFlagged(from, to, disc, end uint64) {
	for seq := from; seq < to; seq++ {
		for i := range testChunks {
			c := o.chunk(seq, i)
			if seq == disc {
				c.Flags |= proto.FlagDiscontinuity
			}
			if seq == end && c.Last() {
				c.Flags |= proto.FlagEnd
			}
			c.Sign(o.key)
			o.emit(c)
			time.Sleep(testChunkEvery)
		}
	}
}

// TestPeerPlaylistEndsOnlyOnTheSignedEnd: a neighbour that claims the end of the stream with a
// forged flag is rejected and banned, and nothing ends; the origin's signed end ends the peer's
// playlist; a new session after it resumes the playlist with a discontinuity.
func TestPeerPlaylistEndsOnlyOnTheSignedEnd(t *testing.T) {
	o := newTestOrigin(t, 2)
	forged := o.chunk(1, testChunks-1) // signed without the end flag ...
	forged.Flags |= proto.FlagEnd      // ... which a hostile neighbour adds
	hostile := startHostilePeer(t, forged.Append(nil))

	cfg := o.peerConfig(t, o.root.Addr().String(), hostile.addr)
	viewer := startNode(t, cfg)
	require.Eventually(t, func() bool { return viewer.Stats().ChunksRejected == 1 }, 10*time.Second, 20*time.Millisecond,
		"%+v", viewer.Stats())

	o.playFlagged(0, 4, 0, 3)
	ended := func() (bool, string) {
		code, body := httpGetBody(t, viewer.HLSURL())
		return code == 200 && strings.HasSuffix(body, "3.ts\n#EXT-X-ENDLIST\n"), body
	}
	require.Eventually(t, func() bool { ok, _ := ended(); return ok }, 10*time.Second, 20*time.Millisecond,
		"the signed end ends the peer's playlist: %+v", viewer.Stats())
	_, body := ended()
	require.Equal(t, 1, strings.Count(body, "ENDLIST"))
	require.True(t, viewer.Window().Ended())
	_, meta, ok := viewer.Window().Segment(1)
	require.True(t, ok)
	require.False(t, meta.End, "segment 1 is the origin's, without the forged end")

	// The publisher comes back: the next seq, a new timeline.
	o.playFlagged(4, 6, 4, 99)
	require.Eventually(t, func() bool {
		code, body := httpGetBody(t, viewer.HLSURL())
		return code == 200 && strings.Contains(body, "5.ts\n") && !strings.Contains(body, "ENDLIST")
	}, 10*time.Second, 20*time.Millisecond)
	_, body = httpGetBody(t, viewer.HLSURL())
	require.Contains(t, body, "3.ts\n#EXT-X-DISCONTINUITY\n", "the new session starts after a discontinuity")
	require.Contains(t, body, fmt.Sprintf("#EXTINF:%.3f,\n4.ts\n", testSegDur.Seconds()))
	require.False(t, viewer.Window().Ended())
	require.Equal(t, int64(1), viewer.Stats().ChunksRejected)
}

// TestEndedStreamIsPolledRarely: after the signed end the mesh is silent by nature; a waiting
// viewer asks the origin for a new session every endedPollEvery, not four times a segment.
func TestEndedStreamIsPolledRarely(t *testing.T) {
	o := newTestOrigin(t, 2)
	var polls atomic.Int32
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".m3u8") {
			polls.Add(1)
		}
		o.http.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)
	cfg := o.peerConfig(t, o.root.Addr().String())
	cfg.OriginHTTP = counting.URL
	viewer := startNode(t, cfg)
	o.playFlagged(0, 4, 0, 3)
	require.Eventually(t, viewer.Window().Ended, 5*time.Second, 20*time.Millisecond)
	time.Sleep(time.Second) // the mesh falls silent
	before := polls.Load()
	time.Sleep(3 * time.Second)
	// At a 500 ms segment the poller would ask 4 times a segment: 24 times in 3 s.
	require.LessOrEqual(t, polls.Load()-before, int32(1), "an ended stream's playlist is polled every %v", endedPollEvery)
}
