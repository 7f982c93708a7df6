package segwindow

import (
	"testing"

	"github.com/crowdsurf/crowdsurf/proto"
)

// BenchmarkAddChunk adds 16 KiB chunks of a live stream (64 chunks a segment, about 2 Mbit/s at
// 2 s segments), completing and evicting segments as it goes.
func BenchmarkAddChunk(b *testing.B) {
	const perSeg = 64
	sizes := make([]int, perSeg)
	for i := range sizes {
		sizes[i] = 16 << 10
	}
	// Pre-build a ring of segments so the benchmark measures the window, not chunk creation.
	const ring = 32
	segs := make([][]*proto.Chunk, ring)
	for i := range segs {
		segs[i] = spec(uint64(i), sizes...).chunks()
	}
	w := testWindow(6, 10)
	b.SetBytes(16 << 10)
	b.ReportAllocs()
	seq := uint64(0)
	for i := 0; b.Loop(); i++ {
		idx := i % perSeg
		if idx == 0 {
			seq++
		}
		c := *segs[seq%ring][idx]
		c.ID.Seq = seq
		w.AddChunk(&c)
	}
}

// BenchmarkPlaylist measures Playlist with the cache warm (the common case: many requests
// between two segment completions) and cold (a segment completed since the last call).
func BenchmarkPlaylist(b *testing.B) {
	w := testWindow(6, 10)
	for seq := range uint64(10) {
		addAll(b, w, spec(seq))
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := w.Playlist(); !ok {
				b.Fatal("no playlist")
			}
		}
	})
	b.Run("render", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w.mu.Lock()
			w.dirty = true
			w.mu.Unlock()
			if _, ok := w.Playlist(); !ok {
				b.Fatal("no playlist")
			}
		}
	})
}

// BenchmarkDerivePart derives the last 200 ms part of a 2 s segment at about 1 Mbit/s (5 KB
// frames at 25 fps, AAC): the CPU a node spends per part for its LL-HLS clients, once.
func BenchmarkDerivePart(b *testing.B) {
	seg := muxTS(b, tsSpec{frames: 50, fps: 25, partFrames: 5, audio: true, firstPTS: 900000, frameBytes: 5000})
	start := seg.partEnds[len(seg.partEnds)-2]
	b.SetBytes(int64(len(seg.data) - start))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := derivePart(seg.data, start, 1, 9, clockHint{}); err != nil {
			b.Fatal(err)
		}
	}
}
