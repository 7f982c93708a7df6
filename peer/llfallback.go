package peer

import (
	"context"
	"sync"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// The CDN path for LL-HLS players. A player of ll.m3u8 fetches parts, not segments, and sits
// only PART-HOLD-BACK (three part targets, about 0.6 s) behind the live edge, where a TS player
// sits three segments behind. It tells us what it needs next by what it blocks on (a blocking
// playlist reload, the preload-hinted part: segwindow.ServerOptions.OnPartWait). When the swarm
// is late with that part, waiting for the segment-level fallback (three quarters of a segment
// after the next segment began) would stall the player many times over; instead the part's
// missing chunks come from the CDN a grace of three part targets (partGrace) after the stream's
// cadence says the part should have been here.
//
// When that is: a part ends at most a part target after the previous one (the origin cuts parts
// by duration), so part P of segment S should be here (P+1) part targets after S began arriving.
// When S began is the earliest of the first chunk of S arriving and the previous segment's first
// chunk plus its signed duration: a verified chunk cannot arrive before the origin made it, so
// the earliest of these is the best estimate, and one late arrival does not make every part
// after it late too. At that moment the player, PART-HOLD-BACK behind, still has two parts
// buffered; one part target later the fetch starts with one part to spare for the round trip.
// The estimate leans late (a segment's first chunk may close only at its first part end), so
// the worst case costs up to one part of that spare, never a fetch of a part that cannot exist
// yet.

// maxPartWaits bounds the waits remembered: a player holds one or two blocking requests; a few
// more are another player on the same peer, or a retry.
const maxPartWaits = 8

// defaultPartTarget stands in for the LL playlist's PART-TARGET before it listed a part (the
// origin's default --part).
const defaultPartTarget = 200 * time.Millisecond

// partKey names a part of a segment; part < 0 is the whole segment.
type partKey struct {
	seq  uint64
	part int
}

func (k partKey) before(o partKey) bool {
	if k.seq != o.seq {
		return k.seq < o.seq
	}
	// The whole segment comes after each of its parts.
	return o.part < 0 && k.part >= 0 || k.part >= 0 && k.part < o.part
}

type partWait struct {
	partTarget time.Duration
	at         time.Time // when a request last named it
}

// partWaits is what the local LL-HLS player's waiting requests named, from the HTTP handlers;
// the loop reads it.
type partWaits struct {
	mu    sync.Mutex
	waits map[partKey]partWait
}

// waiting records that a request waits for w at now.
func (p *partWaits) waiting(w segwindow.PartWait, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waits == nil {
		p.waits = make(map[partKey]partWait)
	}
	k := partKey{seq: w.Seq, part: max(w.Part, -1)}
	if _, ok := p.waits[k]; !ok && len(p.waits) >= maxPartWaits {
		var oldest partKey
		first := true
		for key, v := range p.waits {
			if first || v.at.Before(p.waits[oldest].at) {
				oldest, first = key, false
			}
		}
		delete(p.waits, oldest)
	}
	p.waits[k] = partWait{partTarget: w.PartTarget, at: now}
}

// none says whether no wait is remembered (no LL player, or none waiting lately).
func (p *partWaits) none() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waits) == 0
}

// earliest returns the first part a player still waits for: waits the LL edge covers (the part
// is here) or that nobody named for ttl are forgotten. edge is the window's LL edge (the next
// part to come), edgeOK whether it lists anything yet.
func (p *partWaits) earliest(now time.Time, ttl time.Duration, edge partKey, edgeOK bool) (partKey, partWait, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var (
		best  partKey
		bestW partWait
		found bool
	)
	for k, w := range p.waits {
		if now.Sub(w.at) > ttl || edgeOK && edgeCovers(edge, k) {
			delete(p.waits, k)
			continue
		}
		if !found || k.before(best) {
			best, bestW, found = k, w, true
		}
	}
	return best, bestW, found
}

