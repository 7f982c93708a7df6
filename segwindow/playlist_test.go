package segwindow

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"
)

type playlistCase struct {
	name           string
	length, keep   int
	build          func(t *testing.T, w *Window)
	want           string // "" means no playlist yet
	wantTargetSecs int
}

func completeRange(from, to uint64) func(t *testing.T, w *Window) {
	return func(t *testing.T, w *Window) {
		for seq := from; seq <= to; seq++ {
			addAll(t, w, spec(seq))
		}
	}
}

var playlistCases = []playlistCase{
	{
		name: "no complete segment yet", length: 3, keep: 5,
		build: func(t *testing.T, w *Window) {
			w.AddChunk(spec(4).chunks()[0])
		},
		want: "",
	},
	{
		name: "three complete segments", length: 6, keep: 10,
		build: completeRange(10, 12),
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-TARGETDURATION:2
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:20.000Z
#EXTINF:2.000,
10.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:22.000Z
#EXTINF:2.000,
11.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:24.000Z
#EXTINF:2.000,
12.ts
`,
	},
	{
		name: "only the newest PlaylistLength are listed", length: 2, keep: 4,
		build: completeRange(0, 5),
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:4
#EXT-X-TARGETDURATION:2
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:08.000Z
#EXTINF:2.000,
4.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:10.000Z
#EXTINF:2.000,
5.ts
`,
	},
	{
		name: "discontinuity sequence counts evicted discontinuities", length: 2, keep: 3,
		build: func(t *testing.T, w *Window) {
			for seq := uint64(0); seq <= 7; seq++ {
				s := spec(seq)
				s.disc = seq == 2 || seq == 4 || seq == 7
				addAll(t, w, s)
			}
		},
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:6
#EXT-X-TARGETDURATION:2
#EXT-X-DISCONTINUITY-SEQUENCE:2
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:12.000Z
#EXTINF:2.000,
6.ts
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:14.000Z
#EXTINF:2.000,
7.ts
`,
	},
	{
		name: "listing stops at an incomplete segment", length: 6, keep: 10,
		build: func(t *testing.T, w *Window) {
			addAll(t, w, spec(10))
			addAll(t, w, spec(11))
			cs := spec(12).chunks()
			w.AddChunk(cs[0])
			w.AddChunk(cs[2])
			addAll(t, w, spec(13))
		},
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-TARGETDURATION:2
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:20.000Z
#EXTINF:2.000,
10.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:22.000Z
#EXTINF:2.000,
11.ts
`,
	},
	{
		name: "listing stops at a seq never seen between held ones", length: 6, keep: 10,
		build: func(t *testing.T, w *Window) {
			addAll(t, w, spec(10))
			addAll(t, w, spec(12))
		},
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-TARGETDURATION:2
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:20.000Z
#EXTINF:2.000,
10.ts
`,
	},
	{
		name: "incomplete and missing segments before the first complete one do not matter", length: 6, keep: 10,
		build: func(t *testing.T, w *Window) {
			w.AddChunk(spec(20).chunks()[1])
			addAll(t, w, spec(21))
			addAll(t, w, spec(22))
		},
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:21
#EXT-X-TARGETDURATION:2
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:42.000Z
#EXTINF:2.000,
21.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:44.000Z
#EXTINF:2.000,
22.ts
`,
	},
	{
		name: "abandoned segment restarts the list after it with a discontinuity", length: 6, keep: 10,
		build: func(t *testing.T, w *Window) {
			addAll(t, w, spec(10))
			addAll(t, w, spec(11))
			w.AddChunk(spec(12).chunks()[0])
			addAll(t, w, spec(13))
			addAll(t, w, spec(14))
			w.Abandon(12)
		},
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:13
#EXT-X-TARGETDURATION:2
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:26.000Z
#EXTINF:2.000,
13.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:28.000Z
#EXTINF:2.000,
14.ts
`,
	},
	{
		name: "abandoned hole never seen, nothing complete after it yet", length: 6, keep: 10,
		build: func(t *testing.T, w *Window) {
			addAll(t, w, spec(10))
			w.AddChunk(spec(12).chunks()[0])
			w.Abandon(11)
		},
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-TARGETDURATION:2
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:20.000Z
#EXTINF:2.000,
10.ts
`,
	},
	{
		name: "long segment raises the target duration; EXTINF has three decimals", length: 6, keep: 10,
		build: func(t *testing.T, w *Window) {
			addAll(t, w, spec(1))
			s := spec(2)
			s.duration = 2500400 * time.Microsecond
			addAll(t, w, s)
		},
		want: `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-TARGETDURATION:3
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:02.000Z
#EXTINF:2.000,
1.ts
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:04.000Z
#EXTINF:2.500,
2.ts
`,
		wantTargetSecs: 3,
	},
}

func TestPlaylistRendering(t *testing.T) {
	for _, tc := range playlistCases {
		t.Run(tc.name, func(t *testing.T) {
			w := testWindow(tc.length, tc.keep)
			tc.build(t, w)
			got, ok := w.Playlist()
			if tc.want == "" {
				require.False(t, ok)
				require.Empty(t, got)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want, string(got))
			if tc.wantTargetSecs != 0 {
				require.Equal(t, tc.wantTargetSecs, w.TargetDurationSeconds())
			}
			requireParsesBack(t, got)
		})
	}
}

