package peer

import (
	"sync"

	"github.com/quic-go/quic-go"
)

// creditBatch is how many finished chunk streams of one neighbour wait before their stream
// credit goes back to it in one go.
//
// quic-go by default grants a new stream (a MAX_STREAMS frame) the moment a chunk stream is read
// to its end: one more packet a chunk, sent at once from its own wake-up of the connection, and
// ack-eliciting, so the sender acknowledges it with another packet. On a leaf that was a third of
// the packets it sent. The mesh's connections require the credit to be released
// (RequireStreamCreditRelease), and the chunk readers hand it back creditBatch streams at a
// time, so the grants of a batch leave in one packet, usually beside an ACK.
//
// The batch must never starve a sender: of maxUniStreams, at most creditBatch-1 finished streams
// wait for their release, at most maxChunkReads are being read, and a sender has at most
// pushWorkers in flight, so it always has credit for its next chunk.
const creditBatch = 8

// Compile-time check of the bound above.
var _ = [maxUniStreams - (creditBatch - 1) - maxChunkReads - pushWorkers]struct{}{}

// streamCredit collects a neighbour's finished chunk streams until a batch of them is ready.
type streamCredit struct {
	mu   sync.Mutex
	n    int
	done [creditBatch]*quic.ReceiveStream
}

// release hands a finished (read, cancelled or rejected) chunk stream's credit back, in batches.
func (c *streamCredit) release(s *quic.ReceiveStream) {
	c.mu.Lock()
	c.done[c.n] = s
	c.n++
	if c.n < creditBatch {
		c.mu.Unlock()
		return
	}
	batch := c.done
	c.done, c.n = [creditBatch]*quic.ReceiveStream{}, 0
	c.mu.Unlock()
	for _, s := range batch {
		s.ReleaseStreamCredit()
	}
}
