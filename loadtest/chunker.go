package loadtest

import (
	"crypto/ed25519"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// chunker cuts one segment's bytes into signed chunks while the segment is being written, exactly
// as the origin does: a chunk closes at size bytes or when its first byte is interval old,
// whichever comes first; the last chunk carries the segment's info.
type chunker struct {
	id       proto.ChunkID // Index is the next chunk's index
	size     int
	interval time.Duration
	key      ed25519.PrivateKey
	emit     func(*proto.Chunk)

	pending      []byte
	pendingSince time.Time
	total        uint64
}

func newChunker(id proto.ChunkID, size int, interval time.Duration, key ed25519.PrivateKey, emit func(*proto.Chunk)) *chunker {
	return &chunker{id: id, size: size, interval: interval, key: key, emit: emit, pending: make([]byte, 0, size)}
}

// Write takes MPEG-TS writer output; it never fails.
func (c *chunker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(c.pending) == 0 {
			c.pendingSince = time.Now()
		}
		take := min(c.size-len(c.pending), len(p))
		c.pending = append(c.pending, p[:take]...)
		p = p[take:]
		if len(c.pending) >= c.size {
			c.flush(0, proto.SegmentInfo{})
		}
	}
	return n, nil
}

// tick closes the pending chunk when it has waited for interval.
func (c *chunker) tick(now time.Time) {
	if len(c.pending) > 0 && now.Sub(c.pendingSince) >= c.interval {
		c.flush(0, proto.SegmentInfo{})
	}
}

// finish emits the last chunk with the segment's info and whatever is pending (maybe nothing).
func (c *chunker) finish(duration time.Duration, pdt time.Time) {
	c.flush(proto.FlagLast, proto.SegmentInfo{
		ChunkCount:      c.id.Index + 1,
		ByteLength:      c.total + uint64(len(c.pending)),
		Duration:        duration,
		ProgramDateTime: pdt,
	})
}

func (c *chunker) flush(flags proto.Flags, info proto.SegmentInfo) {
	ch := &proto.Chunk{ID: c.id, Flags: flags, Info: info, Data: c.pending}
	ch.Sign(c.key)
	c.total += uint64(len(c.pending))
	c.id.Index++
	c.pending = make([]byte, 0, c.size) // the emitted chunk owns its data now
	c.emit(ch)
}
