package segwindow

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// bundleOf is what Window.ChunkFrames serves for a complete segment.
func bundleOf(t testing.TB, s segSpec) []byte {
	t.Helper()
	w := testWindow(6, 10)
	addAll(t, w, s)
	b, ok := w.ChunkFrames(s.seq)
	require.True(t, ok)
	return b
}

func TestParseBundleReadsWhatChunkFramesWrites(t *testing.T) {
	s := spec(7, 100, 3000, 1)
	chunks, err := ParseBundle(bundleOf(t, s), testStream, 7)
	require.NoError(t, err)
	require.Len(t, chunks, 3)
	for i, c := range chunks {
		require.Equal(t, s.chunks()[i].Append(nil), c.Append(nil))
	}
}

func TestParseBundleRefusesWhatIsNotTheSegment(t *testing.T) {
	whole := bundleOf(t, spec(7))
	one := spec(7).chunks()[0].Append(nil)
	cases := []struct {
		name   string
		b      []byte
		stream string
		seq    uint64
		want   error
	}{
		{"another segment", whole, testStream, 8, proto.ErrMalformed},
		{"another stream", whole, "other", 7, proto.ErrMalformed},
		{"chunks out of order", append(append([]byte{}, whole[len(one):]...), one...), testStream, 7, proto.ErrMalformed},
		{"bytes after the last chunk", append(append([]byte{}, whole...), 0), testStream, 7, proto.ErrMalformed},
		{"no last chunk", one, testStream, 7, proto.ErrMalformed},
		{"cut short", whole[:len(whole)-1], testStream, 7, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBundle(tc.b, tc.stream, tc.seq)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

// FuzzParseBundle: a bundle that parses is the segment's chunks 0..N-1, the last flagged last,
// and encodes back to exactly the input.
func FuzzParseBundle(f *testing.F) {
	f.Add(bundleOf(f, spec(7)), uint64(7))
	f.Add(bundleOf(f, spec(7, 1)), uint64(7))
	f.Add([]byte{1, 1, 4}, uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, seq uint64) {
		chunks, err := ParseBundle(b, testStream, seq)
		if err != nil {
			return
		}
		var enc []byte
		for i, c := range chunks {
			require.Equal(t, uint32(i), c.ID.Index)
			require.Equal(t, i == len(chunks)-1, c.Last())
			enc = c.Append(enc)
		}
		require.Equal(t, b, enc)
	})
}
