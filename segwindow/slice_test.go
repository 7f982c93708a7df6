package segwindow

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestSliceFileNames(t *testing.T) {
	for _, s := range []Slice{{0, 2}, {1, 2}, {3, 4}, {15, 16}} {
		got, ok := ParseSliceFile(s.File())
		require.True(t, ok, s.File())
		require.Equal(t, s, got)
	}
	require.Equal(t, "slice-1-of-4.chunks", Slice{1, 4}.File())
	require.Equal(t, "/live/cam1/7/slice-1-of-4.chunks", SlicePath("cam1", 7, Slice{1, 4}))
	for _, name := range []string{
		"slice-0-of-1.chunks",  // a slice of one is all.chunks
		"slice-4-of-4.chunks",  // index out of range
		"slice-0-of-17.chunks", // more slices than stripes
		"slice-01-of-4.chunks", // one URL per slice: no leading zeros
		"slice--1-of-4.chunks", // no sign
		"slice-1-of-4.chunk",   // a chunk's extension
		"slice-1-of-4-of-8.chunks",
		"slice-1.chunks",
		"all.chunks",
		"slice-99999999999999999999999-of-4.chunks",
	} {
		_, ok := ParseSliceFile(name)
		require.False(t, ok, name)
	}
}

// FuzzParseSliceFile: a name is a slice's file name exactly when it names a slice the server
// serves (Valid) and writing that slice back gives the same name (one URL per slice).
func FuzzParseSliceFile(f *testing.F) {
	for _, s := range []string{"slice-0-of-2.chunks", "slice-15-of-16.chunks", "slice-01-of-4.chunks", "slice-4-of-4.chunks",
		"slice-0-of-17.chunks", "slice-18446744073709551615-of-4.chunks", "slice-1-of-18446744073709551617.chunks",
		"slice--1-of-4.chunks", "slice-+1-of-4.chunks", "all.chunks"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		s, ok := ParseSliceFile(name)
		if !ok {
			require.Zero(t, s)
			return
		}
		require.True(t, s.Valid(), "%+v", s)
		require.Equal(t, name, s.File())
	})
}

func TestSliceHoldsEveryCountthIndex(t *testing.T) {
	s := Slice{Index: 1, Count: 4}
	var held []uint32
	for i := range uint32(10) {
		if s.Holds(i) {
			held = append(held, i)
		}
	}
	require.Equal(t, []uint32{1, 5, 9}, held)
}

func TestServerSlices(t *testing.T) {
	f := newServerFixture(t)
	s := spec(5, 300, 20, 7, 40, 9)
	cs := s.chunks()
	for _, c := range cs[:4] {
		f.window.AddChunk(c)
	}
	// A segment in progress has no slices either.
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5/slice-0-of-2.chunks"), http.StatusNotFound)
	f.window.AddChunk(cs[4])
	for _, tc := range []struct {
		slice   Slice
		indexes []int
	}{
		{Slice{0, 2}, []int{0, 2, 4}},
		{Slice{1, 2}, []int{1, 3}},
		{Slice{3, 4}, []int{3}},
		{Slice{7, 8}, nil}, // fewer chunks than the slice's index: an empty body
	} {
		rec := f.do(http.MethodGet, SlicePath("cam1", 5, tc.slice))
		require.Equal(t, http.StatusOK, rec.Code, tc.slice.File())
		require.Equal(t, CacheImmutable, rec.Header().Get("Cache-Control"))
		var want []byte
		for _, i := range tc.indexes {
			want = cs[i].Append(want)
		}
		require.Equal(t, want, rec.Body.Bytes(), tc.slice.File())
		got, err := ParseSlice(rec.Body.Bytes(), testStream, 5, tc.slice)
		require.NoError(t, err)
		require.Len(t, got, len(tc.indexes))
		for j, c := range got {
			require.Equal(t, cs[tc.indexes[j]].Append(nil), c.Append(nil))
		}
	}
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5/slice-2-of-2.chunks"), http.StatusNotFound)
}

