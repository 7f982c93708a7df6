// Package proto is crowdsurf's wire format: the identity of segments and chunks, the signed chunk
// frame, the mesh control messages, the watch link and the tracker's API types. It imports only
// the standard library so that every component, and every other implementation, can share it.
package proto

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// ChunkFrameVersion is the first byte of every chunk frame. A receiver rejects other values, so a
// future frame layout can never be misread as this one.
const ChunkFrameVersion = 1

const (
	// MaxStreamNameLen bounds a stream name; it appears in URLs, keys and every chunk header.
	MaxStreamNameLen = 64
	// MaxChunkData bounds the payload of one chunk. The origin closes chunks at 8 KiB by default; the
	// headroom lets a future origin use larger chunks without a new frame version.
	MaxChunkData = 64 << 10
	// MaxChunksPerSegment bounds a segment's chunk count (a 2 s segment at 16 KiB a chunk holds
	// 4096 chunks at 256 Mbit/s, far beyond any live stream we carry).
	MaxChunksPerSegment = 1 << 16
	// MaxChunkHeader is the longest frame header, everything before the data: a chunk of
	// MaxChunkHeader+n bytes or less frames n bytes of data whatever its stream and flags.
	MaxChunkHeader = chunkFixedLen + MaxStreamNameLen + segmentInfoLen
	// MaxChunkFrame is the largest chunk frame a parser accepts.
	MaxChunkFrame = MaxChunkHeader + MaxChunkData
)

const (
	// version, flags, stream length, seq, index, sha256, signature, data length
	chunkFixedLen  = 1 + 1 + 1 + 8 + 4 + sha256.Size + SignatureSize + 4
	segmentInfoLen = 4 + 8 + 8 + 8
	// maxSegmentDuration rejects nonsense durations; live segments last seconds.
	maxSegmentDuration = time.Hour
)

// Flags describe a chunk's place in its segment. They are covered by the signature.
type Flags uint8

const (
	// FlagLast marks the last chunk of a segment; only it carries SegmentInfo.
	FlagLast Flags = 1 << 0
	// FlagDiscontinuity marks every chunk of a segment that starts a new timeline (a publisher
	// reconnected), so a peer's playlist can carry EXT-X-DISCONTINUITY exactly where the origin's does.
	FlagDiscontinuity Flags = 1 << 1
	// FlagEnd marks the last chunk of the last segment of a publishing session: the publisher
	// stopped and the stream has ended (until a new session continues it after a discontinuity).
	// It is valid only together with FlagLast. Being a flag, the signature covers it, so the end
	// of a stream travels wherever chunks do (pushes, repairs, the CDN) and no neighbour can
	// end a stream, or hide its end, without the origin's key.
	FlagEnd Flags = 1 << 2
	// FlagPartEnd marks a chunk whose data ends an LL-HLS part (a partial segment). The origin
	// ends parts at access-unit boundaries, so a part is a whole number of chunks and every node
	// derives the same fMP4 part from the same signed TS bytes. The last chunk of a segment ends
	// its last part whether or not it carries this flag. Signed like every flag, so no neighbour
	// can move a part boundary.
	FlagPartEnd Flags = 1 << 3

	knownFlags = FlagLast | FlagDiscontinuity | FlagEnd | FlagPartEnd
)

// ChunkID names a chunk: the stream, the segment's HLS media sequence number and the chunk's index
// inside the segment.
type ChunkID struct {
	Stream string
	Seq    uint64
	Index  uint32
}

// String writes the ID as stream/seq/index, the form logs and errors use.
func (id ChunkID) String() string { return fmt.Sprintf("%s/%d/%d", id.Stream, id.Seq, id.Index) }

// SegmentInfo describes a whole segment. It travels on the segment's last chunk, so a receiver
// knows the segment is complete once it holds chunks 0..ChunkCount-1.
type SegmentInfo struct {
	ChunkCount      uint32
	ByteLength      uint64
	Duration        time.Duration // encoded in microseconds
	ProgramDateTime time.Time     // encoded in Unix microseconds, UTC
}

// Chunk is one signed piece of a segment, as it travels through the mesh and over HTTP.
type Chunk struct {
	ID    ChunkID
	Flags Flags
	Info  SegmentInfo // meaningful only when Flags has FlagLast
	Hash  [sha256.Size]byte
	Sig   [SignatureSize]byte
	Data  []byte

	// frame is the encoded frame the chunk was parsed from (ParseChunk, ReadChunk) or encoded
	// into once (Sign), with Data aliasing its tail: one buffer per chunk from the read to every
	// push and HTTP response, never re-encoded. Frame checks it still matches the fields.
	frame []byte
}

