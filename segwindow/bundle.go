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
	name := fmt.Sprintf("bundle %s/%d", stream, seq)
	chunks, last, err := parseFrames(b, stream, seq, wholeSegment, name)
	if err != nil {
		return nil, err
	}
	if !last {
		return nil, fmt.Errorf("%s: %w: no last chunk", name, proto.ErrMalformed)
	}
	return chunks, nil
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
	chunks, _, err := parseFrames(b, stream, seq, s, fmt.Sprintf("slice %s/%d/%s", stream, seq, s.File()))
	return chunks, err
}

// parseFrames reads the frames of slice s of stream/seq back to back until b ends, and says
// whether the last of them is the segment's last chunk; nothing may follow that one. name
// starts its errors.
func parseFrames(b []byte, stream string, seq uint64, s Slice, name string) ([]*proto.Chunk, bool, error) {
	var out []*proto.Chunk
	for want := uint64(s.Index); len(b) > 0; want += uint64(s.Count) {
		c, used, err := proto.ParseChunk(b)
		if err != nil {
			return nil, false, fmt.Errorf("%s, chunk %d: %w", name, want, err)
		}
		if c.ID.Stream != stream || c.ID.Seq != seq || uint64(c.ID.Index) != want {
			return nil, false, fmt.Errorf("%s: %w: chunk %s where %d belongs", name, proto.ErrMalformed, c.ID, want)
		}
		out = append(out, c)
		b = b[used:]
		if c.Last() {
			if len(b) > 0 {
				return nil, false, fmt.Errorf("%s: %w: %d bytes after the last chunk", name, proto.ErrMalformed, len(b))
			}
			return out, true, nil
		}
	}
	return out, false, nil
}
