package simnet

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRateLinkSerialisesAndDropsAtTheTail(t *testing.T) {
	// 8 Mbit/s: one byte per microsecond, so times are easy to read.
	l := rateLink{rate: 8_000_000, buffer: 3000}

	at, ok := l.depart(0, 1000)
	require.True(t, ok)
	require.Equal(t, int64(1_000_000), at, "1000 bytes take 1 ms")

	at, ok = l.depart(0, 1000)
	require.True(t, ok)
	require.Equal(t, int64(2_000_000), at, "the second packet waits behind the first")

	at, ok = l.depart(0, 1000)
	require.True(t, ok)
	require.Equal(t, int64(3_000_000), at)

	_, ok = l.depart(0, 1)
	require.False(t, ok, "3000 bytes queued fill the buffer")

	at, ok = l.depart(500_000, 500)
	require.True(t, ok, "half a packet has drained by 0.5 ms")
	require.Equal(t, int64(3_500_000), at)

	at, ok = l.depart(10_000_000, 1000)
	require.True(t, ok)
	require.Equal(t, int64(11_000_000), at, "an idle link starts sending at once")
}

func TestUnlimitedRateLinkNeverDelaysOrDrops(t *testing.T) {
	l := rateLink{buffer: 1}
	for i := range 100 {
		at, ok := l.depart(int64(i), 1500)
		require.True(t, ok)
		require.Equal(t, int64(i), at)
	}
}

func TestEventHeapPopsInTimeThenSendOrder(t *testing.T) {
	var h eventHeap
	rng := rand.New(rand.NewPCG(1, 2))
	for seq := range uint64(1000) {
		h.push(event{at: rng.Int64N(50), seq: seq})
	}
	prev := h.pop()
	for len(h) > 0 {
		ev := h.pop()
		require.True(t, prev.at < ev.at || prev.at == ev.at && prev.seq < ev.seq,
			"popped (%d,%d) after (%d,%d)", ev.at, ev.seq, prev.at, prev.seq)
		prev = ev
	}
}

func TestPacketQueueIsFIFOAcrossCompaction(t *testing.T) {
	var q packetQueue
	next, want := 0, 0
	for round := range 50 {
		for range 10 + round%7 {
			q.push(&packet{data: make([]byte, next%5+1)})
			next++
		}
		for range 8 {
			p := q.pop()
			require.Len(t, p.data, want%5+1)
			want++
		}
	}
	for q.len() > 0 {
		require.Len(t, q.pop().data, want%5+1)
		want++
	}
	require.Equal(t, next, want)
	require.Zero(t, q.bytes)
}
