package demo

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"
)

func decodeMedia(t *testing.T, body []byte) *m3u8.MediaPlaylist {
	t.Helper()
	p, kind, err := m3u8.DecodeFrom(bytes.NewReader(body), true)
	require.NoError(t, err, string(body))
	require.Equal(t, m3u8.MEDIA, kind)
	return p.(*m3u8.MediaPlaylist)
}

// TestPeerServesTheOriginsLLHLSParts: a peer derives the LL-HLS parts from the chunks the mesh
// brought it, so its ll.m3u8 lists the origin's parts (same URIs, durations, independence) and
// serves byte-identical part bodies; a blocking reload at the peer waits for the origin's newest
// part to reach it.
func TestPeerServesTheOriginsLLHLSParts(t *testing.T) {
	d := startDemo(t, 2, 1)
	originBase := "http://" + d.Origin().HTTPAddr().String() + "/live/" + Stream + "/"
	p := d.Peers()[1]
	peerBase := strings.TrimSuffix(p.HLSURL(), "index.m3u8")

	// The origin's LL playlist once it lists parts of two segments.
	var origin *m3u8.MediaPlaylist
	require.Eventually(t, func() bool {
		if _, ok := p.Window().Playlist(); !ok { // the peer has started too
			return false
		}
		body, ok := tryGet(originBase + "ll.m3u8")
		if !ok {
			return false
		}
		origin = decodeMedia(t, body)
		return len(origin.PartialSegments) >= 8
	}, 40*time.Second, 100*time.Millisecond)
	last := origin.PartialSegments[len(origin.PartialSegments)-1].URI
	var msn uint64
	var part int
	_, err := fmt.Sscanf(last, "%d.%d.mp4", &msn, &part)
	require.NoError(t, err)

	// Blocking reload at the peer for the origin's newest part: it answers once the peer has
	// verified every chunk of it.
	body := get(t, fmt.Sprintf("%sll.m3u8?_HLS_msn=%d&_HLS_part=%d", peerBase, msn, part))
	peer := decodeMedia(t, body)

	peerParts := map[string]*m3u8.PartialSegment{}
	for _, ps := range peer.PartialSegments {
		peerParts[ps.URI] = ps
	}
	compared := 0
	for _, ps := range origin.PartialSegments {
		var seq uint64
		var n int
		_, err := fmt.Sscanf(ps.URI, "%d.%d.mp4", &seq, &n)
		require.NoError(t, err)
		if seq < msn-1 {
			continue // may have left the peer's shorter part list
		}
		pp, ok := peerParts[ps.URI]
		require.True(t, ok, "the peer does not list %s:\n%s", ps.URI, body)
		require.Equal(t, ps.Duration, pp.Duration, ps.URI)
		require.Equal(t, ps.Independent, pp.Independent, ps.URI)
		require.True(t, bytes.Equal(get(t, originBase+ps.URI), get(t, peerBase+ps.URI)), "part %s differs between origin and peer", ps.URI)
		compared++
	}
	require.GreaterOrEqual(t, compared, 2)
	require.True(t, bytes.Equal(get(t, originBase+"init.mp4"), get(t, peerBase+"init.mp4")), "init segments differ")
}

func tryGet(url string) ([]byte, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		return nil, false
	}
	return b.Bytes(), true
}
