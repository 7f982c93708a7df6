package origin

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// BenchmarkSegmenterChunker measures the ingest path after RTP decoding: MPEG-TS muxing,
// chunking at 16 KiB / 200 ms and Ed25519 signing, for H.264 frames of the given size at 25 fps
// (a keyframe a second, 1 s segments) plus AAC. MB/s counts access-unit bytes in.
func BenchmarkSegmenterChunker(b *testing.B) {
	for _, bc := range []struct {
		name      string
		frameSize int
	}{
		{"1Mbps", 5_000},
		{"8Mbps", 40_000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			clock := &fakeClock{t: time.Unix(0, 0)}
			var chunks int
			seg := newSegmenter(segmenterConfig{
				Stream: "bench", Target: time.Second, ChunkSize: DefaultChunkSize, ChunkInterval: DefaultChunkInterval,
				Key: priv, Now: clock.now, Emit: func(*proto.Chunk) { chunks++ },
			})
			if err := seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS, AAC: testAAC}); err != nil {
				b.Fatal(err)
			}
			idr, nonIDR := videoAU(true, bc.frameSize*3), videoAU(false, bc.frameSize)
			aac := [][]byte{make([]byte, 300), make([]byte, 300)}
			b.SetBytes(int64(bc.frameSize + 600))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				au := nonIDR
				if i%25 == 0 {
					au = idr
				}
				pts := int64(i * frame25)
				if err := seg.writeH264(pts, au); err != nil {
					b.Fatal(err)
				}
				if err := seg.writeAAC(pts, aac); err != nil {
					b.Fatal(err)
				}
				clock.advance(40 * time.Millisecond)
				seg.tick(clock.now())
			}
			seg.endSession()
			b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
		})
	}
}
