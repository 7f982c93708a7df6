package peer

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// shareLoop is deferLoop with a budget of four chunks of size bytes a second (one at once),
// holding chunks 0..19 of segment 7, and the neighbours nbs.
func shareLoop(t0 time.Time, size int, nbs ...*neighbour) *loop {
	l := deferLoop(4*deferChunk(0, size).Len(), size, t0)
	l.n.window = segwindow.New(segwindow.Config{Stream: testStream})
	for i := range uint32(20) {
		l.n.window.AddChunk(deferChunk(i, size))
	}
	l.nbs = make(map[uint64]*neighbour)
	for i, nb := range nbs {
		nb.id = uint64(i + 1)
		l.nbs[nb.id] = nb
	}
	return l
}

// runQueue answers the queued requests as their budget comes, over the next two seconds, and
// returns what was pushed to nb meanwhile.
func runQueue(l *loop, nb *neighbour) []uint32 {
	var got []uint32
	t0 := l.now
	for step := range 20 {
		l.now = t0.Add(time.Duration(step+1) * 100 * time.Millisecond)
		l.sendDeferredRepairs()
		got = append(got, pushed(nb)...)
	}
	return got
}

// TestOneNeighbourCannotTakeTheWholeRepairBudget: a neighbour that asks for every chunk in the
// window while another asks for two does not take the budget from it: the honest requests are
// answered (within a second), the hostile's queued requests over its share are taken back and
// its further requests refused. Before, the first come took the burst and a second of queued
// budget, and every other neighbour's request was refused and went to the CDN.
func TestOneNeighbourCannotTakeTheWholeRepairBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const size = 8000 // five chunks a second, budget and burst: a share of two and a half among two
	hostile, honest := deferNeighbour(), deferNeighbour()
	l := shareLoop(t0, size, hostile, honest)
	for i := range uint32(20) {
		l.onMessage(hostile, &proto.Request{Seq: 7, Index: i})
	}
	require.Equal(t, []uint32{0}, pushed(hostile), "the burst")
	require.Len(t, l.deferred, 4, "a second of the budget queued")

	l.now = t0.Add(10 * time.Millisecond)
	l.onMessage(honest, &proto.Request{Seq: 7, Index: 18})
	l.onMessage(honest, &proto.Request{Seq: 7, Index: 19})
	for i := range uint32(18) {
		l.onMessage(hostile, &proto.Request{Seq: 7, Index: i}) // and again
	}
	got := runQueue(l, honest)
	require.Equal(t, []uint32{18, 19}, got, "the honest neighbour's requests were refused (%+v)", l.n.stats.requestsRefused.Load())
	// It kept the queued request within its share, and one more: asked again, the chunks taken
	// back found it just under its share (the rule refuses a neighbour that already used more).
	require.Equal(t, []uint32{1, 2}, runQueue(l, hostile))
	require.Positive(t, l.n.stats.requestsOverShare.Load())
}

// TestALoneAskerGetsTheWholeRepairBudget: the share binds only among askers. A neighbour nobody
// else competes with (a joiner fetching its start from a holder), other neighbours connected
// but not asking, gets the burst and a second of queued budget as before; and once it stopped
// asking for a while, what it was given no longer counts against it.
func TestALoneAskerGetsTheWholeRepairBudget(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const size = 8000
	joiner, quiet := deferNeighbour(), deferNeighbour()
	l := shareLoop(t0, size, joiner, quiet)
	for i := range uint32(20) {
		l.onMessage(joiner, &proto.Request{Seq: 7, Index: i})
	}
	require.Equal(t, []uint32{0}, pushed(joiner))
	require.Equal(t, []uint32{1, 2, 3, 4}, runQueue(l, joiner))
	require.Zero(t, l.n.stats.requestsOverShare.Load())

	// Another asker comes after the joiner's second: the joiner's bytes have decayed, and both
	// are answered out of the budget.
	l.now = l.now.Add(3 * shareWindow)
	l.onMessage(quiet, &proto.Request{Seq: 7, Index: 10})
	l.onMessage(joiner, &proto.Request{Seq: 7, Index: 11})
	got := append(pushed(quiet), runQueue(l, quiet)...)
	require.Equal(t, []uint32{10}, got)
	got = append(pushed(joiner), runQueue(l, joiner)...)
	require.Equal(t, []uint32{11}, got)
	require.Zero(t, l.n.stats.requestsOverShare.Load())
}
