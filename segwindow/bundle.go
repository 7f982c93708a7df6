package segwindow

import (
	"fmt"

	"github.com/crowdsurf/crowdsurf/proto"
)

// ParseBundle decodes a segment's bundle (AllChunks, as Window.ChunkFrames writes it): the frames of
// chunks 0..N-1 of stream/seq back to back, the last one flagged last, nothing after it. It
// checks structure only; verify every chunk before trusting it. Errors wrap proto's (ErrMalformed
// for a chunk out of place or bytes after the last, io.ErrUnexpectedEOF for a cut bundle).
func ParseBundle(b []byte, stream string, seq uint64) ([]*proto.Chunk, error) {
	var out []*proto.Chunk
	for i := uint32(0); len(b) > 0; i++ {
		c, used, err := proto.ParseChunk(b)
		if err != nil {
			return nil, fmt.Errorf("bundle %s/%d, chunk %d: %w", stream, seq, i, err)
		}
		if c.ID.Stream != stream || c.ID.Seq != seq || c.ID.Index != i {
			return nil, fmt.Errorf("bundle %s/%d: %w: chunk %s at position %d", stream, seq, proto.ErrMalformed, c.ID, i)
		}
		out = append(out, c)
		b = b[used:]
		if c.Last() {
			if len(b) > 0 {
				return nil, fmt.Errorf("bundle %s/%d: %w: %d bytes after the last chunk", stream, seq, proto.ErrMalformed, len(b))
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("bundle %s/%d: %w: no last chunk", stream, seq, proto.ErrMalformed)
}

// ParseSlice decodes a slice of a segment's bundle (Slice, as Window.SliceBuffers serves it):
// the frames of chunks s.Index, s.Index+s.Count, ... of stream/seq back to back, nothing after
// the segment's last chunk. It may be empty (a segment of fewer chunks), and it need not end with
// the last chunk (the slice may not hold it). It checks structure only; verify every chunk
// before trusting it.
func ParseSlice(b []byte, stream string, seq uint64, s Slice) ([]*proto.Chunk, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("slice %d of %d: %w", s.Index, s.Count, proto.ErrMalformed)
	}
	var out []*proto.Chunk
	for want := uint64(s.Index); len(b) > 0; want += uint64(s.Count) {
		c, used, err := proto.ParseChunk(b)
		if err != nil {
			return nil, fmt.Errorf("slice %s/%d/%s, chunk %d: %w", stream, seq, s.File(), want, err)
		}
		if c.ID.Stream != stream || c.ID.Seq != seq || uint64(c.ID.Index) != want {
			return nil, fmt.Errorf("slice %s/%d/%s: %w: chunk %s where %d belongs", stream, seq, s.File(), proto.ErrMalformed, c.ID, want)
		}
		out = append(out, c)
		b = b[used:]
		if c.Last() && len(b) > 0 {
			return nil, fmt.Errorf("slice %s/%d/%s: %w: %d bytes after the last chunk", stream, seq, s.File(), proto.ErrMalformed, len(b))
		}
	}
	return out, nil
}
