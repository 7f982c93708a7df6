package player

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFMP4Checker(t *testing.T) {
	part := func(k int, independent bool) []byte {
		return llTestPart(t, k, independent, uint64(k)*llFramesPerPart*llFrameTicks)
	}
	otherTrack := bytes.Clone(part(1, true))
	// The tfhd's track ID (its last 4 bytes are the ID, after size, type, version and flags).
	i := bytes.Index(otherTrack, []byte("tfhd"))
	require.Positive(t, i)
	otherTrack[i+11] = 2

	for _, tc := range []struct {
		name        string
		init        []byte // nil: no init segment
		media       [][]byte
		independent bool
		reset       bool // a discontinuity before the last media
		want        error
	}{
		{name: "parts in order", init: llTestInit(t), media: [][]byte{part(0, true), part(1, false), part(2, false)}},
		{name: "a whole segment, its parts back to back", init: llTestInit(t), media: [][]byte{bytes.Join([][]byte{part(0, true), part(1, false)}, nil)}},
		{name: "independent part with an IDR", init: llTestInit(t), media: [][]byte{part(4, true)}, independent: true},
		{name: "without init, parts still parse", media: [][]byte{part(0, true)}},
		{name: "garbage", init: llTestInit(t), media: [][]byte{bytes.Repeat([]byte{0xde, 0xad}, 100)}, want: ErrFMP4Parse},
		{name: "empty", init: llTestInit(t), media: [][]byte{nil}, want: ErrFMP4Parse},
		{name: "truncated", init: llTestInit(t), media: [][]byte{part(0, true)[:100]}, want: ErrFMP4Parse},
		{name: "a track the init segment does not declare", init: llTestInit(t), media: [][]byte{otherTrack}, want: ErrFMP4Parse},
		{name: "INDEPENDENT=YES without an IDR", init: llTestInit(t), media: [][]byte{part(4, false)}, independent: true, want: ErrNotIndependent},
		{name: "decode time going back", init: llTestInit(t), media: [][]byte{part(5, true), part(6, false), part(2, false)}, want: ErrTimestampBack},
		{name: "decode time going back after a discontinuity", init: llTestInit(t), media: [][]byte{part(5, true), part(6, false), part(2, false)}, reset: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFMP4Checker()
			if tc.init != nil {
				require.NoError(t, c.setInit(tc.init))
			}
			var err error
			for i, m := range tc.media {
				if tc.reset && i == len(tc.media)-1 {
					c.reset()
				}
				if err = c.check(m, tc.independent); err != nil {
					break
				}
			}
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestFMP4CheckerRejectsABadInitSegment(t *testing.T) {
	c := newFMP4Checker()
	require.ErrorIs(t, c.setInit([]byte("not an init segment")), ErrFMP4Parse)
	require.ErrorIs(t, c.setInit(llTestPart(t, 0, true, 0)), ErrFMP4Parse)
}
