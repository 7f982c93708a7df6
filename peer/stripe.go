package peer

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Stripes, the push trees: our parent and depth per stripe, the children we feed, subscribing,
// re-subscribing when a parent fails or a clearly better one appears.

func (l *loop) stripeOf(index uint32) int { return int(index) % len(l.stripes) }

// awaitsEvidence says whether a sign that a chunk of seq exists would count against the stripe's
// parent now: it has one, nothing already counts against it, and seq is one the subscription asked
// for (FromSeq on). The first such sign starts the clock maintainStripes judges the parent by.
func (st *stripeState) awaitsEvidence(seq uint64) bool {
	return st.parent != nil && st.undeliveredSince.IsZero() && seq >= st.subFrom
}

// detach leaves a stripe's parent (without telling it: callers that should, do).
func (l *loop) detach(s int) {
	st := l.stripes[s]
	st.parent = nil
	st.depth = proto.NoDepth
	st.undeliveredSince = time.Time{}
	l.statusDirty = true
}

func (l *loop) onStatus(nb *neighbour, m *proto.Status) {
	if len(m.Depths) != len(l.stripes) {
		l.ban(nb, ErrProtocol)
		return
	}
	if err := checkDepthClaim(m.Depths, nb.origin); err != nil {
		l.ban(nb, err)
		return
	}
	nb.depths = append(nb.depths[:0], m.Depths...)
	if int(m.FreeSlots) > max(nb.freeSlots, 0) {
		// A slot came free (a child of it left): whoever it turned away may ask again now,
		// rather than wait out a backoff while orphaned (the root's is several seconds).
		for _, st := range l.stripes {
			delete(st.full, nb.id)
		}
	}
	if m.StripeSlots != nil {
		for s, st := range l.stripes {
			if s < len(nb.stripeSlots) && m.StripeSlots[s] > nb.stripeSlots[s] {
				delete(st.full, nb.id) // room on this stripe again
			}
		}
		nb.stripeSlots = append(nb.stripeSlots[:0], m.StripeSlots...)
	}
	nb.freeSlots = int(m.FreeSlots)
	for s, st := range l.stripes {
		if st.parent != nb {
			continue
		}
		pd := m.Depths[s]
		switch {
		case pd == proto.NoDepth:
			// Our parent lost its own parent. Keep the link (it still forwards what it gets,
			// and it is likely to re-attach within a second) but say we have no depth, so no
			// one below joins us meanwhile and our own children keep their links too. Leaving
			// at once would tear down the whole subtree for every hiccup near the root. We
			// look for an attached parent as if we had none (chooseParent).
			if st.depth != proto.NoDepth {
				st.depth = proto.NoDepth
				l.statusDirty = true
			}
		case st.depth != proto.NoDepth && pd >= st.depth:
			// Our parent moved deeper than us: maybe below us, a cycle.
			nb.send(&proto.Unsubscribe{Stripe: uint8(s)})
			l.detach(s)
		case pd+1 != st.depth:
			st.depth = pd + 1
			l.statusDirty = true
		}
	}
}

func (l *loop) totalChildren() int {
	t := 0
	for _, st := range l.stripes {
		t += len(st.children)
	}
	return t
}

func (l *loop) freeSlots() int {
	if l.cfg.Root {
		free := 0
		for _, st := range l.stripes {
			free += max(0, l.cfg.SeedCopies-len(st.children))
		}
		return free + l.idleSeedSlots()
	}
	return max(0, childSlots(l.cfg.MaxUploadBps, l.bitrate, len(l.stripes))-l.totalChildren())
}

// stripeSlots is how many children we would take on each stripe now (STATUS_SLOTS): none where
// we have no depth; else our free slots, at most what the stripe's cap leaves (the root: its seed
// slots left on the stripe, or one an idle seed child would give up).
func (l *loop) stripeSlots() []uint8 {
	out := make([]uint8, len(l.stripes))
	free, stripeCap := l.freeSlots(), l.stripeCap()
	for s, st := range l.stripes {
		switch {
		case st.depth == proto.NoDepth:
		case l.cfg.Root:
			n := max(0, l.cfg.SeedCopies-len(st.children))
			if n == 0 && l.idleSeedChild(s, netip.Addr{}) != nil {
				n = 1
			}
			out[s] = uint8(min(n, 255))
		default:
			out[s] = uint8(min(free, max(0, stripeCap-len(st.children)), 255))
		}
	}
	return out
}

// statusFor is the STATUS a neighbour gets: with the per-stripe slots if it speaks version 2.
// v1 and v2 are built once per round by the caller and shared.
func statusFor(nb *neighbour, v1, v2 *proto.Status) *proto.Status {
	if nb.version >= 2 {
		return v2
	}
	return v1
}

