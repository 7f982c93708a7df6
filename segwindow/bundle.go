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