// edgeCovers says whether the LL playlist whose next part is edge lists k.
func edgeCovers(edge, k partKey) bool {
	if k.part < 0 {
		return k.seq < edge.seq
	}
	return k.seq < edge.seq || k.seq == edge.seq && k.part < edge.part
}

// partLimit is the last chunk index that part `part` of a segment can need, as far as the held
// chunks prove it: parts end at chunks carrying FlagPartEnd (or the last chunk), so once the
// held chunks up to index i carry part+1 part ends, part `part` ends at i or before (a missing
// chunk can only add part ends). known is false when nothing held proves where it ends (then
// the fetch walks on past the held chunks until the part is whole). part < 0 asks for the whole
// segment, which ends at its last chunk. chunk reads a held chunk; have is the segment's
// holdings (segwindow.SegmentState.Have).
func partLimit(chunk func(uint32) (*proto.Chunk, bool), have []bool, part int) (limit int, known bool) {
	ends := 0
	for i, h := range have {
		if !h {
			continue
		}
		c, ok := chunk(uint32(i))
		if !ok {
			continue
		}
		if c.Last() {
			return i, true
		}
		if c.Flags&proto.FlagPartEnd != 0 {
			ends++
			if part >= 0 && ends > part {
				return i, true
			}
		}
	}
	return 0, false
}

// partsEndedThrough counts the parts of seq that end at or before chunk idx; ok is false unless
// every chunk up to idx is held (then the count is exact).
func (n *Node) partsEndedThrough(seq uint64, idx uint32) (ends int, last, ok bool) {
	for i := uint32(0); i <= idx; i++ {
		c, held := n.window.Chunk(seq, i)
		if !held {
			return 0, false, false
		}
		if c.PartEnd() {
			ends++
		}
		if c.Last() {
			return ends, true, true
		}
	}
	return ends, false, true
}

// partDueAt is when a part should be here by the stream's cadence, plus one part target of
// grace (see the top of this file): begun is when its segment began arriving, part its index
// (< 0: the whole segment, which is due a target duration after it began).
func partDueAt(begun time.Time, part int, partTarget, targetDur time.Duration) time.Time {
	if part < 0 {
		return begun.Add(targetDur + partGrace(partTarget))
	}
	return begun.Add(time.Duration(part+1)*partTarget + partGrace(partTarget))
}

// partGrace is how late after the stream's cadence a part may be before its missing chunks come
// from the CDN: three part targets (0.6 s at the default 200 ms). "S began" is when the first
// chunk of S came down the quickest of the four stripe trees; the others run deeper, and in a
// formed 100-peer swarm their chunks come up to a few hundred milliseconds later (delivery p50
// 270 ms, p99 460 ms). A grace of one part target, tried first, fetched those in-flight chunks
// from the CDN at every part on every peer: at 100 LL peers the origin sent 52 copies and the
// mesh collapsed under the CDN's load. What the player sees of the mesh's steady lateness is
// already in the peer's own playlist edge, which it holds PART-HOLD-BACK behind; only a part
// that is missing, not one that is on its way, should cost the origin a copy.
func partGrace(partTarget time.Duration) time.Duration { return 3 * partTarget }

// segmentBegun is when seq began arriving, as verified chunks tell: the earliest of its first
// chunk's arrival and the previous segment's first chunk's arrival plus its signed duration.
func (l *loop) segmentBegun(seq uint64) (time.Time, bool) {
	var begun time.Time
	st, held := l.n.window.State(seq)
	if held && !st.FirstSeen.IsZero() {
		begun = st.FirstSeen
	}
	// A discontinuity begins when the publisher came back, not when the previous segment ended.
	if seq > 0 && !(held && st.Discontinuity) {
		prev, ok := l.n.window.State(seq - 1)
		if _, meta, complete := l.n.window.Segment(seq - 1); ok && complete && !prev.FirstSeen.IsZero() {
			if t := prev.FirstSeen.Add(meta.Duration); begun.IsZero() || t.Before(begun) {
				begun = t
			}
		}
	}
	return begun, !begun.IsZero()
}

