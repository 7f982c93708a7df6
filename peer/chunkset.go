package peer

import (
	"iter"
	"maps"
	"math/bits"
)

// chunkSet is a set of chunk keys kept as 64-index words: what a neighbour holds arrives as HAVE
// ranges of consecutive indexes and is asked about for every chunk of every HAVE batch, push and
// repair. One map entry per key (as it was) made a neighbour's claims on a window of a 2 Mbit/s
// stream some two thousand entries; in words they are a few dozen, whatever the indexes (a word
// is allocated only for indexes held, so a claimed index of four billion costs one word).
type chunkSet struct {
	words map[chunkWord]uint64
	n     int // keys held
}

// chunkWord names the 64 indexes of segment seq from 64*word on. Both fields are 64 bits so the
// struct has no padding and the map hashes it as 16 plain bytes (chunkKey's padding makes the
// runtime hash its fields one by one).
type chunkWord struct {
	seq  uint64
	word uint64
}

func newChunkSet() chunkSet { return chunkSet{words: make(map[chunkWord]uint64)} }

func wordOf(k chunkKey) (chunkWord, uint64) {
	return chunkWord{k.seq, uint64(k.index / 64)}, 1 << (k.index % 64)
}

func (s *chunkSet) has(k chunkKey) bool {
	w, bit := wordOf(k)
	return s.words[w]&bit != 0
}

// add puts k in the set and reports whether it was new.
func (s *chunkSet) add(k chunkKey) bool {
	w, bit := wordOf(k)
	v := s.words[w]
	if v&bit != 0 {
		return false
	}
	s.words[w] = v | bit
	s.n++
	return true
}

// len is the number of keys held.
func (s *chunkSet) len() int { return s.n }

// dropBelow forgets every key of a segment before seq.
func (s *chunkSet) dropBelow(seq uint64) {
	maps.DeleteFunc(s.words, func(w chunkWord, v uint64) bool {
		if w.seq < seq {
			s.n -= bits.OnesCount64(v)
			return true
		}
		return false
	})
}

// anyOf says whether the set holds any chunk of segment seq.
func (s *chunkSet) anyOf(seq uint64) bool {
	for w := range s.words {
		if w.seq == seq {
			return true
		}
	}
	return false
}

// all yields every key held, in no particular order.
func (s *chunkSet) all() iter.Seq[chunkKey] {
	return func(yield func(chunkKey) bool) {
		for w, v := range s.words {
			for v != 0 {
				i := bits.TrailingZeros64(v)
				v &^= 1 << i
				if !yield(chunkKey{w.seq, uint32(w.word*64) + uint32(i)}) {
					return
				}
			}
		}
	}
}
