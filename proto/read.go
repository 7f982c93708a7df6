package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ReadMessage reads exactly one control message frame from r (a QUIC control stream) and parses
// it. It returns io.EOF when r ends cleanly between frames and io.ErrUnexpectedEOF when it ends
// inside one; otherwise the errors of ParseMessage. It reads no byte past the frame, so r needs
// no buffering of ours, and it allocates at most the frame's length (never over MaxMessageSize).
func ReadMessage(r io.Reader) (Message, error) {
	var head [messageHeaderLen]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(head[1:]))
	frame := make([]byte, messageHeaderLen+n)
	copy(frame, head[:])
	if _, err := io.ReadFull(r, frame[messageHeaderLen:]); err != nil {
		return nil, noEOF(err)
	}
	m, _, err := ParseMessage(frame)
	return m, err
}

// ReadChunk reads exactly one chunk frame from r (a chunk's own QUIC stream, or an HTTP body) and
// parses it. It returns io.EOF when r is empty and io.ErrUnexpectedEOF when it ends inside the
// frame; otherwise the errors of ParseChunk. A bad version, unknown flags or a data length over
// MaxChunkData are refused before the data is read or allocated. It reads no byte past the frame;
// callers that expect one frame per stream should check that the stream then ends.
// Check the result with Verify before trusting it.
func ReadChunk(r io.Reader) (*Chunk, error) {
	// The header is read into a pooled buffer: its bytes are copied into the frame's own buffer
	// below and never leave this function, so it goes back to the pool on every return.
	head := chunkHeadPool.Get().(*[MaxChunkHeader]byte)
	defer chunkHeadPool.Put(head)
	buf := head[:3]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	version, flags, streamLen := buf[0], Flags(buf[1]), int(buf[2])
	if version != ChunkFrameVersion {
		return nil, fmt.Errorf("%w: chunk frame version %d", ErrUnsupportedVersion, version)
	}
	if flags&^knownFlags != 0 {
		return nil, fmt.Errorf("%w: unknown chunk flags %#x", ErrMalformed, uint8(flags))
	}
	if streamLen > MaxStreamNameLen {
		return nil, fmt.Errorf("%w: stream name of %d bytes", ErrBadStreamName, streamLen)
	}
	headLen := chunkFixedLen + streamLen
	if flags&FlagLast != 0 {
		headLen += segmentInfoLen
	}
	buf = buf[:headLen]
	if _, err := io.ReadFull(r, buf[3:]); err != nil {
		return nil, noEOF(err)
	}
	dataLen := binary.BigEndian.Uint32(buf[headLen-4:])
	if dataLen > MaxChunkData {
		return nil, fmt.Errorf("%w: chunk data of %d bytes exceeds %d", ErrTooLarge, dataLen, MaxChunkData)
	}
	frame := make([]byte, headLen+int(dataLen))
	copy(frame, buf)
	if _, err := io.ReadFull(r, frame[headLen:]); err != nil {
		return nil, noEOF(err)
	}
	c, _, err := ParseChunk(frame)
	return c, err
}

var chunkHeadPool = sync.Pool{New: func() any { return new([MaxChunkHeader]byte) }}

// noEOF turns a clean end of input inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