// llWait is the earliest part the local LL player waits for, with its part target.
type llWait struct {
	key        partKey
	partTarget time.Duration
	ok         bool
}

// llPlayerWait is the earliest part the local LL player waits for; ok is false when it waits
// for nothing, or for a segment no verified evidence says will exist.
func (l *loop) llPlayerWait() llWait {
	if !l.timeline.known || l.n.partWaits.none() {
		return llWait{}
	}
	msn, next, edgeOK := l.n.window.LLEdge()
	k, w, ok := l.n.partWaits.earliest(l.now, 3*l.targetDur, partKey{seq: msn, part: next}, edgeOK)
	if !ok || k.seq < l.timeline.lowSeq() || k.seq > l.timeline.newest+1 {
		return llWait{}
	}
	if k.seq == l.timeline.newest+1 {
		// Nothing of it yet: it exists once the newest segment completed without ending the
		// stream.
		_, meta, complete := l.n.window.Segment(l.timeline.newest)
		if !complete || meta.End {
			return llWait{}
		}
	}
	pt := w.partTarget
	if pt <= 0 {
		pt = defaultPartTarget
	}
	return llWait{key: k, partTarget: pt, ok: true}
}

// partFallback fetches from the CDN the missing chunks of the part the local LL player waits
// for, once it is due (partDueAt): the proven ones up to the part's end (partLimit), and, when
// nothing held proves where the part ends, a walk past the held chunks that stops when the part
// is whole, at the segment's end or at the first 404. It spends the segment's CDN budget like any
// fetch (cdnBudget). Earlier segments the player is blocked behind are the segment fallback's,
// with the part deadline (see fallback).
func (l *loop) partFallback(ctx context.Context) {
	if l.originHTTP == "" || len(l.fetches.running) >= maxFetchJobs {
		return
	}
	k, pt := l.llWait.key, l.llWait.partTarget
	if !l.llWait.ok || l.fetches.running[k.seq] {
		return
	}
	// Retried a part target after the previous fetch, not every tick; after fetches that found
	// nothing yet (the publisher paused, a reconnect), twice as long each time, so a waiting
	// player cannot spend the segment's budget on 404s before the segment comes.
	retry := pt << min(l.fetches.notFound[k.seq], 5)
	if last := l.fetches.last[k.seq]; !last.IsZero() && l.now.Sub(last) < retry {
		return
	}
	begun, ok := l.segmentBegun(k.seq)
	if !ok || l.now.Before(partDueAt(begun, k.part, pt, l.targetDur)) {
		return
	}
	st := l.segState(k.seq)
	if st.Complete || st.Abandoned || st.Broken {
		return
	}
	budget := l.cdnBudget(k.seq, st)
	if budget <= 0 {
		return
	}
	limit, known := partLimit(func(i uint32) (*proto.Chunk, bool) { return l.n.window.Chunk(k.seq, i) }, st.Have, k.part)
	var want []uint32
	for i, h := range st.Have {
		if known && i > limit {
			break
		}
		if p := l.repairs.pending[chunkKey{k.seq, uint32(i)}]; !h && (p == nil || l.now.Sub(p.at) > freshRequest) {
			want = append(want, uint32(i))
		}
	}
	tail := -1
	if !known {
		tail = len(st.Have)
	}
	if len(want) == 0 && tail < 0 {
		return
	}
	l.fetches.running[k.seq] = true
	l.n.stats.partFetches.Add(1)
	job := fetchJob{base: l.originHTTP, stream: l.cfg.Stream, seq: k.seq, indexes: want, tailFrom: tail,
		untilPart: k.part, budget: budget}
	l.n.wg.Go(func() { l.n.runFetch(ctx, job) })
}

// llPlayerBlockedBehind says whether the local LL player waits for something after seq: then
// seq, incomplete, holds it up, and its fallback is due on the part deadline.
func (l *loop) llPlayerBlockedBehind(seq uint64) (time.Duration, bool) {
	return partGrace(l.llWait.partTarget), l.llWait.ok && seq < l.llWait.key.seq
}
