package peer

import (
	"context"
	"errors"

	"github.com/quic-go/quic-go"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Neighbours: admitting handshaken connections (bans, duplicates, limits), forgetting them, and
// dispatching their control messages. All of it runs on the node loop.

func dialler(nb *neighbour, self [16]byte) [16]byte {
	if nb.dialled {
		return self
	}
	return nb.peerID
}

func (l *loop) onConnUp(nb *neighbour) {
	if nb.dialled {
		// dialFailures is reset when the connection ends for another reason than a full
		// remote (dropNeighbour), so a node that keeps evicting us keeps us backing off.
		delete(l.dials.dialing, nb.dialAddr)
	}
	if l.dials.bans.peer(nb.peerID) || l.dials.bans.addr(nb.addr) || l.n.guard.isBanned(nb.ip) {
		nb.gone = true
		l.n.guard.refused.WithLabelValues(refusedBanned).Inc()
		_ = nb.conn.CloseWithError(codeRejected, "banned")
		return
	}
	if old := l.byPeer[nb.peerID]; old != nil {
		// Both sides dialled each other. Both keep the connection dialled by the smaller peer
		// id, so they agree without talking about it.
		a, b := dialler(old, l.n.id), dialler(nb, l.n.id)
		if string(b[:]) >= string(a[:]) {
			nb.gone = true
			_ = nb.conn.CloseWithError(codeRejected, "duplicate connection")
			return
		}
		l.dropNeighbour(old, "duplicate connection")
	}
	limit := 2 * l.cfg.MaxNeighbours
	if l.cfg.Root {
		limit = l.cfg.MaxRootNeighbours
	}
	if !nb.dialled && len(l.nbs) >= limit && l.evictUseless(1, "neighbour budget: making room") == 0 &&
		(l.cfg.Root || l.evictSpare("neighbour budget: making room for a newcomer") == 0) {
		nb.gone = true
		l.n.guard.refused.WithLabelValues(refusedNeighbours).Inc()
		_ = nb.conn.CloseWithError(codeRejected, rejectedFull)
		return
	}
	nb.connectedAt = l.now
	l.n.stats.connsUp.Add(1)
	l.nbs[nb.id] = nb
	l.byPeer[nb.peerID] = nb
	l.n.metrics.neighbours.Set(float64(len(l.nbs)))
	l.n.log.Debug("neighbour up", "peer", nb.String(), "dialled", nb.dialled, "origin", nb.origin)
	if nb.origin {
		return // the root holds every chunk: our HAVEs would only load it
	}
	if nb.version >= 2 && l.attachedAnywhere() {
		// HELLO told it our free slots in all; which stripes have room, only STATUS_SLOTS does.
		_, v2 := l.statusMessages()
		nb.send(v2)
	}
	for _, m := range haveMessages(l.windowRanges()) {
		nb.send(m)
	}
}

// dropNeighbour forgets a neighbour: its stripes lose their parent or child, its requests are
// re-sent elsewhere. Safe to call twice.
func (l *loop) dropNeighbour(nb *neighbour, reason string) {
	if nb.gone {
		return
	}
	nb.gone = true
	_ = nb.conn.CloseWithError(codeGoodbye, reason)
	l.n.stats.connsDown.Add(1)
	l.n.stats.packets.closeConn(nb)
	delete(l.nbs, nb.id)
	l.forgetSeed(nb)
	if l.byPeer[nb.peerID] == nb {
		delete(l.byPeer, nb.peerID)
	}
	for s, st := range l.stripes {
		if st.parent == nb {
			l.n.log.Debug("lost parent", "stripe", s, "peer", nb.String(), "reason", reason)
			l.detach(s)
		}
		if st.pendingSub == nb {
			st.pendingSub = nil
		}
		if _, ok := st.children[nb.id]; ok {
			delete(st.children, nb.id)
			l.statusDirty = true
		}
		delete(st.refused, nb.id)
		delete(st.full, nb.id)
	}
	for k, p := range l.repairs.pending {
		if p.nb == nb {
			delete(l.repairs.pending, k)
		}
	}
	l.dropDeferredRepairs(nb)
	if nb.dialAddr != "" {
		wait := dialBackoff / 2
		if closedAsFull(nb.conn) {
			// It had no room for us (or made room for someone else): asking again at once
			// only costs it a handshake. Exponential, as for a failed dial.
			l.dials.failures[nb.dialAddr]++
			wait = dialBackoffAfter(l.dials.failures[nb.dialAddr] + 1)
		} else {
			delete(l.dials.failures, nb.dialAddr)
		}
		l.dials.notBefore[nb.dialAddr] = l.now.Add(wait)
	}
	l.n.metrics.neighbours.Set(float64(len(l.nbs)))
	l.n.log.Debug("neighbour down", "peer", nb.String(), "reason", reason)
}

// ban disconnects a neighbour that broke the protocol and never talks to it again. Its IP is
// refused for Limits.BanFor as well, at the socket, before a handshake: a new port and a new
// peer id do not start over. Its other connections from that IP go too.
func (l *loop) ban(nb *neighbour, reason error) {
	l.dials.bans.banPeer(nb.peerID)
	l.dials.bans.banAddr(nb.addr)
	l.dials.bans.banAddr(nb.dialAddr)
	ip := nb.ip
	ipBanned := l.n.guard.isBanned(ip) || l.n.guard.ban(ip) // reject() may have banned it already
	l.n.log.Info("banned neighbour", "peer", nb.String(), "reason", reason, "ip_banned", ipBanned)
	l.dropNeighbour(nb, "protocol violation")
	if !ipBanned {
		return
	}
	for _, other := range l.nbs {
		if other.ip == ip {
			l.dropNeighbour(other, "its IP is banned")
		}
	}
}

// refuseRequest leaves nb's REQUEST m unanswered, and says so.
func (l *loop) refuseRequest(nb *neighbour, m *proto.Request) {
	l.n.stats.requestsRefused.Add(1)
	if nb.version >= 2 {
		// Say so (protocol version 2): the asker tries another holder at once instead of
		// waiting requestTimeout for an answer that will not come.
		nb.send(&proto.Cancel{Seq: m.Seq, Index: m.Index})
	}
}

// rejectedFull is the close reason of a connection refused or evicted for room.
const rejectedFull = "too many neighbours"

// closedAsFull says whether the remote closed conn because it had no room for us.
func closedAsFull(conn *quic.Conn) bool {
	var ae *quic.ApplicationError
	err := context.Cause(conn.Context())
	return errors.As(err, &ae) && ae.Remote && ae.ErrorCode == codeRejected && ae.ErrorMessage == rejectedFull
}

func (l *loop) onMessage(nb *neighbour, m proto.Message) {
	switch m := m.(type) {
	case *proto.Status:
		l.onStatus(nb, m)
	case *proto.Have:
		l.onHave(nb, m)
	case *proto.Subscribe:
		l.onSubscribe(nb, m)
	case *proto.SubscribeAck:
		l.onSubscribeAck(nb, m)
	case *proto.Unsubscribe:
		if int(m.Stripe) < len(l.stripes) {
			if _, ok := l.stripes[m.Stripe].children[nb.id]; ok {
				delete(l.stripes[m.Stripe].children, nb.id)
				l.statusDirty = true
			}
		}
	case *proto.Request:
		c, ok := l.n.window.Chunk(m.Seq, m.Index)
		if !ok {
			return
		}
		if nb.has.has(chunkKey{m.Seq, m.Index}) {
			// Already pushed to it (or it told us it holds it): a joiner asks for its start
			// chunks while our push of them is on its way, and answering again would send its
			// parent's scarcest bytes twice.
			return
		}
		if l.queuedRepair(nb, chunkKey{m.Seq, m.Index}) >= 0 {
			// Asked again while its request waits for the budget: the queued one answers it.
			// (Queued again, each copy reserved the chunk's bytes: one REQUEST repeated held
			// the whole budget, and every other neighbour's request was refused.)
			return
		}
		// Repairs get what the upload budget leaves after the children; a request the budget
		// affords soon waits for it (deferred.go), one it cannot, or one over the neighbour's
		// share of it (repairshare.go), is refused and the requester asks someone else or falls
		// back. So is one from a neighbour whose push queue is full
		// (it takes our chunk streams no faster): the push would be dropped, the budget spent
		// on it taken from every other neighbour's repairs, as often as it asked again.
		if len(nb.pushQueue) == cap(nb.pushQueue) {
			l.refuseRequest(nb, m)
			return
		}
		l.answerRequest(nb, c) // within nb's share of the budget (repairshare.go)
	case *proto.Cancel:
		key := chunkKey{m.Seq, m.Index}
		if l.timeline.known && key.seq <= l.timeline.newest+haveSeqAhead {
			// Kept until we would push that chunk, or its segment leaves the window
			// (dropCancelledBelow). One of a segment further ahead names nothing we will push
			// soon, and kept it would stay: a flood of them filled the set for good.
			nb.cancel(key)
		}
		l.cancelDeferredRepair(nb, key)
		if p := l.repairs.pending[key]; p != nil && p.nb == nb && l.joining && l.cfg.StartNeighbourWait > 0 {
			// Our REQUEST for a start chunk refused (the holder's repair budget is spent): the
			// CDN sends it now (fetchStartRest). (Other refused requests wait out
			// requestTimeout: asked again at once, a crowd short of upload only traded refusals
			// faster.)
			l.repairs.markTried(key, nb.id)
			nb.outstanding--
			delete(l.repairs.pending, key)
		}
	case *proto.Goodbye:
		l.dropNeighbour(nb, "goodbye: "+m.Reason)
	case *proto.Hello:
		l.ban(nb, ErrProtocol)
	}
}
