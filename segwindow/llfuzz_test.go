package segwindow

import (
	"errors"
	"net/url"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzRemux feeds the TS→fMP4 derivation arbitrary bytes. The chunks are signed, so only the
// origin's own publisher can send garbage; it must never take a node down: no panic, an error
// wrapping errBadTS, or an fMP4 that parses back. The remux functions run without the recover
// safety net here, so a panic is a finding.
func FuzzRemux(f *testing.F) {
	for _, s := range []tsSpec{
		{frames: 12, fps: 25, partFrames: 5, audio: true, firstPTS: 900000},
		{frames: 3, fps: 30, partFrames: 1},
	} {
		seg := muxTS(f, s)
		f.Add(seg.data, uint16(0))
		f.Add(seg.data[:seg.partEnds[0]], uint16(0))
		f.Add(seg.data, uint16(seg.partEnds[0]/tsPacketSize))
		flipped := append([]byte(nil), seg.data...)
		flipped[200] ^= 0xff // a PES header byte
		f.Add(flipped, uint16(1))
	}
	opusSeg, _ := muxOpusTS(f, 2, []int{1, 3, 1, 1})
	f.Add(opusSeg, uint16(0))
	f.Add(opusSeg, uint16(2))
	f.Add([]byte{}, uint16(0))
	f.Add(make([]byte, tsPacketSize), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, startPacket uint16) {
		start := min(int(startPacket)*tsPacketSize, len(b))
		if init, err := remuxInit(b); err != nil {
			require.ErrorIs(t, err, errBadTS)
		} else {
			require.NotEmpty(t, init.body)
		}
		part, err := remuxPart(b, start, 1, 0, clockHint{})
		if err != nil {
			require.ErrorIs(t, err, errBadTS)
			return
		}
		parsed, _ := parseFMP4Part(t, part.body)
		require.Len(t, parsed, 1)
		require.Positive(t, part.duration)
	})
}

// FuzzParseBlockQuery: any query either asks for a part or a segment that the request then
// names exactly, or is refused with errBadQuery; nothing panics.
func FuzzParseBlockQuery(f *testing.F) {
	for _, q := range []string{"", "_HLS_msn=7", "_HLS_msn=7&_HLS_part=3", "_HLS_part=1", "_HLS_msn=x", "_HLS_msn=1&_HLS_msn=1", "_HLS_skip=v2&_HLS_msn=0&_HLS_part=0"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, err := parseBlockQuery(q)
		if err != nil {
			require.True(t, errors.Is(err, errBadQuery))
			return
		}
		require.Equal(t, r.block, q.Has(queryMSN))
		if r.block { // leading zeros are fine in a query: nothing caches by it
			n, err := strconv.ParseUint(q.Get(queryMSN), 10, 64)
			require.NoError(t, err)
			require.Equal(t, n, r.msn)
		}
		require.GreaterOrEqual(t, r.part, -1)
		require.Less(t, r.part, maxPartIndex)
	})
}

// FuzzParseFMP4URI: a name is a part or segment URI exactly when writing it back gives the
// same name.
func FuzzParseFMP4URI(f *testing.F) {
	for _, s := range []string{"12.mp4", "12.3.mp4", "init.mp4", "012.mp4", "12.03.mp4", "1.2.3.mp4", "18446744073709551615.65535.mp4", "-1.mp4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		seq, part, ok := ParseFMP4URI(name)
		if !ok {
			return
		}
		if part < 0 {
			require.Equal(t, name, FMP4SegmentURI(seq))
		} else {
			require.Equal(t, name, PartURI(seq, part))
			require.Less(t, part, maxPartIndex)
		}
	})
}
