package peer

import (
	"math"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Each neighbour's fair share of the repair budget. One budget (repairLimit) answers every
// neighbour's REQUESTs, first come first served: a neighbour that asked once for every chunk in
// the window took the burst and a second of queued budget (deferred.go), and every other
// neighbour's request was refused and went to the CDN; reconnecting under a new peer id it did
// so again. One hostile neighbour turned a peer's repair service off for everybody.
//
// The rule: what each neighbour was given, answered at once or queued, is counted over about
// the last second (repairUsed, decaying with time constant shareWindow). Neighbours that sent a
// REQUEST within shareWindow are the askers. While there is more than one, a neighbour that
// already used more than its share, what the budget gives in shareWindow divided among the
// askers (at least minRepairShare), is refused (a CANCEL, as for a request over the budget) and
// its queued requests over its share are taken back, newest first, when another asker's
// request finds the budget spent. A lone asker has no share to keep to: a joiner fetching its
// start from a holder nobody else asks uses the whole budget, as before. The share only moves
// budget between askers, it spends none: when one asks far more than the rest, the rest are
// answered out of what it would have taken.
//
// State: two fields on each neighbour (it goes with the neighbour); the askers are counted over
// the neighbours, a bounded set.

// shareWindow is how long a neighbour's repair counts against its share, and how long after
// its last REQUEST it counts as an asker.
const shareWindow = time.Second

// minRepairShare is the least share: a chunk at the usual size, so that among many askers each
// still gets one.
const minRepairShare = repairBurst / 4

// repairUsed is the repair bytes nb was given over about the last shareWindow: each charge
// decays by e every shareWindow.
func (nb *neighbour) repairUsed(now time.Time) float64 {
	if nb.repairBytes == 0 {
		return 0
	}
	if dt := now.Sub(nb.repairAt); dt > 0 {
		nb.repairBytes *= math.Exp(-float64(dt) / float64(shareWindow))
		nb.repairAt = now
	}
	return nb.repairBytes
}

// chargeRepair counts n bytes (negative: given back) against nb's share.
func (nb *neighbour) chargeRepair(now time.Time, n int) {
	nb.repairBytes = max(nb.repairUsed(now)+float64(n), 0)
	nb.repairAt = now
}

// repairShare is a neighbour's share of the repair budget in bytes over shareWindow, and
// whether it applies (more than one asker).
func (l *loop) repairShare() (float64, bool) {
	askers := 0
	for _, nb := range l.nbs {
		if !nb.askedAt.IsZero() && l.now.Sub(nb.askedAt) < shareWindow {
			askers++
		}
	}
	if askers < 2 {
		return 0, false
	}
	budget := float64(l.repairLimit.Limit())*shareWindow.Seconds() + float64(l.repairLimit.Burst())
	return max(budget/float64(askers), minRepairShare), true
}

// overShare says whether nb (about to be answered) already used more than its share.
func (l *loop) overShare(nb *neighbour) bool {
	share, ok := l.repairShare()
	return ok && nb.repairUsed(l.now) > share
}

// reclaimShares takes back queued requests of neighbours over their share, the newest first (a
// reservation gives back only what no later one reserved after it), and refuses them: the budget
// they held goes to the asker under its share that found it spent. It says whether it took any.
func (l *loop) reclaimShares() bool {
	share, ok := l.repairShare()
	if !ok {
		return false
	}
	took := false
	for i := len(l.deferred) - 1; i >= 0; i-- {
		if l.deferred[i].nb.repairUsed(l.now) <= share {
			continue
		}
		d := l.unqueueRepair(i)
		l.n.stats.requestsOverShare.Add(1)
		l.refuseRequest(d.nb, &proto.Request{Seq: d.c.ID.Seq, Index: d.c.ID.Index})
		took = true
	}
	return took
}

// answerRequest answers nb's REQUEST for c out of the repair budget: at once, queued for the
// budget (deferRepair), or refused when over the budget or over nb's share of it.
func (l *loop) answerRequest(nb *neighbour, c *proto.Chunk) {
	nb.askedAt = l.now
	req := &proto.Request{Seq: c.ID.Seq, Index: c.ID.Index}
	if l.overShare(nb) {
		l.n.stats.requestsOverShare.Add(1)
		l.refuseRequest(nb, req)
		return
	}
	allowed := l.repairLimit.AllowN(l.now, c.Len())
	if !allowed && l.reclaimShares() {
		allowed = l.repairLimit.AllowN(l.now, c.Len())
	}
	if !allowed {
		if !l.deferRepair(nb, c) {
			l.refuseRequest(nb, req)
		}
		return
	}
	nb.chargeRepair(l.now, c.Len())
	if nb.push(c) {
		nb.has.add(chunkKey{c.ID.Seq, c.ID.Index})
		l.n.stats.requestsServed.Add(1)
	}
}
