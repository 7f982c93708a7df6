package peer

import (
	"errors"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// event is what the node's goroutines (connections, fetches, the playlist poller, the announcer)
// hand the loop. Each kind applies itself on the loop goroutine, so the compiler checks that only
// events reach the loop and that each one is handled.
type event interface {
	apply(l *loop)
}

// evConnUp: a handshaken connection, for onConnUp to admit or refuse.
type evConnUp struct{ nb *neighbour }

func (ev evConnUp) apply(l *loop) { l.onConnUp(ev.nb) }

// evConnDown: a neighbour's connection or control stream ended.
type evConnDown struct {
	nb  *neighbour
	err error
}

func (ev evConnDown) apply(l *loop) { l.dropNeighbour(ev.nb, "connection closed") }

// evDialFailed: a dial that never completed its handshake.
type evDialFailed struct {
	addr string
	err  error
	lied bool // the remote broke the protocol in the handshake (a false origin): never again
}

func (ev evDialFailed) apply(l *loop) {
	delete(l.dials.dialing, ev.addr)
	l.n.stats.dialsFailed.Add(1)
	if ev.lied {
		l.dials.bans.banAddr(ev.addr)
		l.n.log.Info("banned neighbour", "addr", ev.addr, "reason", ev.err)
	}
	// Back off exponentially: at a few hundred peers a busy node (the origin first of all)
	// answers handshakes slowly, and every peer re-dialling it every two seconds is a
	// handshake storm that keeps it busy.
	l.dials.failures[ev.addr]++
	l.dials.notBefore[ev.addr] = l.now.Add(dialBackoffAfter(l.dials.failures[ev.addr]))
	l.n.log.Debug("dial failed", "addr", ev.addr, "error", ev.err)
}

// evMessage: a control message from a neighbour.
type evMessage struct {
	nb  *neighbour
	msg proto.Message
}

func (ev evMessage) apply(l *loop) {
	if !ev.nb.gone {
		l.onMessage(ev.nb, ev.msg)
	}
}

// evChunk carries a verified chunk: from a neighbour (nb set) or the CDN path (nb nil).
type evChunk struct {
	nb   *neighbour
	c    *proto.Chunk
	size int
	at   time.Time
}

func (ev evChunk) apply(l *loop) {
	src := SourceHTTP
	if ev.nb != nil {
		src = SourcePeer
		if ev.nb.origin {
			src = SourceOrigin
		}
	}
	l.onChunk(ev.nb, ev.c, ev.size, src)
}

// evBan: a neighbour sent something no honest node sends.
type evBan struct {
	nb     *neighbour
	reason error
}

func (ev evBan) apply(l *loop) { l.ban(ev.nb, ev.reason) }

// evFetchDone: a CDN fetch job ended.
type evFetchDone struct {
	seq      uint64
	requests int // HTTP requests the fetch made
	err      error
	// startRest: the fetch was only a joiner's start chunks that no viewer neighbour holds
	// (fetchStartRest); it is no attempt at the whole segment, so it does not hold back the
	// fetch of what the swarm then fails to deliver.
	startRest bool
	// slice: the fetch was the joiner's slice of a start segment (startslice.go).
	slice bool
}

func (ev evFetchDone) apply(l *loop) {
	delete(l.fetches.running, ev.seq)
	if ev.slice && ev.err != nil {
		l.fetches.slices[ev.seq] = sliceFailed // it was sliceFetched from the start of the fetch
	}
	l.fetches.requests[ev.seq] += ev.requests
	if !ev.startRest {
		l.fetches.last[ev.seq] = l.now
		l.fetches.attempts[ev.seq]++
	}
	if errors.Is(ev.err, ErrNotFound) {
		l.fetches.notFound[ev.seq]++
	} else {
		delete(l.fetches.notFound, ev.seq)
	}
	if ev.err != nil {
		l.n.log.Debug("fallback fetch failed", "seq", ev.seq, "error", ev.err)
	}
}

// evPlaylist: the media sequence numbers the origin's playlist lists.
type evPlaylist struct{ seqs []uint64 }

func (ev evPlaylist) apply(l *loop) { l.onPlaylist(ev.seqs) }

// evAnnounce: the tracker's answer.
type evAnnounce struct{ resp proto.AnnounceResponse }

func (ev evAnnounce) apply(l *loop) { l.onAnnounce(l.ctx, ev.resp) }
