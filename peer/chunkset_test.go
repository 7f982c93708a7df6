package peer

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// chunkSet must answer exactly as the map of keys it replaced, over random adds and prunes that
// cross word boundaries, and keep its count right.
func TestChunkSetAgreesWithAMapOfKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newChunkSet()
	ref := map[chunkKey]bool{}
	for step := range 20000 {
		k := chunkKey{seq: 100 + rng.Uint64N(8), index: rng.Uint32N(300)}
		require.Equal(t, !ref[k], s.add(k), "add reports a new key (step %d)", step)
		ref[k] = true
		if step%1000 == 999 {
			low := 100 + rng.Uint64N(8)
			s.dropBelow(low)
			for r := range ref {
				if r.seq < low {
					delete(ref, r)
				}
			}
		}
		probe := chunkKey{seq: 100 + rng.Uint64N(8), index: rng.Uint32N(300)}
		require.Equal(t, ref[probe], s.has(probe))
		require.Equal(t, len(ref), s.len())
		anyOf := false
		for r := range ref {
			anyOf = anyOf || r.seq == probe.seq
		}
		require.Equal(t, anyOf, s.anyOf(probe.seq))
	}
	var got, want []chunkKey
	for k := range s.all() {
		got = append(got, k)
	}
	for k := range ref {
		want = append(want, k)
	}
	cmp := func(a, b chunkKey) int {
		if a.seq != b.seq {
			return int(int64(a.seq) - int64(b.seq))
		}
		return int(int64(a.index) - int64(b.index))
	}
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	require.Equal(t, want, got)
}

// A claim of an absurd index (a liar before the edge is known) costs one word, not a bitmap up
// to it.
func TestChunkSetHoldsAHugeIndexInOneWord(t *testing.T) {
	s := newChunkSet()
	require.True(t, s.add(chunkKey{seq: 1, index: math.MaxUint32}))
	require.True(t, s.has(chunkKey{seq: 1, index: math.MaxUint32}))
	require.False(t, s.has(chunkKey{seq: 1, index: math.MaxUint32 - 64}))
	require.Len(t, s.words, 1)
	require.Equal(t, []chunkKey{{1, math.MaxUint32}}, slices.Collect(s.all()))
}
