package proto_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// benchChunk is a full-size chunk, as the origin closes them (16 KiB).
func benchChunk() *proto.Chunk {
	c := &proto.Chunk{ID: proto.ChunkID{Stream: "live.main", Seq: 123456, Index: 17}, Data: make([]byte, 16<<10)}
	for i := range c.Data {
		c.Data[i] = byte(i * 7)
	}
	return c
}

func reportChunksPerSecond(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
}

// BenchmarkChunkVerify is what every receiver pays per chunk before it stores or forwards it.
func BenchmarkChunkVerify(b *testing.B) {
	c := benchChunk()
	c.Sign(testKey())
	pub := pubOf(testKey())
	b.SetBytes(int64(len(c.Data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Verify(pub); err != nil {
			b.Fatal(err)
		}
	}
	reportChunksPerSecond(b)
}

// BenchmarkChunkSign is what the origin pays per chunk.
func BenchmarkChunkSign(b *testing.B) {
	c := benchChunk()
	key := testKey()
	b.SetBytes(int64(len(c.Data)))
	b.ReportAllocs()
	for b.Loop() {
		c.Sign(key)
	}
	reportChunksPerSecond(b)
}

func BenchmarkParseChunk(b *testing.B) {
	c := benchChunk()
	c.Flags = proto.FlagLast
	c.Info = proto.SegmentInfo{ChunkCount: 18, ByteLength: 18 << 14, Duration: 2 * time.Second, ProgramDateTime: time.Now()}
	c.Sign(testKey())
	enc := c.Append(nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := proto.ParseChunk(enc); err != nil {
			b.Fatal(err)
		}
	}
	reportChunksPerSecond(b)
}

func BenchmarkParseMessage(b *testing.B) {
	msgs := map[string]proto.Message{
		"HAVE 4 ranges": &proto.Have{Ranges: []proto.ChunkRange{{Seq: 1, Count: 90}, {Seq: 2, Count: 90}, {Seq: 3, Count: 90}, {Seq: 4, First: 0, Count: 12}}},
		"HELLO":         &proto.Hello{MinVersion: 1, MaxVersion: 1, Stream: "live.main", Depths: []uint8{1, 2, 1, 3}, FreeSlots: 4},
		"REQUEST":       &proto.Request{Seq: 99, Index: 5},
	}
	for name, m := range msgs {
		enc := m.Append(nil)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := proto.ParseMessage(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadChunk is a chunk read off its stream: one buffer of the frame's size (the chunk's
// own from then on), the Chunk and its stream name.
func BenchmarkReadChunk(b *testing.B) {
	c := benchChunk()
	c.Sign(testKey())
	enc := c.Append(nil)
	var r bytes.Reader
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(enc)
		if _, err := proto.ReadChunk(&r); err != nil {
			b.Fatal(err)
		}
	}
	reportChunksPerSecond(b)
}

// BenchmarkChunkFrame is what each push to a child costs to get the bytes it sends.
func BenchmarkChunkFrame(b *testing.B) {
	c := benchChunk()
	c.Sign(testKey())
	parsed, _, err := proto.ParseChunk(c.Append(nil))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = parsed.Frame()
	}
}