// requireParsesBack decodes the playlist with hls-m3u8 and checks it against its own text.
func requireParsesBack(t *testing.T, text []byte) {
	t.Helper()
	pl, listType, err := m3u8.Decode(*bytes.NewBuffer(bytes.Clone(text)), true)
	require.NoError(t, err)
	require.Equal(t, m3u8.MEDIA, listType)
	media := pl.(*m3u8.MediaPlaylist)
	require.False(t, media.Closed, "a live playlist has no ENDLIST")
	require.Equal(t, uint8(3), media.Version())
	n := 0
	for _, seg := range media.GetAllSegments() {
		require.Equal(t, media.SeqNo+uint64(n), seg.SeqId)
		require.Equal(t, formatSeq(seg.SeqId)+".ts", seg.URI, "URI must match the implied media sequence number")
		require.False(t, seg.ProgramDateTime.IsZero())
		require.InDelta(t, 2.0, seg.Duration, 0.6)
		n++
	}
	require.Positive(t, n)
}

func TestPlaylistSlidesAcrossRendersAndCountsDiscontinuities(t *testing.T) {
	w := testWindow(2, 6)
	s := spec(0)
	s.disc = true
	addAll(t, w, s)
	addAll(t, w, spec(1))
	first, ok := w.Playlist()
	require.True(t, ok)
	require.Contains(t, string(first), "#EXT-X-MEDIA-SEQUENCE:0\n")
	require.NotContains(t, string(first), "DISCONTINUITY-SEQUENCE")
	require.Contains(t, string(first), "#EXT-X-DISCONTINUITY\n")

	// 2 abandoned, 3 complete: the list moves past the gap and 3 carries a discontinuity.
	w.AddChunk(spec(2).chunks()[0])
	addAll(t, w, spec(3))
	again, _ := w.Playlist()
	require.Equal(t, string(first), string(again), "an incomplete segment holds the list back")
	w.Abandon(2)
	p, ok := w.Playlist()
	require.True(t, ok)
	require.Contains(t, string(p), "#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-DISCONTINUITY\n")

	// Once 3 slides out, its discontinuity is counted.
	addAll(t, w, spec(4))
	addAll(t, w, spec(5))
	p, ok = w.Playlist()
	require.True(t, ok)
	require.Contains(t, string(p), "#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-TARGETDURATION:2\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-PROGRAM")
	require.NotContains(t, string(p), "#EXT-X-DISCONTINUITY\n")

	// A late segment older than the listed ones is held but never listed: the media sequence
	// a player sees never goes back.
	w2 := testWindow(3, 8)
	addAll(t, w2, spec(11))
	p, _ = w2.Playlist()
	require.Contains(t, string(p), "#EXT-X-MEDIA-SEQUENCE:11\n")
	addAll(t, w2, spec(10))
	p, _ = w2.Playlist()
	require.Contains(t, string(p), "#EXT-X-MEDIA-SEQUENCE:11\n")
	require.NotContains(t, string(p), "10.ts")
}

// A stream that ended says so with EXT-X-ENDLIST, so players stop polling; a new session that
// continues it removes the tag again, after a discontinuity, with the sequence going on.
func TestPlaylistEndsWithTheStreamAndResumesAfterADiscontinuity(t *testing.T) {
	w := testWindow(4, 8)
	addAll(t, w, spec(10))
	last := spec(11)
	last.end = true
	addAll(t, w, last)
	p, ok := w.Playlist()
	require.True(t, ok)
	require.True(t, w.Ended())
	require.True(t, strings.HasSuffix(string(p), "11.ts\n#EXT-X-ENDLIST\n"), string(p))
	pl, _, err := m3u8.Decode(*bytes.NewBuffer(bytes.Clone(p)), true)
	require.NoError(t, err)
	require.True(t, pl.(*m3u8.MediaPlaylist).Closed)
	_, meta, ok := w.Segment(11)
	require.True(t, ok)
	require.True(t, meta.End)

	// The next session's first segment is still incomplete: nothing to list yet, still ended.
	next := spec(12)
	next.disc = true
	cs := next.chunks()
	w.AddChunk(cs[0])
	p, _ = w.Playlist()
	require.Contains(t, string(p), "#EXT-X-ENDLIST")

	for _, c := range cs[1:] {
		w.AddChunk(c)
	}
	p, ok = w.Playlist()
	require.True(t, ok)
	require.False(t, w.Ended())
	require.NotContains(t, string(p), "ENDLIST")
	require.Contains(t, string(p), "11.ts\n#EXT-X-DISCONTINUITY\n")
	require.True(t, strings.HasSuffix(string(p), "12.ts\n"), string(p))
	requireParsesBack(t, p)
}

