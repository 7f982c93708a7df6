package segwindow

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

const testStream = "cam1"

// testEpoch is the program date-time of seq 0; segment seq starts seq*2 s later.
var testEpoch = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// segSpec describes a segment to cut into chunks.
type segSpec struct {
	seq      uint64
	sizes    []int // data length of each chunk
	duration time.Duration
	disc     bool
	end      bool // the last chunk carries FlagEnd: the stream ends with this segment
}

func spec(seq uint64, sizes ...int) segSpec {
	if len(sizes) == 0 {
		sizes = []int{100, 100, 50}
	}
	return segSpec{seq: seq, sizes: sizes, duration: 2 * time.Second}
}

// chunks cuts the spec into chunks whose data is a recognisable pattern per seq and index.
func (s segSpec) chunks() []*proto.Chunk {
	var total uint64
	for _, n := range s.sizes {
		total += uint64(n)
	}
	out := make([]*proto.Chunk, len(s.sizes))
	for i, n := range s.sizes {
		c := &proto.Chunk{
			ID:   proto.ChunkID{Stream: testStream, Seq: s.seq, Index: uint32(i)},
			Data: bytes.Repeat([]byte{byte(s.seq*7 + uint64(i))}, n),
		}
		if s.disc {
			c.Flags |= proto.FlagDiscontinuity
		}
		if i == len(s.sizes)-1 {
			c.Flags |= proto.FlagLast
			if s.end {
				c.Flags |= proto.FlagEnd
			}
			c.Info = proto.SegmentInfo{
				ChunkCount:      uint32(len(s.sizes)),
				ByteLength:      total,
				Duration:        s.duration,
				ProgramDateTime: testEpoch.Add(time.Duration(s.seq) * 2 * time.Second),
			}
		}
		out[i] = c
	}
	return out
}

func (s segSpec) bytes() []byte {
	var b []byte
	for _, c := range s.chunks() {
		b = append(b, c.Data...)
	}
	return b
}

// addAll adds every chunk and requires the segment to complete on the last one.
func addAll(t testing.TB, w *Window, s segSpec) {
	t.Helper()
	cs := s.chunks()
	for i, c := range cs {
		added, completed := w.AddChunk(c)
		require.True(t, added, "chunk %v", c.ID)
		require.Equal(t, i == len(cs)-1, completed, "chunk %v", c.ID)
	}
}

func testWindow(length, keep int) *Window {
	return New(Config{Stream: testStream, PlaylistLength: length, Keep: keep, TargetDuration: 2 * time.Second})
}

func formatSeq(seq uint64) string { return strconv.FormatUint(seq, 10) }
