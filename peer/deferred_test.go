package peer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// deferLoop is a loop with just what repair answering needs: a repair budget of bps bytes/s
// with a burst of one chunk of size bytes, the clock at t0, and segment 8 the newest known (the
// one in progress).
func deferLoop(bps int, size int, t0 time.Time) *loop {
	l := &loop{n: &Node{}, now: t0, timeline: timeline{known: true, newest: 8}}
	l.cfg.StartNeighbourWait = time.Second
	l.repairLimit = rate.NewLimiter(rate.Limit(bps), deferChunk(0, size).Len())
	return l
}

func deferChunkOf(seq uint64, index uint32, size int) *proto.Chunk {
	return &proto.Chunk{ID: proto.ChunkID{Stream: testStream, Seq: seq, Index: index}, Data: make([]byte, size)}
}

func deferChunk(index uint32, size int) *proto.Chunk { return deferChunkOf(7, index, size) }

func deferNeighbour() *neighbour {
	return &neighbour{has: newChunkSet(), pushQueue: make(chan queuedPush, 16), cancelled: make(map[chunkKey]struct{})}
}

// pushed lists the indexes queued to nb so far.
func pushed(nb *neighbour) []uint32 {
	var out []uint32
	for {
		select {
		case q := <-nb.pushQueue:
			out = append(out, q.c.ID.Index)
		default:
			return out
		}
	}
}

// TestRequestsOverTheBudgetWaitForIt: requests the repair budget covers within maxRepairDelay
// are queued and answered in order as the budget allows, not refused; the rest are refused.
func TestRequestsOverTheBudgetWaitForIt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const size = 1000
	c0 := deferChunk(0, size)
	l := deferLoop(4*c0.Len(), size, t0) // four chunks a second, one at once
	nb := deferNeighbour()
	var refused int
	for i := range uint32(8) {
		c := deferChunk(i, size)
		if l.repairLimit.AllowN(l.now, c.Len()) {
			require.True(t, nb.push(c))
			continue
		}
		if !l.deferRepair(nb, c) {
			refused++
		}
	}
	// One went at once, four more fit the next second, three would wait longer: refused.
	require.Equal(t, []uint32{0}, pushed(nb))
	require.Len(t, l.deferred, 4)
	require.Equal(t, 3, refused)
	var got []uint32
	for step := range 12 {
		l.now = t0.Add(time.Duration(step+1) * 100 * time.Millisecond)
		l.sendDeferredRepairs()
		got = append(got, pushed(nb)...)
		switch step {
		case 1:
			require.Empty(t, got, "at 200 ms: the second chunk's budget comes at 250 ms")
		case 2:
			require.Equal(t, []uint32{1}, got, "at 300 ms")
		}
	}
	require.Equal(t, []uint32{1, 2, 3, 4}, got)
	require.Empty(t, l.deferred)
	require.EqualValues(t, 4, l.n.stats.requestsServed.Load())
}

// TestCancelTakesAQueuedRepairBackAndFreesItsBudget: the asker's CANCEL (it stopped waiting, or
// got the chunk elsewhere) drops its queued request, and the next request gets its budget; a
// neighbour that left or came to hold the chunk is not sent it.
func TestCancelTakesAQueuedRepairBackAndFreesItsBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const size = 1000
	c0 := deferChunk(0, size)
	l := deferLoop(2*c0.Len(), size, t0) // two chunks a second
	require.True(t, l.repairLimit.AllowN(l.now, c0.Len()))
	asker, left, holder := deferNeighbour(), deferNeighbour(), deferNeighbour()
	require.True(t, l.deferRepair(left, deferChunk(1, size)))    // due at 500 ms
	require.True(t, l.deferRepair(asker, deferChunk(2, size)))   // due at 1 s
	require.False(t, l.deferRepair(holder, deferChunk(3, size))) // 1.5 s: refused
	l.cancelDeferredRepair(asker, chunkKey{7, 2})
	require.Len(t, l.deferred, 1)
	// The cancelled request's budget is back (it was the last reserved): another fits.
	require.True(t, l.deferRepair(holder, deferChunk(3, size)))
	left.gone = true
	holder.has.add(chunkKey{7, 3})
	l.now = t0.Add(2 * time.Second)
	l.sendDeferredRepairs()
	require.Empty(t, pushed(asker))
	require.Empty(t, pushed(left), "sent to a neighbour that left")
	require.Empty(t, pushed(holder), "sent a chunk the asker holds")
	require.Empty(t, l.deferred)
}