func TestPlaylistCachedUntilChange(t *testing.T) {
	w := testWindow(3, 5)
	addAll(t, w, spec(1))
	a, _ := w.Playlist()
	b, _ := w.Playlist()
	require.Same(t, &a[0], &b[0], "second call must return the cached bytes")
	w.AddChunk(spec(2).chunks()[0]) // does not change the listing
	c, _ := w.Playlist()
	require.Same(t, &a[0], &c[0])
	addAll(t, w, spec(3))
	for _, ch := range spec(2).chunks()[1:] {
		w.AddChunk(ch)
	}
	d, _ := w.Playlist()
	require.Contains(t, string(d), "3.ts")
}

// TestTargetDurationIsLargestRoundedEXTINF pins issue 11: RFC 8216 bounds each EXTINF rounded
// to the nearest integer, so segments a hair over the nominal duration (29.97 fps GOPs, AAC
// frames that do not divide 2 s) must not raise the target by a whole second.
func TestTargetDurationIsLargestRoundedEXTINF(t *testing.T) {
	const ntscFrame = 1001 * time.Second / 30000 // 33.367 ms
	aacFrame := func(rate int) time.Duration { return 1024 * time.Second / time.Duration(rate) }
	for _, tc := range []struct {
		name      string
		nominal   time.Duration
		durations []time.Duration
		want      int
	}{
		{"29.97 fps, 60-frame GOPs (2.002 s)", 2 * time.Second, []time.Duration{60 * ntscFrame, 60 * ntscFrame}, 2},
		{"29.97 fps, 30-frame GOPs at a 1 s target (1.001 s)", time.Second, []time.Duration{30 * ntscFrame}, 1},
		{"29.97 fps, a GOP cut one keyframe late (4.004 s)", 2 * time.Second, []time.Duration{60 * ntscFrame, 120 * ntscFrame}, 4},
		{"audio only, 94 AAC frames at 48 kHz (2.005 s)", 2 * time.Second, []time.Duration{94 * aacFrame(48000)}, 2},
		{"audio only, 87 AAC frames at 44.1 kHz (2.020 s)", 2 * time.Second, []time.Duration{87 * aacFrame(44100)}, 2},
		{"audio only, 141 AAC frames at 48 kHz (3.008 s)", 3 * time.Second, []time.Duration{141 * aacFrame(48000)}, 3},
		{"half a second rounds up (2.5 s)", 2 * time.Second, []time.Duration{2500 * time.Millisecond}, 3},
		{"just under half (2.499 s)", 2 * time.Second, []time.Duration{2499 * time.Millisecond}, 2},
		{"EXTINF as written: 2.4995 s prints 2.500, so 3", 2 * time.Second, []time.Duration{2499500 * time.Microsecond}, 3},
		{"short segments keep the nominal target", 2 * time.Second, []time.Duration{400 * time.Millisecond}, 2},
		{"at least 1 s", 300 * time.Millisecond, []time.Duration{300 * time.Millisecond}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := New(Config{Stream: testStream, PlaylistLength: 6, TargetDuration: tc.nominal})
			for i, d := range tc.durations {
				s := spec(uint64(i + 1))
				s.duration = d
				addAll(t, w, s)
			}
			p, ok := w.Playlist()
			require.True(t, ok)
			require.Contains(t, string(p), "#EXT-X-TARGETDURATION:"+strconv.Itoa(tc.want)+"\n")
			require.Equal(t, tc.want, w.TargetDurationSeconds())

			// The RFC's rule, checked on the playlist as written.
			pl, _, err := m3u8.Decode(*bytes.NewBuffer(bytes.Clone(p)), true)
			require.NoError(t, err)
			media := pl.(*m3u8.MediaPlaylist)
			for _, seg := range media.GetAllSegments() {
				require.LessOrEqual(t, math.Round(seg.Duration), float64(tc.want), seg.URI)
			}
		})
	}
}

func TestTargetDurationNeverDecreases(t *testing.T) {
	w := testWindow(1, 3)
	s := spec(1)
	s.duration = 3500 * time.Millisecond
	addAll(t, w, s)
	p, _ := w.Playlist()
	require.Contains(t, string(p), "#EXT-X-TARGETDURATION:4\n")
	addAll(t, w, spec(2))
	p, _ = w.Playlist()
	require.NotContains(t, string(p), "1.ts")
	require.Contains(t, string(p), "#EXT-X-TARGETDURATION:4\n")
}

func TestProgramDateTimeMillisecondsUTC(t *testing.T) {
	w := testWindow(3, 5)
	cs := spec(1).chunks()
	cs[2].Info.ProgramDateTime = time.Date(2026, 1, 2, 4, 5, 6, 789_654_321, time.FixedZone("CET", 3600))
	for _, c := range cs {
		w.AddChunk(c)
	}
	cs = spec(2).chunks()
	cs[2].Info.ProgramDateTime = time.Time{}
	for _, c := range cs {
		w.AddChunk(c)
	}
	p, ok := w.Playlist()
	require.True(t, ok)
	require.Equal(t, `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-TARGETDURATION:2
#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:05:06.789Z
#EXTINF:2.000,
1.ts
#EXTINF:2.000,
2.ts
`, string(p))
}
