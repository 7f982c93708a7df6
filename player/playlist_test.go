package player

import (
	"net/url"
	"testing"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"
)

// FuzzMediaPlaylist decodes arbitrary playlists (from whatever server the play command is
// pointed at) the way loadPlaylist does: no panic (testdata has one hls-m3u8 panicked on), and the segments the player keeps are
// numbered one after another, each found again by its number, and a live start is one of them.
func FuzzMediaPlaylist(f *testing.F) {
	f.Add([]byte("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:41\n#EXT-X-TARGETDURATION:2\n" +
		"#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:20.000Z\n#EXTINF:2.000,\n41.ts\n#EXTINF:2.000,\n42.ts\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-DISCONTINUITY-SEQUENCE:3\n#EXT-X-DISCONTINUITY\n" +
		"#EXTINF:3.9,\nhttp://cdn.example/a/7.ts?x=1\n#EXT-X-ENDLIST\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2,\n0.m4s\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:2,\n1.ts\n"))
	base, err := url.Parse("http://127.0.0.1:8090/live/cam/index.m3u8")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, b []byte) {
		pl, listType, err := decodePlaylist(b)
		if err != nil || listType != m3u8.MEDIA {
			return
		}
		mp, err := toMediaPlaylist(pl.(*m3u8.MediaPlaylist), parseLLTags(b), base, nil)
		if err != nil {
			return
		}
		require.Positive(t, mp.targetDuration)
		for i, s := range mp.segments {
			require.NotNil(t, s.url)
			if i > 0 {
				require.Equal(t, mp.segments[i-1].seq+1, s.seq, "segment %d", i)
			}
			j, ok := mp.find(s.seq)
			require.True(t, ok, "segment %d", i)
			require.Equal(t, i, j)
		}
		if len(mp.segments) > 0 {
			require.Less(t, mp.liveStart(), len(mp.segments))
			require.GreaterOrEqual(t, mp.liveStart(), 0)
		}
	})
}
