package segwindow

import (
	"bytes"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestPartRangesFollowTheSignedPartEnds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
		flags []proto.Flags // of each chunk; the last gets FlagLast in addition
		hold  []int         // chunk indexes held (nil: all)
		want  []partRange
	}{
		{"no part ends: the whole segment is one part", []int{10, 20, 30}, []proto.Flags{0, 0, 0}, nil,
			[]partRange{{0, 60, 2}}},
		{"a part per chunk", []int{10, 20, 30}, []proto.Flags{proto.FlagPartEnd, proto.FlagPartEnd, 0}, nil,
			[]partRange{{0, 10, 0}, {10, 30, 1}, {30, 60, 2}}},
		{"parts of several chunks", []int{10, 20, 30, 40}, []proto.Flags{0, proto.FlagPartEnd, 0, 0}, nil,
			[]partRange{{0, 30, 1}, {30, 100, 3}}},
		{"an empty chunk ends a part", []int{10, 0, 30}, []proto.Flags{0, proto.FlagPartEnd, 0}, nil,
			[]partRange{{0, 10, 1}, {10, 40, 2}}},
		{"an empty last chunk after a part end adds no part", []int{10, 20, 0}, []proto.Flags{0, proto.FlagPartEnd, 0}, nil,
			[]partRange{{0, 30, 1}}},
		{"the last chunk with the flag too", []int{10, 20}, []proto.Flags{proto.FlagPartEnd, proto.FlagPartEnd}, nil,
			[]partRange{{0, 10, 0}, {10, 30, 1}}},
		{"a missing chunk stops the list, whatever comes after it", []int{10, 20, 30, 40}, []proto.Flags{proto.FlagPartEnd, proto.FlagPartEnd, proto.FlagPartEnd, 0}, []int{0, 2, 3},
			[]partRange{{0, 10, 0}}},
		{"a part is listed once its last chunk is held, before the segment completes", []int{10, 20, 30, 40}, []proto.Flags{0, proto.FlagPartEnd, 0, 0}, []int{0, 1, 2},
			[]partRange{{0, 30, 1}}},
		{"nothing from chunk 0 on", []int{10, 20}, []proto.Flags{proto.FlagPartEnd, 0}, []int{1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := testWindow(6, 10)
			cs := spec(1, tc.sizes...).chunks()
			for i, c := range cs {
				c.Flags |= tc.flags[i]
			}
			hold := tc.hold
			if hold == nil {
				for i := range cs {
					hold = append(hold, i)
				}
			}
			for _, i := range hold {
				added, _ := w.AddChunk(cs[i])
				require.True(t, added)
			}
			w.mu.Lock()
			got := w.segs[1].partRanges()
			w.mu.Unlock()
			require.Equal(t, tc.want, got)
		})
	}
}

func TestPartsDeriveToFMP4WithTheFramesOfEachPart(t *testing.T) {
	w := testWindow(6, 10)
	for _, c := range llTestSegment(t, 7, 23) { // 23 frames: parts of 5, 5, 5, 5, 3
		w.AddChunk(c)
	}
	var whole []byte
	for n, frames := range []int{5, 5, 5, 5, 3} {
		body, err := w.Part(7, n)
		require.NoError(t, err, "part %d", n)
		parts, counts := parseFMP4Part(t, body)
		require.Len(t, parts, 1)
		require.Equal(t, frames, counts[1], "video frames of part %d", n)
		require.Positive(t, counts[2], "audio frames of part %d", n)
		video := parts[0].Tracks[0]
		require.Equal(t, n != 0, video.Samples[0].IsNonSyncSample, "only part 0 starts with the IDR")
		require.Equal(t, uint64(900000+7*23*3600+n*5*3600), video.BaseTime)
		for _, s := range video.Samples {
			require.Equal(t, uint32(3600), s.Duration, "25 fps, the last frame too")
		}
		again, err := w.Part(7, n)
		require.NoError(t, err)
		require.Same(t, &body[0], &again[0], "derived once, then cached")
		whole = append(whole, body...)
	}
	_, err := w.Part(7, 5)
	require.ErrorIs(t, err, ErrNoSuchPart, "the segment is complete: no sixth part will come")
	seg, meta, err := w.FMP4Segment(7)
	require.NoError(t, err)
	require.Equal(t, whole, seg, "a segment is its parts back to back")
	require.Equal(t, uint64(7), meta.Seq)

	init, err := w.Init()
	require.NoError(t, err)
	var parsed fmp4.Init
	require.NoError(t, parsed.Unmarshal(bytes.NewReader(init)))
	require.Len(t, parsed.Tracks, 2)
	require.Equal(t, uint32(48000), parsed.Tracks[1].TimeScale)
}

// The derivation is a function of the signed bytes only: a window that got the chunks in
// another order, in other calls, derives the same bytes.
func TestPartsAreTheSameBytesOnEveryNode(t *testing.T) {
	cs := llTestSegment(t, 3, 15)
	origin, peer := testWindow(6, 10), testWindow(6, 10)
	for _, c := range cs {
		origin.AddChunk(c)
	}
	for i := len(cs) - 1; i >= 0; i-- {
		peer.AddChunk(cs[i])
	}
	for n := range 3 {
		a, err := origin.Part(3, n)
		require.NoError(t, err)
		b, err := peer.Part(3, n)
		require.NoError(t, err)
		require.Equal(t, a, b)
	}
}

func TestPartAvailableBeforeItsSegmentCompletes(t *testing.T) {
	w := testWindow(6, 10)
	cs := llTestSegment(t, 4, 15)
	firstPartEnd := 0
	for i, c := range cs {
		if c.Flags&proto.FlagPartEnd != 0 {
			firstPartEnd = i
			break
		}
	}
	for _, c := range cs[:firstPartEnd] {
		w.AddChunk(c)
	}
	_, err := w.Part(4, 0)
	require.ErrorIs(t, err, ErrPartNotYet)
	w.AddChunk(cs[firstPartEnd])
	body, err := w.Part(4, 0)
	require.NoError(t, err)
	_, counts := parseFMP4Part(t, body)
	require.Equal(t, 5, counts[1])
	_, err = w.Part(4, 1)
	require.ErrorIs(t, err, ErrPartNotYet)
	_, err = w.Part(5, 0)
	require.ErrorIs(t, err, ErrPartNotYet, "a segment ahead may still come")
}

// A part whose last chunk was listed but whose segment was evicted is gone, and its cache with it.
func TestPartCacheLeavesWithItsSegment(t *testing.T) {
	w := testWindow(2, 2)
	for seq := range uint64(2) {
		for _, c := range llTestSegment(t, seq, 10) {
			w.AddChunk(c)
		}
	}
	_, err := w.Part(0, 0)
	require.NoError(t, err)
	for _, c := range llTestSegment(t, 2, 10) {
		w.AddChunk(c)
	}
	_, err = w.Part(0, 0)
	require.ErrorIs(t, err, ErrNoSuchPart)
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Len(t, w.segs, 2)
}
