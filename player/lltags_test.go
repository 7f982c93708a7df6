package player

import (
	"bytes"
	"net/url"
	"testing"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"
)

const llHeader = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n" +
	"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600\n#EXT-X-PART-INF:PART-TARGET=0.200\n"

// A fresh stream: every segment still has its parts listed, the first one's before the first
// EXTINF, and the segment being produced has two parts and a preload hint.
const llFresh = llHeader + "#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-MAP:URI=\"init.mp4\"\n" +
	"#EXT-X-PROGRAM-DATE-TIME:2026-12-03T10:00:00.000Z\n" +
	"#EXT-X-PART:DURATION=0.200,URI=\"7.0.mp4\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.200,URI=\"7.1.mp4\"\n" +
	"#EXTINF:0.400,\n7.mp4\n" +
	"#EXT-X-PART:DURATION=0.200,URI=\"8.0.mp4\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.200,URI=\"8.1.mp4\"\n" +
	"#EXTINF:0.400,\n8.mp4\n" +
	"#EXT-X-PART:DURATION=0.200,URI=\"9.0.mp4\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.150,URI=\"9.1.mp4\"\n" +
	"#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"9.2.mp4\"\n"

func TestParseLLTags(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want *llTags
	}{
		{
			name: "fresh stream: parts before the first EXTINF belong to the first segment",
			in:   llFresh,
			want: &llTags{
				partTarget: 0.2, canBlock: true, partHoldBack: 0.6, segments: 2, hint: "9.2.mp4",
				parts: []llSegmentParts{
					{msn: 7, parts: []llPart{{uri: "7.0.mp4", duration: 0.2, independent: true}, {uri: "7.1.mp4", duration: 0.2}}},
					{msn: 8, parts: []llPart{{uri: "8.0.mp4", duration: 0.2, independent: true}, {uri: "8.1.mp4", duration: 0.2}}},
					{msn: 9, parts: []llPart{{uri: "9.0.mp4", duration: 0.2, independent: true}, {uri: "9.1.mp4", duration: 0.15}}},
				},
				tail: &llTail{msn: 9, mapURI: "init.mp4"},
			},
		},
		{
			name: "parts go by position, whatever their URIs say",
			in: llHeader + "#EXT-X-MEDIA-SEQUENCE:100\n" +
				"#EXTINF:1,\nsegment-a.mp4\n" +
				"#EXT-X-PART:DURATION=0.5,URI=\"p/x.mp4\"\n#EXT-X-PART:DURATION=0.5,URI=\"p/y,z.mp4\",GAP=YES\n" +
				"#EXTINF:1,\nsegment-b.mp4\n",
			want: &llTags{
				partTarget: 0.2, canBlock: true, partHoldBack: 0.6, segments: 2,
				parts: []llSegmentParts{{msn: 101, parts: []llPart{{uri: "p/x.mp4", duration: 0.5}, {uri: "p/y,z.mp4", duration: 0.5, gap: true}}}},
			},
		},
		{
			name: "the tail's own tags: discontinuity, date-time, a new map",
			in: llHeader + "#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-MAP:URI=\"a.mp4\"\n#EXTINF:1,\n3.mp4\n" +
				"#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"b.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-12-03T10:00:04.500Z\n" +
				"#EXT-X-PART:DURATION=0.2,URI=\"4.0.mp4\",INDEPENDENT=YES\n" +
				"#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"4.1.mp4\",BYTERANGE-START=0\n",
			want: &llTags{
				partTarget: 0.2, canBlock: true, partHoldBack: 0.6, segments: 1,
				parts: []llSegmentParts{{msn: 4, parts: []llPart{{uri: "4.0.mp4", duration: 0.2, independent: true}}}},
				tail: &llTail{msn: 4, discontinuity: true, mapURI: "b.mp4", hasPDT: true,
					pdt: time.Date(2026, 12, 3, 10, 0, 4, 500e6, time.UTC)},
				// A ranged hint is left alone: this player requests whole parts only.
			},
		},
		{
			name: "a byte-range part and a map hint are skipped",
			in: llHeader + "#EXTINF:1,\n0.mp4\n#EXT-X-PART:DURATION=0.2,URI=\"1.mp4\",BYTERANGE=\"100@0\"\n" +
				"#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"init2.mp4\"\n",
			want: &llTags{partTarget: 0.2, canBlock: true, partHoldBack: 0.6, segments: 1},
		},
		{
			name: "a plain playlist has none",
			in:   "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n0.ts\n",
			want: &llTags{segments: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseLLTags([]byte(tc.in))
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.want.partTarget > 0, got.isLowLatency())
		})
	}
}

// TestHLSM3U8LosesPartsWeKeep pins why the player reads the part tags itself: hls-m3u8 v0.6.5
// drops the first segment's parts. When an upgrade fixes that, this fails and parseLLTags may
// give way to the library.
func TestHLSM3U8LosesPartsWeKeep(t *testing.T) {
	pl, _, err := m3u8.DecodeFrom(bytes.NewReader([]byte(llFresh)), false)
	require.NoError(t, err)
	var uris []string
	for _, p := range pl.(*m3u8.MediaPlaylist).PartialSegments {
		uris = append(uris, p.URI)
	}
	require.NotContains(t, uris, "7.0.mp4")
	_, _, err = m3u8.DecodeFrom(bytes.NewReader([]byte(llFresh)), true)
	require.ErrorIs(t, err, m3u8.ErrPlaylistEmpty)
}