// TestSliceBuffersRefusesInvalidSlices: SliceBuffers of a slice no server serves is no answer
// (an index below zero panicked, a count of zero was refused by chance of its own check).
func TestSliceBuffersRefusesInvalidSlices(t *testing.T) {
	s := spec(5, 100, 100, 100)
	w := testWindow(6, 10)
	addAll(t, w, s)
	for _, slice := range []Slice{{-1, 2}, {2, 2}, {0, 0}, {0, -1}, {0, MaxSliceCount + 1}} {
		_, ok := w.SliceBuffers(5, slice)
		require.False(t, ok, "%+v", slice)
	}
	parts, ok := w.SliceBuffers(5, Slice{1, 2})
	require.True(t, ok)
	require.Len(t, parts, 1)
}

// sliceOf is what the server sends for a slice of a complete segment.
func sliceOf(t testing.TB, s segSpec, slice Slice) []byte {
	t.Helper()
	w := testWindow(6, 10)
	addAll(t, w, s)
	parts, ok := w.SliceBuffers(s.seq, slice)
	require.True(t, ok)
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestParseSliceRefusesWhatIsNotTheSlice(t *testing.T) {
	s := spec(7, 100, 100, 100, 100, 50)
	even := sliceOf(t, s, Slice{0, 2})
	odd := sliceOf(t, s, Slice{1, 2})
	first := s.chunks()[0].Append(nil)
	cases := []struct {
		name  string
		b     []byte
		seq   uint64
		slice Slice
		want  error
	}{
		{"another slice", odd, 7, Slice{0, 2}, proto.ErrMalformed},
		{"another count", even, 7, Slice{0, 4}, proto.ErrMalformed},
		{"another segment", even, 8, Slice{0, 2}, proto.ErrMalformed},
		{"a chunk twice", append(append([]byte{}, first...), first...), 7, Slice{0, 2}, proto.ErrMalformed},
		{"bytes after the last chunk", append(append([]byte{}, even...), first...), 7, Slice{0, 2}, proto.ErrMalformed},
		{"cut short", even[:len(even)-1], 7, Slice{0, 2}, io.ErrUnexpectedEOF},
		{"no such slice", even, 7, Slice{2, 2}, proto.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSlice(tc.b, testStream, tc.seq, tc.slice)
			require.ErrorIs(t, err, tc.want)
		})
	}
	// A slice that does not hold the last chunk ends without it, and an empty one is no error.
	got, err := ParseSlice(odd, testStream, 7, Slice{1, 2})
	require.NoError(t, err)
	require.Len(t, got, 2)
	got, err = ParseSlice(nil, testStream, 7, Slice{1, 2})
	require.NoError(t, err)
	require.Empty(t, got)
}

// FuzzParseSlice: a slice that parses is chunks Index, Index+Count, ... of the segment, nothing
// after a last chunk, and encodes back to exactly the input.
func FuzzParseSlice(f *testing.F) {
	s := spec(7, 100, 100, 100, 100, 50)
	f.Add(sliceOf(f, s, Slice{0, 2}), uint64(7), 0, 2)
	f.Add(sliceOf(f, s, Slice{1, 2}), uint64(7), 1, 2)
	f.Add(sliceOf(f, s, Slice{3, 4}), uint64(7), 3, 4)
	f.Add([]byte{1, 1, 4}, uint64(0), 0, 2)
	f.Fuzz(func(t *testing.T, b []byte, seq uint64, index, count int) {
		slice := Slice{Index: index, Count: count}
		chunks, err := ParseSlice(b, testStream, seq, slice)
		if err != nil {
			return
		}
		require.True(t, slice.Valid())
		var enc []byte
		for i, c := range chunks {
			require.Equal(t, uint64(index)+uint64(i)*uint64(count), uint64(c.ID.Index))
			require.True(t, slice.Holds(c.ID.Index))
			if c.Last() {
				require.Equal(t, len(chunks)-1, i)
			}
			enc = c.Append(enc)
		}
		require.True(t, bytes.Equal(b, enc), "re-encoded differently")
	})
}
