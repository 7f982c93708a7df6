package loadtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEmitBookForgetsOldSegmentsWhereverSequencesStart(t *testing.T) {
	b := newEmitBook()
	start := uint64(17_640_000_000) // an origin's clock-derived first sequence number
	at := time.Now()
	for seq := start; seq < start+500; seq++ {
		for i := range uint32(3) {
			b.record(seq, i, at.Add(time.Duration(seq-start)*time.Second))
		}
	}
	require.LessOrEqual(t, len(b.times), 2*emitBookSegments+1)
	got, ok := b.lookup(start+499, 2)
	require.True(t, ok)
	require.Equal(t, at.Add(499*time.Second), got)
	_, ok = b.lookup(start, 0)
	require.False(t, ok, "old segments are forgotten")
	_, ok = b.lookup(start+499, 3)
	require.False(t, ok, "unknown index")
	require.Equal(t, int64(1500), b.chunks())
}
