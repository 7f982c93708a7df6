package peer

import (
	"io"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// chunkFrame is what a push sends to each child (pushChunk).
func chunkFrame(c *proto.Chunk) []byte { return c.Frame() }

// writeSegment is what the local HLS server writes for a segment (segwindow.Server).
func writeSegment(w io.Writer, win *segwindow.Window, seq uint64) {
	parts, _, _ := win.SegmentBuffers(seq)
	for _, p := range parts {
		_, _ = w.Write(p)
	}
}