// candidateSlots is the free slots a neighbour offers on stripe s: what it said per stripe if it
// did, else its free slots over all stripes.
func candidateSlots(nb *neighbour, s int) int {
	if s < len(nb.stripeSlots) {
		return min(nb.freeSlots, int(nb.stripeSlots[s]))
	}
	return nb.freeSlots
}

// stripeCap bounds our children on one stripe to an even share of our slots. Every chunk of a
// stripe goes to all its children at once, so children piled on one stripe would send bursts
// that overflow a modest uplink's queue; spread over the stripes, the same load flows evenly
// (and every stripe tree gets interior nodes).
func (l *loop) stripeCap() int {
	return stripeCap(childSlots(l.cfg.MaxUploadBps, l.bitrate, len(l.stripes)), len(l.stripes))
}

func (l *loop) onSubscribe(nb *neighbour, m *proto.Subscribe) {
	s := int(m.Stripe)
	if s >= len(l.stripes) {
		nb.send(&proto.SubscribeAck{Stripe: m.Stripe, Accepted: false, Depth: proto.NoDepth})
		return
	}
	st := l.stripes[s]
	_, already := st.children[nb.id]
	ok := already
	if !ok && st.depth != proto.NoDepth && st.parent != nb && st.pendingSub != nb {
		if l.cfg.Root {
			ok = l.rootGrants(nb, s)
		} else {
			ok = l.freeSlots() > 0 && len(st.children) < l.stripeCap()
		}
	}
	nb.send(&proto.SubscribeAck{Stripe: m.Stripe, Accepted: ok, Depth: st.depth})
	if !ok {
		return
	}
	if !already {
		st.children[nb.id] = nb
		l.statusDirty = true
	}
	// Push what we already hold of the stripe from FromSeq on (never older than newest-2), so
	// a joining child gets the newest segments at once.
	newest, have := l.n.window.Newest()
	if !have {
		return
	}
	from := m.FromSeq
	if newest >= 2 && from < newest-2 {
		from = newest - 2
	}
	for seq := from; seq <= newest; seq++ {
		ss, ok := l.n.window.State(seq)
		if !ok {
			continue
		}
		for i, h := range ss.Have {
			if !h || i%len(l.stripes) != s {
				continue
			}
			if nb.has.has(chunkKey{seq, uint32(i)}) {
				continue
			}
			if c, ok := l.n.window.Chunk(seq, uint32(i)); ok && nb.push(c) {
				nb.has.add(chunkKey{seq, uint32(i)}) // on its way: no REQUEST answered twice
			}
		}
	}
}

// rootStripesOf counts the stripes nb is the root's child on.
func (l *loop) rootStripesOf(nb *neighbour) int {
	n := 0
	for _, st := range l.stripes {
		if _, ok := st.children[nb.id]; ok {
			n++
		}
	}
	return n
}

func (l *loop) onSubscribeAck(nb *neighbour, m *proto.SubscribeAck) {
	s := int(m.Stripe)
	if s >= len(l.stripes) {
		return
	}
	st := l.stripes[s]
	if st.pendingSub != nb {
		if m.Accepted && st.parent != nb {
			nb.send(&proto.Unsubscribe{Stripe: m.Stripe}) // a late answer we no longer want
		}
		return
	}
	st.pendingSub = nil
	if m.Accepted && m.Depth == 0 && !nb.origin {
		l.ban(nb, ErrFalseOrigin)
		return
	}
	if !m.Accepted || m.Depth >= proto.NoDepth-1 {
		l.n.log.Debug("subscription refused", "stripe", s, "peer", nb.String(), "depth", m.Depth)
		backoff := refuseBackoff
		if nb.origin {
			backoff *= 3 // its seed slots stay taken for long; asking again soon only loads it
		}
		st.full[nb.id] = l.now.Add(backoff)
		return
	}
	if old := st.parent; old != nil && old != nb {
		old.send(&proto.Unsubscribe{Stripe: m.Stripe})
	}
	if len(nb.depths) == len(l.stripes) {
		nb.depths[s] = m.Depth
	}
	st.parent = nb
	st.depth = m.Depth + 1
	st.parentSince = l.now
	st.undeliveredSince = time.Time{}
	st.subFrom = st.pendingFrom
	st.delivered = 0
	l.statusDirty = true
	l.n.log.Debug("new parent", "stripe", s, "peer", nb.String(), "depth", st.depth)
}

// fromSeq is where a new subscription should start: after the newest segment we completed.
func (l *loop) fromSeq() uint64 {
	if c, ok := l.n.window.NewestComplete(); ok {
		return c + 1
	}
	return l.timeline.startSeq
}

