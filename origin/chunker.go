package origin

import (
	"crypto/ed25519"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Chunker cuts the bytes of one segment into signed chunks while the segment is still being
// written: a chunk closes when it reaches size bytes or when its first byte is interval old,
// whichever comes first, so the mesh carries a segment long before the segment ends. The origin's
// segmenter and the loadtest's synthetic source both use it, so load tests carry exactly the
// chunks a real origin emits.
//
// EndPart closes the pending chunk with proto.FlagPartEnd: an LL-HLS part ends there. A full
// chunk is emitted only when the next byte (or a tick) comes, not the moment it fills, so that a
// part that ends exactly where a chunk filled up still has a pending chunk to carry its flag.
type Chunker struct {
	id       proto.ChunkID // Index is the next chunk's index
	flags    proto.Flags   // FlagDiscontinuity or 0, on every chunk of the segment
	size     int
	interval time.Duration
	key      ed25519.PrivateKey
	emit     func(*proto.Chunk)

	pending      []byte
	pendingSince time.Time // when the first pending byte arrived
	total        uint64
	partBytes    int // bytes written since the last part end, pending or emitted
	now          func() time.Time
}

// NewChunker starts segment id.Seq at chunk id.Index. flags (FlagDiscontinuity or 0) go on every
// chunk; now is the clock (time.Now outside tests); emit receives each signed chunk and owns it.
func NewChunker(id proto.ChunkID, flags proto.Flags, size int, interval time.Duration, key ed25519.PrivateKey, now func() time.Time, emit func(*proto.Chunk)) *Chunker {
	return &Chunker{id: id, flags: flags, size: size, interval: interval, key: key, emit: emit, now: now,
		pending: make([]byte, 0, size)}
}

// Write takes muxer output; it never fails, so the MPEG-TS writer can write straight into it.
func (c *Chunker) Write(p []byte) (int, error) {
	n := len(p)
	// Data that keeps flowing closes an old chunk on time too, between the stream's ticks.
	if len(c.pending) > 0 && c.now().Sub(c.pendingSince) >= c.interval {
		c.flush(0, proto.SegmentInfo{})
	}
	for len(p) > 0 {
		if len(c.pending) >= c.size {
			c.flush(0, proto.SegmentInfo{})
		}
		if len(c.pending) == 0 {
			c.pendingSince = c.now()
		}
		take := min(c.size-len(c.pending), len(p))
		c.pending = append(c.pending, p[:take]...)
		c.partBytes += take
		p = p[take:]
	}
	return n, nil
}

// Tick closes the pending chunk when it is full or has waited for interval.
func (c *Chunker) Tick(now time.Time) {
	if len(c.pending) > 0 && (len(c.pending) >= c.size || now.Sub(c.pendingSince) >= c.interval) {
		c.flush(0, proto.SegmentInfo{})
	}
}

// EndPart ends the current LL-HLS part after the bytes written so far: the pending chunk closes
// with proto.FlagPartEnd. When a tick has just emitted the pending bytes, an empty chunk carries
// the flag (rare: parts and chunks are both about 200 ms, and most part ends find bytes pending).
// A part with no bytes is no part: EndPart then does nothing.
func (c *Chunker) EndPart() {
	if c.partBytes == 0 {
		return
	}
	c.flush(proto.FlagPartEnd, proto.SegmentInfo{})
}

// Finish emits the last chunk, which carries the segment's info and whatever bytes are pending
// (possibly none).
func (c *Chunker) Finish(duration time.Duration, pdt time.Time) proto.SegmentInfo {
	return c.finish(duration, pdt, 0)
}

// FinishStream is Finish for the last segment of a publishing session: its last chunk also
// carries proto.FlagEnd, the signed end of the stream.
func (c *Chunker) FinishStream(duration time.Duration, pdt time.Time) proto.SegmentInfo {
	return c.finish(duration, pdt, proto.FlagEnd)
}

func (c *Chunker) finish(duration time.Duration, pdt time.Time, flags proto.Flags) proto.SegmentInfo {
	info := proto.SegmentInfo{
		ChunkCount:      c.id.Index + 1,
		ByteLength:      c.total + uint64(len(c.pending)),
		Duration:        duration,
		ProgramDateTime: pdt,
	}
	c.flush(proto.FlagLast|flags, info)
	return info
}

func (c *Chunker) flush(flags proto.Flags, info proto.SegmentInfo) {
	ch := &proto.Chunk{ID: c.id, Flags: c.flags | flags, Info: info, Data: c.pending}
	ch.Sign(c.key)
	c.total += uint64(len(c.pending))
	c.id.Index++
	if flags&(proto.FlagPartEnd|proto.FlagLast) != 0 {
		c.partBytes = 0
	}
	// The emitted chunk owns its data from now on (the window and subscribers keep it).
	c.pending = make([]byte, 0, c.size)
	c.emit(ch)
}