// Last reports whether c is the last chunk of its segment.
func (c *Chunk) Last() bool { return c.Flags&FlagLast != 0 }

// End reports whether c ends the stream: it is the last chunk of a session's last segment.
func (c *Chunk) End() bool { return c.Flags&FlagEnd != 0 }

// PartEnd reports whether c ends an LL-HLS part: it carries FlagPartEnd or is its segment's last
// chunk.
func (c *Chunk) PartEnd() bool { return c.Flags&(FlagPartEnd|FlagLast) != 0 }

// Len is the encoded size of the frame.
func (c *Chunk) Len() int {
	n := chunkFixedLen + len(c.ID.Stream) + len(c.Data)
	if c.Last() {
		n += segmentInfoLen
	}
	return n
}

// appendSigned appends the part of the frame that the signature covers: everything but the
// signature, the data length and the data itself (the data is covered through its hash).
func (c *Chunk) appendSigned(b []byte) []byte {
	b = append(b, ChunkFrameVersion, byte(c.Flags), byte(len(c.ID.Stream)))
	b = append(b, c.ID.Stream...)
	b = binary.BigEndian.AppendUint64(b, c.ID.Seq)
	b = binary.BigEndian.AppendUint32(b, c.ID.Index)
	if c.Last() {
		b = binary.BigEndian.AppendUint32(b, c.Info.ChunkCount)
		b = binary.BigEndian.AppendUint64(b, c.Info.ByteLength)
		b = binary.BigEndian.AppendUint64(b, uint64(c.Info.Duration/time.Microsecond))
		b = binary.BigEndian.AppendUint64(b, uint64(c.Info.ProgramDateTime.UnixMicro()))
	}
	return append(b, c.Hash[:]...)
}

// Append appends the encoded frame to b. The chunk must be valid (Verify or ParseChunk accepted
// it, or Sign was given a valid ID): a stream name longer than 255 bytes does not fit its length
// byte. Durations and date-times are encoded in whole microseconds.
func (c *Chunk) Append(b []byte) []byte {
	b = c.appendSigned(b)
	b = append(b, c.Sig[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Data)))
	return append(b, c.Data...)
}

// headerLen is the length of the frame before the data.
func (c *Chunk) headerLen() int { return c.Len() - len(c.Data) }

// Frame returns the encoded frame, the bytes Append would append. A chunk that ParseChunk or
// ReadChunk decoded, or that Sign signed, returns the one buffer it holds, without encoding or
// copying: it is shared with every other reader of the chunk (pushes to each child, HTTP
// responses), so nobody may modify it. A chunk whose fields changed since (tests that forge
// chunks do) no longer matches that buffer and is encoded anew, so the result is always the
// encoding of the fields as they are now.
func (c *Chunk) Frame() []byte {
	if c.frameMatches() {
		return c.frame
	}
	return c.Append(make([]byte, 0, c.Len()))
}

// frameMatches reports whether c.frame is the encoding of c's fields: Data is the frame's tail
// (the same memory, so data changed in place changed the frame too) and the header re-encodes
// to the frame's head. The header is some 200 bytes against kilobytes of data, so the check
// costs a small fraction of the copy it saves.
func (c *Chunk) frameMatches() bool {
	n := c.Len()
	if len(c.frame) != n {
		return false
	}
	h := n - len(c.Data)
	if len(c.Data) > 0 && &c.frame[h] != &c.Data[0] {
		return false
	}
	var head [MaxChunkHeader]byte
	enc := c.appendSigned(head[:0])
	enc = append(enc, c.Sig[:]...)
	enc = binary.BigEndian.AppendUint32(enc, uint32(len(c.Data)))
	return bytes.Equal(enc, c.frame[:h])
}

// encodeFrame encodes c into one new buffer and points Data at its tail, so the chunk's bytes
// exist once and Frame never encodes again.
func (c *Chunk) encodeFrame() {
	c.frame = c.Append(make([]byte, 0, c.Len()))
	c.Data = c.frame[c.headerLen():len(c.frame):len(c.frame)]
}