// switchCheckEvery is how often (ticks) a stripe that has a parent looks for a better one; a
// stripe without one looks every tick. Switching waits MinHold anyway, so checking every tick
// would only cost CPU in proportion to neighbours x stripes.
const switchCheckEvery = int(500 * time.Millisecond / tickInterval)

// rttOf is a neighbour's smoothed RTT, read from QUIC at most once a second.
func (l *loop) rttOf(nb *neighbour) time.Duration {
	if nb.rttAt == 0 || l.ticks-nb.rttAt >= housekeepingEvery {
		nb.rtt = nb.conn.ConnectionStats().SmoothedRTT
		nb.rttAt = max(l.ticks, 1)
	}
	return nb.rtt
}

// silenceTimeout is how long a parent may send us nothing at all (no chunk, no control message,
// though every node sends one at least every heartbeatEvery) before we take it for dead.
// The root talks to every viewer and is the busiest node of all; it gets twice as long.
func (l *loop) silenceTimeout(p *neighbour) time.Duration {
	if p.origin {
		return l.cfg.ParentTimeout * 3
	}
	return l.cfg.ParentTimeout * 3 / 2
}

// withholdTimeout is how long a parent that has pushed us nothing on a stripe since we subscribed
// may stay so while the stripe's chunks verifiably exist: ParentTimeout, plus a little per level.
func (l *loop) withholdTimeout(depth uint8) time.Duration {
	return l.cfg.ParentTimeout + time.Duration(min(depth, 10))*repairWaitPerLevel
}

// stallTimeout is how long a live parent may leave a chunk we know exists undelivered before we
// leave it: twice ParentTimeout, plus a little per level, as pushes take longer to reach a deep
// node. Dead parents are noticed sooner, by their silence.
func (l *loop) stallTimeout(depth uint8) time.Duration {
	return 2*l.cfg.ParentTimeout + time.Duration(min(depth, 10))*repairWaitPerLevel
}

func (l *loop) maintainStripes() {
	var ids []uint64
	attached := false
	for s, st := range l.stripes {
		// A loaded parent may answer late, but one that has gone silent is dead: waiting out the
		// subscribe timeout for it left a stripe with no parent for seconds when the node we were
		// moving to died first.
		if p := st.pendingSub; p != nil && (l.now.Sub(st.pendingAt) > subscribeTimeout ||
			parentSilent(time.Unix(0, p.lastHeard.Load()), st.pendingAt, l.now, l.silenceTimeout(p))) {
			st.refused[p.id] = l.now.Add(refuseBackoff)
			st.pendingSub = nil
		}
		if p := st.parent; p != nil && !l.now.Before(l.lagUntil) {
			silent := parentSilent(time.Unix(0, p.lastHeard.Load()), st.parentSince, l.now, l.silenceTimeout(p))
			// A parent that never pushed us anything is judged sooner than one with a record: a
			// heartbeat proves it is alive, not that it forwards (the liar that takes every
			// stripe and withholds them all).
			timeout := l.stallTimeout(st.depth)
			if st.delivered == 0 {
				timeout = l.withholdTimeout(st.depth)
			}
			if silent || stripeStalled(st.undeliveredSince, st.lastFromParent, st.parentSince, l.othersDelivered(s), l.now, timeout) {
				penalty := stallPenalty
				switch {
				case silent:
					l.n.stats.parentsSilent.Add(1)
				case st.delivered == 0:
					// Demoted for what it did not deliver: each time it lets us down this way it
					// waits twice as long before we ask it again, and ranks behind those who never did.
					p.withheld++
					l.n.stats.parentsWithheld.Add(1)
					penalty = stallPenalty << min(p.withheld-1, 4)
				}
				l.n.log.Debug("parent stopped delivering; re-subscribing", "stripe", s, "peer", p.String(), "silent", silent,
					"delivered", st.delivered, "penalty", penalty)
				st.refused[p.id] = l.now.Add(penalty)
				p.send(&proto.Unsubscribe{Stripe: uint8(s)})
				l.detach(s)
			}
		}
		if st.parent != nil {
			attached = true
		}
		if st.pendingSub != nil || (st.parent != nil && (l.ticks+s)%switchCheckEvery != 0) {
			continue
		}
		if ids == nil {
			ids = make([]uint64, 0, len(l.nbs))
			for id := range l.nbs {
				ids = append(ids, id)
			}
			slices.Sort(ids)
		}
		cands := make([]parentCandidate, 0, len(ids))
		current := -1
		for _, id := range ids {
			nb := l.nbs[id]
			if _, child := st.children[id]; child || len(nb.depths) != len(l.stripes) {
				continue
			}
			if until, ok := st.refused[id]; ok && l.now.Before(until) && nb != st.parent {
				continue
			}
			if until, ok := st.full[id]; ok && l.now.Before(until) && nb != st.parent {
				continue
			}
			if nb == st.parent {
				current = len(cands)
			} else if nb.depths[s] == proto.NoDepth || candidateSlots(nb, s) <= 0 {
				continue // chooseParent would skip it; spare the RTT lookup
			}
			cands = append(cands, parentCandidate{
				ID:        id,
				Depth:     nb.depths[s],
				FreeSlots: candidateSlots(nb, s),
				RTT:       l.rttOf(nb),
				IsOrigin:  nb.origin,
				Withheld:  nb.withheld,
			})
		}
		choice := chooseParent(cands, current, l.now.Sub(st.parentSince), defaultParentPolicy, rand.Float64())
		if choice < 0 || choice == current {
			continue
		}
		target := l.nbs[cands[choice].ID]
		st.pendingFrom = l.fromSeq()
		l.n.log.Debug("subscribing", "stripe", s, "peer", target.String(), "depth", cands[choice].Depth)
		target.send(&proto.Subscribe{Stripe: uint8(s), FromSeq: st.pendingFrom})
		st.pendingSub = target
		st.pendingAt = l.now
	}
	if attached {
		l.unattachedSince = time.Time{}
	} else if l.unattachedSince.IsZero() {
		l.unattachedSince = l.now
	}
}

