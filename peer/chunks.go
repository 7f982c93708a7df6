package peer

import (
	"fmt"
	"slices"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Chunks entering the node: storing, accounting, forwarding to stripe children, and what
// neighbours' HAVEs and the origin playlist tell us about the live edge.

// learnSeq records verified evidence that seq exists (see timeline.learn); the first sight of
// the stream also judges what neighbours claimed before it.
func (l *loop) learnSeq(seq uint64) {
	if l.timeline.learn(seq, l.now) {
		l.adoptClaims()
	}
}

func (l *loop) onChunk(from *neighbour, c *proto.Chunk, size int, src Source) {
	key := chunkKey{c.ID.Seq, c.ID.Index}
	s := l.stripeOf(c.ID.Index)
	st := l.stripes[s]
	fromParent := from != nil && from == st.parent
	if fromParent {
		st.lastFromParent = l.now
	}
	if from != nil {
		from.has.add(key)
	}
	var added, completed bool
	if src == SourceLocal && l.cfg.Window != nil {
		// The origin put it in the window it shares with us: ours to push, not to store again.
		ss, ok := l.n.window.State(c.ID.Seq)
		added, completed = ok, ok && ss.Complete && c.Last()
	} else {
		added, completed = l.n.window.AddChunk(c)
	}
	if !added {
		return
	}
	l.n.stats.received(src, size)
	if src == SourceHTTP && l.joining {
		l.n.stats.bytesFromHTTPJoining.Add(int64(size))
	}
	l.n.metrics.received(src, size)
	if l.cfg.OnChunk != nil {
		l.cfg.OnChunk(c.ID, src, fromParent, l.now)
	}
	l.lastChunkAt = l.now
	l.learnSeq(c.ID.Seq)
	if fromParent {
		st.undeliveredSince = time.Time{}
		st.delivered++
	} else if st.awaitsEvidence(key.seq) {
		st.undeliveredSince = l.now
	}
	l.noteImplied(key)
	if !st.hasNewest || key.seq > st.newest.seq || (key.seq == st.newest.seq && key.index > st.newest.index) {
		st.newest, st.hasNewest = key, true
	}
	if p := l.repairs.pending[key]; p != nil {
		if p.nb != from {
			p.nb.send(&proto.Cancel{Seq: key.seq, Index: key.index})
		}
		p.nb.outstanding--
		delete(l.repairs.pending, key)
	}
	if st.parent != nil && !fromParent {
		// The parent's push of this chunk may still be queued: spare its upload.
		st.parent.send(&proto.Cancel{Seq: key.seq, Index: key.index})
	}
	if adv := l.haves.advertised[key.seq]; adv != nil {
		delete(adv, key.index)
	}
	delete(l.repairs.gapSince, key)
	l.haves.outbox = append(l.haves.outbox, key)
	for _, child := range st.children {
		if child == from {
			continue
		}
		if child.has.has(key) {
			continue
		}
		if child.push(c) {
			child.has.add(key) // on its way: no HAVE for it, no REQUEST to the child
		} else {
			l.n.stats.pushDropped.Add(1)
		}
	}
	if src == SourceHTTP {
		l.fetches.fromHTTP[key.seq] = true
	}
	if completed {
		l.onSegmentComplete(key.seq)
	}
}

// noteImplied marks, on every other stripe, the chunk a verified chunk proves exists: index i of a
// segment implies every lower index. A parent whose stripe misses such a chunk is late; if it then
// pushes nothing at all, maintainStripes leaves it.
func (l *loop) noteImplied(key chunkKey) {
	n := uint32(len(l.stripes))
	for s, st := range l.stripes {
		if !st.awaitsEvidence(key.seq) || uint32(s) > key.index {
			continue
		}
		k := key.index - (key.index-uint32(s))%n
		if k == key.index || l.n.window.Has(key.seq, k) {
			continue
		}
		if st.hasNewest && (st.newest.seq > key.seq || (st.newest.seq == key.seq && st.newest.index > k)) {
			continue // an older gap: repair's business, not a sign the parent stopped
		}
		st.undeliveredSince = l.now
	}
}

func (l *loop) onSegmentComplete(seq uint64) {
	l.n.stats.segmentsComplete.Add(1)
	l.n.metrics.segmentsComplete.Inc()
	if l.fetches.fromHTTP[seq] {
		l.n.stats.segmentsWithFallback.Add(1)
		l.n.metrics.segmentsFallback.Inc()
	}
	if st, ok := l.n.window.State(seq); ok {
		l.timeline.noteCount(st.ChunkCount)
	}
	if meta, ok := l.n.window.Meta(seq); ok && meta.Duration > 0 {
		if meta.Duration > l.targetDur || l.targetDur == l.cfg.TargetDuration {
			l.targetDur = meta.Duration
		}
		bps := int64(float64(meta.ByteLength*8) / meta.Duration.Seconds())
		if l.bitrate == 0 {
			l.bitrate = bps
		} else {
			l.bitrate = (3*l.bitrate + bps) / 4
		}
		l.n.stats.bitrate.Store(l.bitrate)
	}
	// Only the origin's signature can say this (proto.FlagEnd); the local playlist now ends with
	// EXT-X-ENDLIST. The node keeps running: a publisher that reconnects continues the stream.
	if !l.cfg.Root && l.n.window.Ended() {
		l.n.log.Info("stream ended; waiting for the publisher to come back", "seq", seq)
	}
}

// claimVerdict is what a HAVE range is worth against the signed timeline.
type claimVerdict uint8

const (
	claimHeld    claimVerdict = iota // plausible: remember who holds what
	claimIgnored                     // too old, a little too far ahead, or past what we can check
	claimFalse                       // provably or outrageously false: a strike against the sender
)

// judgeClaim weighs one HAVE range. Before any verified evidence there is no timeline to judge by:
// claims are held (bounded per neighbour) and judged once the edge is known (adoptClaims).
func (l *loop) judgeClaim(r proto.ChunkRange) claimVerdict {
	if !l.timeline.known {
		return claimHeld
	}
	keep := uint64(l.n.window.Config().Keep)
	switch {
	case r.Seq+keep < l.timeline.newest:
		return claimIgnored
	case r.Seq > l.timeline.newest+haveSeqAhead:
		// A little ahead of us is a neighbour nearer the root; a window ahead of a fresh edge is
		// a stream that does not exist yet. A stale edge (our own starvation) judges nobody.
		if r.Seq > l.timeline.newest+keep && l.now.Sub(l.timeline.edgeAt) < 2*l.targetDur {
			return claimFalse
		}
		return claimIgnored
	}
	end := uint64(r.First) + uint64(r.Count)
	if st, ok := l.n.window.State(r.Seq); ok && st.ChunkCount >= 0 {
		if end > uint64(st.ChunkCount) {
			return claimFalse // the origin signed the segment's chunk count
		}
		return claimHeld
	}
	if end > uint64(l.timeline.chunkIndexLimit()) {
		return claimIgnored
	}
	return claimHeld
}

// noteClaim remembers that nb holds key and, if we miss it, that someone does.
func (l *loop) noteClaim(nb *neighbour, key chunkKey) {
	if !nb.has.has(key) && nb.has.len() >= maxClaimsPerNeighbour {
		return
	}
	nb.has.add(key)
	if !l.timeline.known || l.n.window.Has(key.seq, key.index) {
		return
	}
	adv := l.haves.advertised[key.seq]
	if adv == nil {
		adv = make(map[uint32]time.Time)
		l.haves.advertised[key.seq] = adv
	}
	if _, ok := adv[key.index]; !ok {
		adv[key.index] = l.now
	}
	// The root advertises every chunk the moment it publishes it, long before any tree can have
	// carried it down: its HAVE is no sign that our parent is late.
	st := l.stripes[l.stripeOf(key.index)]
	if st.parent != nb && !nb.origin && st.awaitsEvidence(key.seq) {
		st.undeliveredSince = l.now
	}
}

// adoptClaims judges the claims neighbours made before we knew the live edge.
func (l *loop) adoptClaims() {
	for _, nb := range l.nbs {
		lied := false
		claims := nb.has
		nb.has = newChunkSet()
		for key := range claims.all() {
			switch l.judgeClaim(proto.ChunkRange{Seq: key.seq, First: key.index, Count: 1}) {
			case claimHeld:
				l.noteClaim(nb, key)
			case claimFalse:
				lied = true
			}
		}
		if lied {
			l.strikeFalseHave(nb)
		}
	}
}

// strikeFalseHave counts a HAVE that made false claims against nb, and bans a habitual liar.
func (l *loop) strikeFalseHave(nb *neighbour) {
	l.n.stats.falseHaves.Add(1)
	nb.falseHaves++
	if nb.falseHaves >= maxFalseHaves {
		l.ban(nb, fmt.Errorf("%w: %d HAVEs for chunks the signed timeline says do not exist", ErrProtocol, nb.falseHaves))
	}
}

func (l *loop) onHave(nb *neighbour, m *proto.Have) {
	if nb.origin && len(m.Ranges) > 0 {
		// The origin proved its identity with the stream key (meshTLS): what it says it holds
		// exists, as surely as its playlist says so. A joiner connected to it learns the live
		// edge from this first HAVE instead of waiting for the playlist.
		newest := m.Ranges[0].Seq
		for _, r := range m.Ranges {
			newest = max(newest, r.Seq)
		}
		l.learnSeq(newest)
	}
	budget := maxHaveIndexes // per message: a HAVE cannot make us walk millions of indexes
	lied := false
	for _, r := range m.Ranges {
		switch l.judgeClaim(r) {
		case claimFalse:
			lied = true
			continue
		case claimIgnored:
			continue
		}
		if budget <= 0 {
			break
		}
		count := min(r.Count, uint32(budget))
		budget -= int(count)
		for i := r.First; i < r.First+count; i++ {
			l.noteClaim(nb, chunkKey{r.Seq, i})
		}
	}
	if lied {
		l.strikeFalseHave(nb)
	}
}

func (l *loop) onPlaylist(seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	slices.Sort(seqs)
	last := seqs[len(seqs)-1]
	// The origin lists only complete segments, so the one after the last is on its way. Newest
	// first: where we start counts back from the live edge.
	l.learnSeq(last + 1)
	for _, seq := range seqs {
		if seq+uint64(l.n.window.Config().Keep) >= l.timeline.newest {
			l.learnSeq(seq)
		}
	}
	// Every complete segment has chunks on every stripe: a parent that pushed nothing of one the
	// origin has finished is late, whatever it says (the withholder that also silences the rest
	// of the mesh is found this way).
	for _, st := range l.stripes {
		if st.awaitsEvidence(last) && (!st.hasNewest || st.newest.seq < last) {
			st.undeliveredSince = l.now
		}
	}
}
