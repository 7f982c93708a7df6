package peer

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"testing"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// BenchmarkChunkPath is what a relaying peer does with each chunk, without the network: read
// the frame from its stream, verify it, store it in the window, send it to four children, and
// once a segment completes send the segment to the local player. 8 KiB chunks (the origin's
// default), 2 s segments at 2 Mbit/s (61 chunks). "verify" checks every signature as a real
// viewer does; "no-verify" leaves the Ed25519 work out (as the load test's shared cache does) to
// show the path's own cost. ns/op is per chunk; allocs/op and B/op are what the path costs the
// garbage collector.
func BenchmarkChunkPath(b *testing.B) {
	const (
		chunkSize = 8 << 10
		perSeg    = 61
		children  = 4
		ring      = 8 // segments prepared in advance; the window restarts when they wrap
	)
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	frames := make([][][]byte, ring)
	for s := range frames {
		for i := range perSeg {
			c := &proto.Chunk{ID: proto.ChunkID{Stream: testStream, Seq: uint64(s), Index: uint32(i)}, Data: bytes.Repeat([]byte{byte(s + i)}, chunkSize)}
			if i == perSeg-1 {
				c.Flags = proto.FlagLast
				c.Info = proto.SegmentInfo{ChunkCount: perSeg, ByteLength: perSeg * chunkSize, Duration: 2 * time.Second, ProgramDateTime: testEpoch}
			}
			c.Sign(key)
			frames[s] = append(frames[s], c.Append(nil))
		}
	}
	for _, verify := range []bool{true, false} {
		name := "verify"
		if !verify {
			name = "no-verify"
		}
		b.Run(name, func(b *testing.B) {
			var w *segwindow.Window
			var r bytes.Reader
			b.SetBytes(chunkSize)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				seq, index := (i/perSeg)%ring, i%perSeg
				if seq == 0 && index == 0 {
					w = segwindow.New(segwindow.Config{Stream: testStream})
				}
				r.Reset(frames[seq][index])
				c, err := proto.ReadChunk(&r)
				if err != nil {
					b.Fatal(err)
				}
				if verify {
					if err := c.Verify(pub); err != nil {
						b.Fatal(err)
					}
				}
				added, completed := w.AddChunk(c)
				if !added {
					b.Fatal("chunk not added")
				}
				for range children {
					_, _ = io.Discard.Write(chunkFrame(c))
				}
				if completed {
					writeSegment(io.Discard, w, uint64(seq))
				}
			}
		})
	}
}
