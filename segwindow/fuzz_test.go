package segwindow

import (
	"bytes"
	"testing"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"
)

// FuzzWindowInvariants drives a window with arbitrary chunk arrivals, abandons and renders, and
// checks what must always hold: memory bounded by Keep, each segment completing at most once,
// a playlist that parses with hls-m3u8, URIs matching media sequence numbers, and media and
// discontinuity sequences that never go back.
func FuzzWindowInvariants(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 2, 2, 0, 0})
	f.Add([]byte{0, 5, 2, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 2, 2, 2, 0, 0})
	f.Add([]byte{0, 200, 1, 0, 201, 0, 3, 0, 0, 1, 99, 0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		w := testWindow(3, 5)
		completedOnce := map[uint64]bool{}
		var lastMediaSeq, lastDiscSeq uint64
		base := uint64(1000)
		for len(ops) >= 3 {
			op, a, b := ops[0], ops[1], ops[2]
			ops = ops[3:]
			switch op % 4 {
			case 0, 3: // add chunk b%4 of segment base+a (4 chunks, discontinuity when a%7==0)
				seq := base + uint64(a)
				if op%4 == 3 {
					seq = base + uint64(a)<<40 // far ahead
				}
				s := spec(seq, 10, 20, 30, 40)
				s.disc = a%7 == 0
				_, completed := w.AddChunk(s.chunks()[b%4])
				if completed {
					require.False(t, completedOnce[seq], "seq %d completed twice", seq)
					completedOnce[seq] = true
					data, _, ok := w.Segment(seq)
					require.True(t, ok)
					require.Equal(t, s.bytes(), data)
				}
			case 1:
				w.Abandon(base + uint64(a))
			case 2:
				if b%2 == 0 {
					base += uint64(a)
				}
			}
			require.LessOrEqual(t, len(w.Seqs()), 5)
			text, ok := w.Playlist()
			if !ok {
				continue
			}
			pl, _, err := m3u8.Decode(*bytes.NewBuffer(bytes.Clone(text)), true)
			require.NoError(t, err, string(text))
			media := pl.(*m3u8.MediaPlaylist)
			require.GreaterOrEqual(t, media.SeqNo, lastMediaSeq)
			require.GreaterOrEqual(t, media.DiscontinuitySeq, lastDiscSeq)
			lastMediaSeq, lastDiscSeq = media.SeqNo, media.DiscontinuitySeq
			segs := media.GetAllSegments()
			require.NotEmpty(t, segs)
			require.LessOrEqual(t, len(segs), 3)
			for i, seg := range segs {
				require.Equal(t, formatSeq(media.SeqNo+uint64(i))+".ts", seg.URI)
				_, _, ok := w.Segment(media.SeqNo + uint64(i))
				require.True(t, ok, "listed segment must be complete")
			}
		}
	})
}