// TestDeferredRepairsAreBounded: the queue holds at most maxDeferredRepairs requests, however
// large the budget.
func TestDeferredRepairsAreBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := deferChunk(0, 100)
	l := deferLoop(1<<30, 100, t0)
	l.repairLimit.SetBurstAt(t0, c.Len())
	nb := deferNeighbour()
	n := 0
	for range 2 * maxDeferredRepairs {
		if !l.repairLimit.AllowN(l.now, c.Len()) && l.deferRepair(nb, c) {
			n++
		}
	}
	require.LessOrEqual(t, len(l.deferred), maxDeferredRepairs)
	require.Equal(t, len(l.deferred), n)
}

// TestLiveRepairsAreNotDeferred: a request for a chunk of the segment in progress is refused at
// once when the budget is spent; only earlier segments (a joiner's start) wait, and only at a
// node that leaves its own start to the swarm.
func TestLiveRepairsAreNotDeferred(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const size = 1000
	l := deferLoop(4*deferChunk(0, size).Len(), size, t0)
	require.True(t, l.repairLimit.AllowN(l.now, deferChunk(0, size).Len()))
	nb := deferNeighbour()
	require.False(t, l.deferRepair(nb, deferChunkOf(8, 1, size)), "a chunk of the segment in progress")
	require.True(t, l.deferRepair(nb, deferChunk(1, size)), "a chunk of an earlier segment")
	l.cfg.StartNeighbourWait = 0
	require.False(t, l.deferRepair(nb, deferChunk(2, size)), "a node that does not leave its own start to the swarm")
}

// TestCancelsOfOldSegmentsAreForgotten: a CANCEL for a chunk we never push again does not stay
// in the neighbour's (bounded) set once its segment left the window.
func TestCancelsOfOldSegmentsAreForgotten(t *testing.T) {
	nb := deferNeighbour()
	nb.cancel(chunkKey{5, 1})
	nb.cancel(chunkKey{7, 2})
	nb.dropCancelledBelow(6)
	require.False(t, nb.takeCancelled(chunkKey{5, 1}))
	require.True(t, nb.takeCancelled(chunkKey{7, 2}))
}

// TestRequestsFromAFullPushQueueSpendNoBudget: a REQUEST from a neighbour whose push queue is
// full (it stopped taking our chunk streams, or its link is that slow) is refused at once and
// costs the repair budget nothing; the next neighbour's request is served. Before, the budget
// was spent and the push dropped, the chunk not counted as sent: the neighbour could ask for it
// again and again, each time spending the budget every other neighbour's repairs come from.
func TestRequestsFromAFullPushQueueSpendNoBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const size = 1000
	c := deferChunk(0, size)
	l := deferLoop(c.Len(), size, t0) // a chunk a second, one at once
	l.n.window = segwindow.New(segwindow.Config{Stream: testStream})
	l.n.window.AddChunk(c)
	full := deferNeighbour()
	for range cap(full.pushQueue) {
		require.True(t, full.push(deferChunk(1, size)))
	}
	for range 10 {
		l.onMessage(full, &proto.Request{Seq: 7, Index: 0})
	}
	require.EqualValues(t, 10, l.n.stats.requestsRefused.Load())
	require.Empty(t, l.deferred)
	other := deferNeighbour()
	l.onMessage(other, &proto.Request{Seq: 7, Index: 0})
	require.Equal(t, []uint32{0}, pushed(other), "the budget went on pushes that could not be queued")
}

// TestNeighbourCancelsAreBounded: a neighbour's CANCELs are kept for the chunks we may still
// push it, at most maxCancelled of them; those of segments past the live edge are not kept at
// all. Such a CANCEL stayed (dropCancelledBelow forgets only segments that left the window): a
// flood of them filled the set for good, and the neighbour's real CANCELs found no room.
func TestNeighbourCancelsAreBounded(t *testing.T) {
	l := deferLoop(1000, 1000, time.Unix(1000, 0)) // segment 8 the newest
	nb := deferNeighbour()
	for i := range 2 * maxCancelled {
		l.onMessage(nb, &proto.Cancel{Seq: 8, Index: uint32(i)})
	}
	require.Len(t, nb.cancelled, maxCancelled)

	nb = deferNeighbour()
	for i := range maxCancelled {
		l.onMessage(nb, &proto.Cancel{Seq: 8 + haveSeqAhead + 1 + uint64(i), Index: 0})
	}
	require.Zero(t, len(nb.cancelled), "CANCELs of segments past the live edge were kept")
	l.onMessage(nb, &proto.Cancel{Seq: 8 + haveSeqAhead, Index: 1}) // a neighbour nearer the root is ahead of us
	require.True(t, nb.takeCancelled(chunkKey{8 + haveSeqAhead, 1}))
}