// ParseChunk decodes one chunk frame from the start of b and returns it with the number of bytes
// it used. It checks structure only; call Verify before trusting the chunk. Data aliases b, and
// so does the chunk's Frame: b must not change while the chunk is in use.
//
// Errors: io.ErrUnexpectedEOF when b holds only the start of a frame (the frame has no outer
// length, so a cut anywhere reads as end of input); ErrUnsupportedVersion for a version other than
// ChunkFrameVersion; ErrTooLarge for a data length over MaxChunkData, before anything is read or
// allocated for it; ErrMalformed or ErrBadStreamName for unknown flags or impossible fields. Every
// frame ParseChunk accepts re-encodes with Append to exactly the bytes it consumed.
func ParseChunk(b []byte) (*Chunk, int, error) {
	r := reader{b: b}
	version := r.u8()
	flags := Flags(r.u8())
	streamLen := int(r.u8())
	if r.err != nil {
		return nil, 0, r.err
	}
	if version != ChunkFrameVersion {
		return nil, 0, fmt.Errorf("%w: chunk frame version %d", ErrUnsupportedVersion, version)
	}
	if flags&^knownFlags != 0 {
		return nil, 0, fmt.Errorf("%w: unknown chunk flags %#x", ErrMalformed, uint8(flags))
	}
	c := &Chunk{Flags: flags}
	c.ID.Stream = string(r.bytes(streamLen))
	c.ID.Seq = r.u64()
	c.ID.Index = r.u32()
	if c.Last() {
		c.Info.ChunkCount = r.u32()
		c.Info.ByteLength = r.u64()
		durationMicros := r.u64()
		// Checked before the multiplication, which could otherwise wrap into a small valid value
		// that encodes differently (and that the signature never covered).
		if durationMicros > uint64(maxSegmentDuration/time.Microsecond) {
			return nil, 0, fmt.Errorf("%w: segment duration of %d µs", ErrMalformed, durationMicros)
		}
		c.Info.Duration = time.Duration(durationMicros) * time.Microsecond
		c.Info.ProgramDateTime = time.UnixMicro(int64(r.u64())).UTC()
	}
	copy(c.Hash[:], r.bytes(sha256.Size))
	copy(c.Sig[:], r.bytes(SignatureSize))
	dataLen := r.u32()
	if r.err != nil {
		return nil, 0, r.err
	}
	if dataLen > MaxChunkData {
		return nil, 0, fmt.Errorf("%w: chunk data of %d bytes exceeds %d", ErrTooLarge, dataLen, MaxChunkData)
	}
	c.Data = r.bytes(int(dataLen))
	if r.err != nil {
		return nil, 0, r.err
	}
	if err := c.checkFields(); err != nil {
		return nil, 0, err
	}
	c.frame = b[:r.off:r.off]
	return c, r.off, nil
}

// checkFields rejects frames that are well-formed bytes but nonsense, before anyone stores them.
func (c *Chunk) checkFields() error {
	if err := ValidStreamName(c.ID.Stream); err != nil {
		return err
	}
	if c.ID.Index >= MaxChunksPerSegment {
		return fmt.Errorf("%w: chunk index %d", ErrMalformed, c.ID.Index)
	}
	if c.End() && !c.Last() {
		return fmt.Errorf("%w: end of stream on chunk %d, which is not the last of its segment", ErrMalformed, c.ID.Index)
	}
	if c.Last() {
		if c.Info.ChunkCount != c.ID.Index+1 {
			return fmt.Errorf("%w: last chunk %d but segment has %d chunks", ErrMalformed, c.ID.Index, c.Info.ChunkCount)
		}
		if c.Info.ByteLength > uint64(c.Info.ChunkCount)*MaxChunkData {
			return fmt.Errorf("%w: segment length %d too large for %d chunks", ErrMalformed, c.Info.ByteLength, c.Info.ChunkCount)
		}
		if c.Info.Duration < 0 || c.Info.Duration > maxSegmentDuration {
			return fmt.Errorf("%w: segment duration %v", ErrMalformed, c.Info.Duration)
		}
	}
	return nil
}

// reader is a bounds-checked cursor; after the first short read every accessor returns zero and
// err stays io.ErrUnexpectedEOF, so parsers check once at the end of a group of reads.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = io.ErrUnexpectedEOF
		return nil
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s
}

func (r *reader) bytes(n int) []byte { return r.take(n) }

func (r *reader) u8() uint8 {
	if s := r.take(1); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if s := r.take(2); s != nil {
		return binary.BigEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.take(4); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if s := r.take(8); s != nil {
		return binary.BigEndian.Uint64(s)
	}
	return 0
}