// othersDelivered is the latest push on any stripe but s from a parent other than s's own; zero
// when no stripe has another parent. Stripes fed by the same parent are no evidence that the
// parent works: when it dies they all go quiet together.
func (l *loop) othersDelivered(s int) time.Time {
	var latest time.Time
	own := l.stripes[s].parent
	for i, st := range l.stripes {
		if i != s && st.parent != nil && st.parent != own && st.lastFromParent.After(latest) {
			latest = st.lastFromParent
		}
	}
	return latest
}

func (l *loop) depths() []uint8 {
	d := make([]uint8, len(l.stripes))
	for i, st := range l.stripes {
		d[i] = st.depth
	}
	return d
}

// heartbeat sends a STATUS to each parent and child we have been quiet to for heartbeatEvery:
// they are the ones who judge our silence (parentSilent, dropSilentChildren). Other neighbours
// get nothing extra; at 200 peers every packet counts.
func (l *loop) heartbeat() {
	var v1, v2 *proto.Status
	for _, nb := range l.nbs {
		if l.now.Sub(nb.lastSent) < heartbeatEvery || !l.treeLink(nb) {
			continue
		}
		if v1 == nil {
			v1, v2 = l.statusMessages()
		}
		nb.send(statusFor(nb, v1, v2))
	}
}

// attachedAnywhere says whether we have a depth on some stripe (the root always does).
func (l *loop) attachedAnywhere() bool {
	for _, st := range l.stripes {
		if st.depth != proto.NoDepth {
			return true
		}
	}
	return false
}

// statusMessages are our STATUS for version 1 neighbours and STATUS_SLOTS for version 2 ones.
func (l *loop) statusMessages() (v1, v2 *proto.Status) {
	v1 = &proto.Status{Depths: l.depths(), FreeSlots: uint16(min(l.freeSlots(), 0xffff))}
	v2 = &proto.Status{Depths: v1.Depths, FreeSlots: v1.FreeSlots, StripeSlots: l.stripeSlots()}
	return v1, v2
}

// treeLink says whether nb is our parent or child on some stripe.
func (l *loop) treeLink(nb *neighbour) bool {
	for _, st := range l.stripes {
		if st.parent == nb {
			return true
		}
		if _, ok := st.children[nb.id]; ok {
			return true
		}
	}
	return false
}

// dropSilentChildren frees the slots of children we have not heard from for the silence
// timeout: a child that died without a word would otherwise hold its slot (the root's scarce
// seed slots first of all) until the connection times out.
func (l *loop) dropSilentChildren() {
	timeout := l.cfg.ParentTimeout * 3 / 2
	for s, st := range l.stripes {
		for id, c := range st.children {
			if l.now.Sub(c.connectedAt) >= timeout && parentSilent(time.Unix(0, c.lastHeard.Load()), c.connectedAt, l.now, timeout) {
				l.n.log.Debug("child went silent; freeing its slot", "stripe", s, "peer", c.String())
				delete(st.children, id)
				l.statusDirty = true
			}
		}
	}
}

func (l *loop) broadcastStatus() {
	l.statusDirty = false
	v1, v2 := l.statusMessages()
	l.n.setHello(v1.Depths, int(v1.FreeSlots))
	for _, nb := range l.nbs {
		if !nb.origin {
			nb.send(statusFor(nb, v1, v2))
		}
	}
}
