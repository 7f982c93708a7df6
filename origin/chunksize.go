package origin

import (
	"math"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// A chunk's size follows the stream's bit rate. Every chunk costs each node the same whatever
// its size: a QUIC stream to open, accept and read, an ACK burst, an Ed25519 check, a HAVE entry.
// With a fixed 8 KiB a 2 Mbit/s stream is 31 chunks a second and a viewer's CPU is mostly that
// (make bench-peer: 2.96 % of a core at 8 KiB against 2.07 % at 16 KiB, the bare quic-go
// receiver 2.70 % against 1.63 %); an 8 Mbit/s stream would be 120 a second. What a chunk's size
// costs is time: every tree hop stores and forwards a whole chunk, and the origin waits for it
// to fill. Sizing chunks to a fixed share of the stream's time keeps both the same at every bit
// rate: a 1 Mbit/s stream keeps its 8 KiB chunks (the size its delivery figures were measured
// with), 2 Mbit/s gets 16 KiB, 4 Mbit/s 32 KiB.

// chunkFrameUnit is the step of chunk frame sizes: Go's allocator has a size class at every
// multiple of 8 KiB (and pages beyond 32 KiB), so a frame of whole units wastes nothing in the
// windows of every node that holds it.
const chunkFrameUnit = 8 << 10

// ChunkSizeFor is the data size of chunks that each hold about d of a stream of bytesPerSec:
// whole 8 KiB frames with the header inside, at least floor, at most the frame limit. Without
// a rate or a duration it is floor.
func ChunkSizeFor(bytesPerSec float64, d time.Duration, floor int) int {
	if d <= 0 || bytesPerSec <= 0 {
		return floor
	}
	frames := math.Round(bytesPerSec * d.Seconds() / chunkFrameUnit)
	frames = max(1, min(frames, float64((proto.MaxChunkData+proto.MaxChunkHeader)/chunkFrameUnit)))
	return max(floor, int(frames)*chunkFrameUnit-proto.MaxChunkHeader)
}