func TestLowLatencyPlaylistResolvesPartsOntoSegments(t *testing.T) {
	base, err := url.Parse("http://origin.test/live/cam/ll.m3u8?token=x")
	require.NoError(t, err)
	pl, listType, err := decodePlaylist([]byte(llFresh))
	require.NoError(t, err)
	require.Equal(t, m3u8.MEDIA, listType)
	mp, err := toMediaPlaylist(pl.(*m3u8.MediaPlaylist), parseLLTags([]byte(llFresh)), base, nil)
	require.NoError(t, err)

	require.NotNil(t, mp.ll)
	require.Equal(t, 200*time.Millisecond, mp.ll.partTarget)
	require.True(t, mp.ll.canBlock)
	require.Equal(t, "http://origin.test/live/cam/9.2.mp4", mp.ll.hint.String())
	require.Len(t, mp.segments, 2)
	require.Equal(t, "http://origin.test/live/cam/init.mp4", mp.segments[0].mapURL.String())
	require.Equal(t, "http://origin.test/live/cam/8.1.mp4", mp.segments[1].parts[1].url.String())

	tail := mp.ll.tail
	require.NotNil(t, tail)
	require.Equal(t, uint64(9), tail.seq)
	require.InDelta(t, 0.35, tail.duration, 1e-9)
	require.Equal(t, mp.segments[0].mapURL, tail.mapURL)
	// No date-time of its own: the one before plus two segments of 0.4 s.
	require.True(t, tail.hasPDT)
	require.Equal(t, time.Date(2026, 12, 3, 10, 0, 0, 800e6, time.UTC), tail.pdt)

	require.Equal(t, partPos{msn: 9, part: 2}, mp.nextAfterLast())
	require.True(t, mp.lists(partPos{msn: 9, part: 1}))
	require.False(t, mp.lists(partPos{msn: 9, part: 2}))
	// PART-HOLD-BACK 0.6 s from the end lands inside part 8.0, which is independent.
	start, ok := mp.lowLatencyStart()
	require.True(t, ok)
	require.Equal(t, partPos{msn: 8, part: 0}, start)
	// ... and presents from the hold-back point itself: 0.6 s before the end (9.1 ends it at
	// 0.15 + 0.2 + 0.2 + 0.2 = 0.75 s) is 0.15 s into part 8.0; those 0.15 s are decoded, not shown.
	_, skip, ok := mp.lowLatencyStartSkip()
	require.True(t, ok)
	require.InDelta(t, 0.15, skip, 1e-9)

	require.Equal(t, "http://origin.test/live/cam/ll.m3u8?_HLS_msn=9&_HLS_part=2&token=x",
		withBlockingReload(base, mp.nextAfterLast()).String())
	require.Equal(t, base.String(), withoutBlockingReload(withBlockingReload(base, partPos{msn: 1})).String())
}

// FuzzLLPlaylist decodes arbitrary low-latency playlists the way loadPlaylist does: no panic,
// and when both passes accept the playlist, every part sits on a segment the playlist lists,
// the position after the last part is not listed while every part before it is, and a
// low-latency start is a listed position.
func FuzzLLPlaylist(f *testing.F) {
	f.Add([]byte(llFresh))
	f.Add([]byte(llHeader + "#EXT-X-PART:DURATION=0.2,URI=\"0.0.mp4\"\n"))
	f.Add([]byte(llHeader + "#EXT-X-MEDIA-SEQUENCE:5\n#EXTINF:1,\n5.mp4\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n" +
		"#EXT-X-PART:DURATION=0.2,URI=\"6.0.mp4\",GAP=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"6.1.mp4\"\n"))
	f.Add([]byte(llHeader + "#EXT-X-PART:URI=\"a\",DURATION=\"x\n#EXTINF:1\n#EXTINF:2,\n\n#X\nseg\n"))
	base, err := url.Parse("http://127.0.0.1:8090/live/cam/ll.m3u8")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, b []byte) {
		ll := parseLLTags(b)
		pl, listType, err := decodePlaylist(b)
		if err != nil || listType != m3u8.MEDIA {
			return
		}
		mp, err := toMediaPlaylist(pl.(*m3u8.MediaPlaylist), ll, base, nil)
		if err != nil || mp.ll == nil {
			return
		}
		require.True(t, ll.isLowLatency())
		require.Positive(t, mp.ll.partTarget)
		require.GreaterOrEqual(t, mp.ll.partHoldBack, 2*mp.ll.partTarget.Seconds()-1e-9)
		end := mp.nextAfterLast()
		require.False(t, mp.lists(end))
		check := func(seg *segmentInfo) {
			got, _, ok := mp.llSegment(seg.seq)
			require.True(t, ok)
			require.Same(t, seg, got)
			for i, part := range seg.parts {
				require.NotNil(t, part.url)
				require.True(t, mp.lists(partPos{msn: seg.seq, part: i}))
			}
		}
		for i := range mp.segments {
			check(&mp.segments[i])
		}
		if tail := mp.ll.tail; tail != nil {
			require.NotEmpty(t, tail.parts)
			if len(mp.segments) > 0 {
				require.Equal(t, mp.lastSeq()+1, tail.seq)
			}
			check(tail)
		}
		if start, ok := mp.lowLatencyStart(); ok {
			require.True(t, mp.lists(start), "start %s, end %s", start, end)
		}
	})
}
