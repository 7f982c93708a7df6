package peer

import (
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/segwindow"
)

// TestDefaultWindowKeepsAFullPlaylistWhileASegmentCompletes pins why a viewer holds two
// segments beyond its playlist: the newest seq is usually the segment still arriving, and while
// a segment still completes after the next one began, a window of playlist + 1 listed only three
// segments, which is less than RFC 8216 allows as soon as one is shorter than the target. With
// the default it lists the full playlist then, and in between it still holds the segment that
// just left the playlist for a player that fetches it late.
func TestDefaultWindowKeepsAFullPlaylistWhileASegmentCompletes(t *testing.T) {
	key := testIdentity(t)
	cfg := testConfig(t, key.Public().(ed25519.PublicKey))
	cfg.PlaylistLength, cfg.Keep = 0, 0
	cfg, err := cfg.withDefaults()
	require.NoError(t, err)
	require.Equal(t, DefaultPlaylistLength, cfg.PlaylistLength)
	require.Equal(t, DefaultKeep, cfg.Keep)

	w := segwindow.New(segwindow.Config{Stream: testStream, PlaylistLength: cfg.PlaylistLength, Keep: cfg.Keep, TargetDuration: testSegDur})
	o := &testOrigin{t: t, key: key}
	addSegment := func(seq uint64, chunks int) {
		for i := range chunks {
			w.AddChunk(o.chunk(seq, i))
		}
	}
	listed := func() (count int, firstSeq string) {
		pl, ok := w.Playlist()
		require.True(t, ok)
		for line := range strings.Lines(string(pl)) {
			if strings.HasPrefix(line, "#EXTINF") {
				count++
			}
			if v, ok := strings.CutPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"); ok {
				firstSeq = strings.TrimSpace(v)
			}
		}
		return count, firstSeq
	}

	for seq := uint64(10); seq < 20; seq++ {
		addSegment(seq, testChunks)
	}
	addSegment(20, 1) // the next segment begins
	n, first := listed()
	require.Equal(t, 4, n)
	require.Equal(t, "16", first)
	_, held := w.State(15)
	require.True(t, held, "the segment that just left the playlist is still served")

	addSegment(20, testChunks-1) // all of 20 but its last chunk
	addSegment(21, 1)            // 21 begins before 20 completes
	n, first = listed()
	require.Equal(t, 4, n, "the playlist stays whole while segment 20 completes")
	require.Equal(t, "16", first)
	_, held = w.State(15)
	require.False(t, held, "the window holds DefaultKeep segments and no more")
}
