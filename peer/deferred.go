package peer

import (
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Repairs the budget affords soon wait for it. A REQUEST over the repair budget used to be
// refused at once (a CANCEL): in a crowd arriving together every holder's budget is spent within
// moments, so every start chunk asked of a fellow joiner bounced to the CDN, however long the
// joiner was willing to wait for its start (Config.StartNeighbourWait). Now, at a peer that
// leaves its own start to the swarm, a request for a start chunk the budget covers within
// maxRepairDelay is queued and answered when it does (deferRepair): the holder's uplink then
// carries what the asker waits for instead of the origin's. The asker bounds its own wait (its
// REQUEST's timeout) and sends a CANCEL when it stops waiting or got the chunk elsewhere; the
// CANCEL takes the request out of the queue and gives its budget back (when no later request
// reserved budget after it: the limiter returns what it can).

// maxRepairDelay is the longest a queued repair may wait for the budget: about the start waits
// operators use (0.3-1 s), and short against a segment, so a queued repair is still wanted.
const maxRepairDelay = time.Second

// maxDeferredRepairs bounds the queue; the budget bounds it too (a second of repair bytes).
const maxDeferredRepairs = 256

type deferredRepair struct {
	nb  *neighbour
	c   *proto.Chunk
	due time.Time
	res *rate.Reservation
}

// deferRepair queues nb's request for c when the repair budget covers it within maxRepairDelay,
// and says whether it did. Only chunks of segments before the newest wait: a joiner's start,
// which is what a crowd asks of one another (complete at the origin, though a fellow joiner may
// hold a slice of it). A gap in the segment in progress is refused at once as before: its asker
// has the tree, other holders and the CDN. And only a peer that leaves its own start to the
// swarm (Config.StartNeighbourWait) queues: the askers of a node without it fetch their start
// from the CDN 300 ms on anyway, and in the load test's 200-peer crowd on two cores, at the edge
// of the machine's CPU, the queued answers arriving after the CDN's were only more packets.
func (l *loop) deferRepair(nb *neighbour, c *proto.Chunk) bool {
	if l.cfg.StartNeighbourWait <= 0 || len(l.deferred) >= maxDeferredRepairs || !l.timeline.known ||
		c.ID.Seq >= l.timeline.newest {
		return false
	}
	res := l.repairLimit.ReserveN(l.now, c.Len())
	if !res.OK() {
		return false
	}
	delay := res.DelayFrom(l.now)
	if delay > maxRepairDelay {
		res.CancelAt(l.now)
		return false
	}
	l.deferred = append(l.deferred, deferredRepair{nb: nb, c: c, due: l.now.Add(delay), res: res})
	nb.chargeRepair(l.now, c.Len()) // a queued request counts against nb's share (repairshare.go)
	l.n.stats.requestsDeferred.Add(1)
	return true
}

// sendDeferredRepairs answers the queued requests whose budget has come, in the order they came
// (reservations are granted in order, so the queue is sorted by due time).
func (l *loop) sendDeferredRepairs() {
	sent := 0
	for _, d := range l.deferred {
		if d.due.After(l.now) {
			break
		}
		sent++
		key := chunkKey{d.c.ID.Seq, d.c.ID.Index}
		if d.nb.gone || d.nb.has.has(key) {
			continue // gone, or it got the chunk meanwhile (and told us, or we pushed it)
		}
		if d.nb.push(d.c) {
			d.nb.has.add(key)
			l.n.stats.requestsServed.Add(1)
		}
	}
	l.deferred = slices.Delete(l.deferred, 0, sent) // clears the tail: no departed neighbour stays pinned
}

// dropDeferredRepairs takes a departed neighbour's queued requests back and gives their budget
// back, the newest first (a reservation gives back only what no later one reserved after it).
// Left in the queue they kept their budget until they came due and were skipped: a peer that
// asked for a second of it and hung up had every other request in that second refused.
func (l *loop) dropDeferredRepairs(nb *neighbour) {
	for i := len(l.deferred) - 1; i >= 0; i-- {
		if l.deferred[i].nb == nb {
			l.unqueueRepair(i)
		}
	}
}

// unqueueRepair takes request i out of the queue: its reservation is cancelled (the budget comes
// back if no later one reserved after it) and its bytes no longer count against its asker's
// share. It returns the request.
func (l *loop) unqueueRepair(i int) deferredRepair {
	d := l.deferred[i]
	d.res.CancelAt(l.now)
	d.nb.chargeRepair(l.now, -d.c.Len())
	l.deferred = slices.Delete(l.deferred, i, i+1)
	return d
}

// queuedRepair is the place in the queue of nb's request for key, or -1.
func (l *loop) queuedRepair(nb *neighbour, key chunkKey) int {
	return slices.IndexFunc(l.deferred, func(d deferredRepair) bool {
		return d.nb == nb && d.c.ID.Seq == key.seq && d.c.ID.Index == key.index
	})
}

// cancelDeferredRepair drops nb's queued request for key (its CANCEL: it stopped waiting) and
// gives its budget back, and its share.
func (l *loop) cancelDeferredRepair(nb *neighbour, key chunkKey) {
	if i := l.queuedRepair(nb, key); i >= 0 {
		l.unqueueRepair(i)
	}
}
