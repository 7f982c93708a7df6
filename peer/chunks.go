package peer

import (
	"slices"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Chunks entering the node: storing, accounting, forwarding to stripe children, and what
// neighbours' HAVEs and the origin playlist tell us about the live edge.

// learnSeq records that seq exists somewhere; the first sight of the stream sets where we start.
// Callers with several seqs pass the newest first. verified says the evidence is signed (a chunk)
// or from the origin (its playlist): it corrects a live edge that only unverified HAVEs claimed.
func (l *loop) learnSeq(seq uint64, verified bool) {
	if _, ok := l.seqKnown[seq]; !ok {
		l.seqKnown[seq] = l.now
	}
	if verified && !l.verifiedEdge {
		l.verifiedEdge = true
		if l.known && l.newest > seq+uint64(l.n.window.Config().Keep) {
			l.n.log.Warn("neighbours advertised segments far beyond the stream's live edge", "claimed", l.newest, "edge", seq)
			l.known = false
		}
	}
	if !l.known {
		l.known = true
		l.newest = seq
		l.lowestSeen = seq
		l.startSeq = seq - min(seq, joinSegments)
		return
	}
	l.lowestSeen = min(l.lowestSeen, seq)
	if seq > l.newest {
		l.newest = seq
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
		from.has[key] = struct{}{}
	}
	added, completed := l.n.window.AddChunk(c)
	if !added {
		return
	}
	l.n.stats.received(src, size)
	l.n.metrics.received(src, size)
	if l.cfg.OnChunk != nil {
		l.cfg.OnChunk(c.ID, src, fromParent, l.now)
	}
	l.lastChunkAt = l.now
	l.learnSeq(c.ID.Seq, true)
	if fromParent {
		st.undeliveredSince = time.Time{}
	} else if st.parent != nil && st.undeliveredSince.IsZero() {
		st.undeliveredSince = l.now
	}
	if !st.hasNewest || key.seq > st.newest.seq || (key.seq == st.newest.seq && key.index > st.newest.index) {
		st.newest, st.hasNewest = key, true
	}
	if p := l.pending[key]; p != nil {
		if p.nb != from {
			p.nb.send(&proto.Cancel{Seq: key.seq, Index: key.index})
		}
		p.nb.outstanding--
		delete(l.pending, key)
	}
	if st.parent != nil && !fromParent {
		// The parent's push of this chunk may still be queued: spare its upload.
		st.parent.send(&proto.Cancel{Seq: key.seq, Index: key.index})
	}
	if adv := l.advertised[key.seq]; adv != nil {
		delete(adv, key.index)
	}
	delete(l.gapSince, key)
	l.newHave = append(l.newHave, key)
	for _, child := range st.children {
		if child == from {
			continue
		}
		if _, has := child.has[key]; has {
			continue
		}
		if child.push(c) {
			child.has[key] = struct{}{} // on its way: no HAVE for it, no REQUEST to the child
		} else {
			l.n.stats.pushDropped.Add(1)
		}
	}
	if src == SourceHTTP {
		l.fromHTTP[key.seq] = true
	}
	if completed {
		l.onSegmentComplete(key.seq)
	}
}

func (l *loop) onSegmentComplete(seq uint64) {
	l.n.stats.segmentsComplete.Add(1)
	l.n.metrics.segmentsComplete.Inc()
	if l.fromHTTP[seq] {
		l.n.stats.segmentsWithFallback.Add(1)
		l.n.metrics.segmentsFallback.Inc()
	}
	if _, meta, ok := l.n.window.Segment(seq); ok && meta.Duration > 0 {
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
}

func (l *loop) plausibleHave(seq uint64) bool {
	return !l.known || (seq <= l.newest+haveSeqAhead && seq+uint64(l.n.window.Config().Keep) >= l.newest)
}

func (l *loop) onHave(nb *neighbour, m *proto.Have) {
	// The newest seq first: the first sight of the stream decides where we start.
	var newest uint64
	found := false
	for _, r := range m.Ranges {
		if l.plausibleHave(r.Seq) && (!found || r.Seq > newest) {
			newest, found = r.Seq, true
		}
	}
	if found {
		l.learnSeq(newest, false)
	}
	budget := maxHaveIndexes // per message: a HAVE cannot make us walk millions of indexes
	for _, r := range m.Ranges {
		if !l.plausibleHave(r.Seq) || budget <= 0 {
			continue
		}
		l.learnSeq(r.Seq, false)
		count := min(r.Count, uint32(budget))
		budget -= int(count)
		for i := r.First; i < r.First+count; i++ {
			key := chunkKey{r.Seq, i}
			nb.has[key] = struct{}{}
			if l.n.window.Has(r.Seq, i) {
				continue
			}
			adv := l.advertised[r.Seq]
			if adv == nil {
				adv = make(map[uint32]time.Time)
				l.advertised[r.Seq] = adv
			}
			if _, ok := adv[i]; !ok {
				adv[i] = l.now
			}
			// The root advertises every chunk the moment it publishes it, long before any tree
			// can have carried it down: its HAVE is no sign that our parent is late.
			st := l.stripes[l.stripeOf(i)]
			if st.parent != nil && st.parent != nb && !nb.origin && st.undeliveredSince.IsZero() {
				st.undeliveredSince = l.now
			}
		}
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
	l.learnSeq(last+1, true)
	for _, seq := range seqs {
		if seq+uint64(l.n.window.Config().Keep) >= l.newest {
			l.learnSeq(seq, true)
		}
	}
}
