package peer

import (
	"context"
	"maps"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Repair (REQUEST from neighbours) and fallback (fetch from the CDN) scheduling on the loop.

// repairState is the REQUESTs we have out, whom we already asked for what, and the gaps in
// stripes we are giving a moment to fill.
type repairState struct {
	pending  map[chunkKey]*pendingReq
	tried    map[chunkKey]map[uint64]bool // neighbour ids asked in vain, per chunk
	gapSince map[chunkKey]time.Time       // when a later chunk of the stripe showed this one missing
}

type pendingReq struct {
	nb *neighbour
	at time.Time
}

func newRepairState() repairState {
	return repairState{
		pending:  make(map[chunkKey]*pendingReq),
		tried:    make(map[chunkKey]map[uint64]bool),
		gapSince: make(map[chunkKey]time.Time),
	}
}

func (r *repairState) markTried(key chunkKey, id uint64) {
	t := r.tried[key]
	if t == nil {
		t = make(map[uint64]bool)
		r.tried[key] = t
	}
	t[id] = true
}

// prune forgets what concerns segments before low; their open requests no longer count against
// the neighbours asked.
func (r *repairState) prune(low uint64) {
	maps.DeleteFunc(r.pending, func(k chunkKey, p *pendingReq) bool {
		if k.seq < low {
			p.nb.outstanding--
			return true
		}
		return false
	})
	maps.DeleteFunc(r.tried, func(k chunkKey, _ map[uint64]bool) bool { return k.seq < low })
	maps.DeleteFunc(r.gapSince, func(k chunkKey, _ time.Time) bool { return k.seq < low })
}

// missing lists the chunks of seq we know exist (an index below one we hold, or advertised by a
// neighbour) and do not hold.
func (l *loop) missing(seq uint64, st segwindowState) []uint32 {
	var out []uint32
	for i, h := range st.Have {
		if !h {
			out = append(out, uint32(i))
		}
	}
	for i := range l.haves.advertised[seq] {
		if int(i) >= len(st.Have) && (st.ChunkCount < 0 || int(i) < st.ChunkCount) {
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return out
}

// laterOfStripeHeld tells whether we hold a chunk of key's stripe that comes after key: then the
// push of key is late.
func (l *loop) laterOfStripeHeld(key chunkKey) bool {
	st := l.stripes[l.stripeOf(key.index)]
	if !st.hasNewest {
		return false
	}
	n := st.newest
	return n.seq > key.seq || (n.seq == key.seq && n.index > key.index)
}

// reorderGrace is how long a gap in a stripe may last before it counts as a lost push. A parent
// pushes several chunks at once, each on its own stream, so a later chunk often overtakes an
// earlier one by a few tens of milliseconds; requesting the earlier one at once made a duplicate
// of a third of the stream (every REQUEST answered while the push was arriving anyway).
const reorderGrace = 250 * time.Millisecond

// gapOutlasted says whether a later chunk of key's stripe is held and has been for reorderGrace.
func (l *loop) gapOutlasted(key chunkKey) bool {
	if !l.laterOfStripeHeld(key) {
		return false
	}
	since, ok := l.repairs.gapSince[key]
	if !ok {
		l.repairs.gapSince[key] = l.now
		return false
	}
	return l.now.Sub(since) >= reorderGrace
}

func (l *loop) repair() {
	if !l.timeline.known {
		return
	}
	// Up to haveSeqAhead past the verified edge: neighbours nearer the root may hold the next
	// segment's first chunks before anything of it reached us.
	for seq := l.timeline.lowSeq(); seq <= l.timeline.newest+haveSeqAhead; seq++ {
		st := l.segState(seq)
		if st.Complete || st.Abandoned {
			continue
		}
		// The start left to the swarm (StartNeighbourWait): every start chunk is asked of one
		// holder at once, and that holder has the wait to deliver it; what it does not deliver
		// (or refuses with a CANCEL) the CDN sends (fetchStartRest), not a second holder: in a
		// crowd every holder's uplink is as busy as the first's, and each holder asked is a
		// possible duplicate. So the wait is what one holder gets, a bound on what the swarm
		// may cost a joiner's startup, not a window to ask holder after holder. Without a wait
		// the CDN sends the start 300 ms on anyway, so its chunks are asked for by the usual
		// rule (a stripe without a parent at once, others when the push is late): on a machine
		// short of CPU, asking for all of them at once only added duplicates (200 peers joining
		// in the same second in real time on two cores: 200-430 stalls against 1-56).
		swarmStart := l.joining && seq < l.timeline.newest && l.cfg.StartNeighbourWait > 0
		timeout := requestTimeout
		if swarmStart {
			timeout = l.cfg.StartNeighbourWait
		}
		for _, idx := range l.missing(seq, st) {
			key := chunkKey{seq, idx}
			if p := l.repairs.pending[key]; p != nil {
				if l.now.Sub(p.at) < timeout {
					continue
				}
				l.repairs.markTried(key, p.nb.id)
				p.nb.outstanding--
				delete(l.repairs.pending, key)
				if swarmStart {
					// We stopped waiting for a start chunk: a holder that queued the request
					// for its budget (deferred.go) must not spend it on a chunk the CDN sends.
					// Only then: a holder keeps a CANCEL until it would push that chunk, and
					// timed-out live repairs would fill that set with keys it never pushes.
					p.nb.send(&proto.Cancel{Seq: key.seq, Index: key.index})
				}
			}
			if _, ok := l.haves.advertised[seq][idx]; !ok {
				continue // nobody told us they hold it: no neighbour to ask
			}
			if swarmStart && len(l.repairs.tried[key]) > 0 {
				continue // its one holder had its chance: the CDN's now
			}
			stripe := l.stripes[l.stripeOf(idx)]
			// Start chunks left to the swarm are wanted at once and in bulk (two segments):
			// spread over the neighbours that hold them, each to the holder with the fewest
			// outstanding, they come over many uplinks at once. The stripe's parent first, as for
			// a repair, put all of them on one uplink (often one parent feeds a joiner every
			// stripe): 1.4 s for what a dozen holders send in a fraction of that.
			var cands []repairCandidate
			var holders []*neighbour
			for _, nb := range l.nbs {
				if !nb.has.has(key) {
					continue
				}
				holders = append(holders, nb)
				cands = append(cands, repairCandidate{
					ID:          nb.id,
					IsParent:    nb == stripe.parent && !swarmStart,
					IsOrigin:    nb.origin,
					Outstanding: nb.outstanding,
					RTT:         l.rttOf(nb),
					Tried:       l.repairs.tried[key][nb.id],
				})
			}
			if len(cands) == 0 {
				continue
			}
			// While a subscription is pending the push is on its way; a joiner pulls at once only
			// the segments before the one in progress, which pushes will carry.
			attached := stripe.parent != nil || stripe.pendingSub != nil
			onlyOrigin := true
			for _, c := range cands {
				onlyOrigin = onlyOrigin && c.IsOrigin
			}
			wait := l.cfg.RepairWait
			if stripe.parent != nil && stripe.depth > 1 {
				wait += time.Duration(stripe.depth-1) * repairWaitPerLevel
			}
			if !repairDue(l.haves.advertised[seq][idx], l.gapOutlasted(key), attached, swarmStart, onlyOrigin, l.now, wait) {
				continue
			}
			i := chooseRepairTarget(cands, maxOutstanding)
			if i < 0 {
				continue
			}
			nb := holders[i]
			nb.send(&proto.Request{Seq: seq, Index: idx})
			nb.outstanding++
			l.repairs.pending[key] = &pendingReq{nb: nb, at: l.now}
			l.n.stats.requests.Add(1)
		}
	}
}

// updateRepairLimit sets the repair rate to what the upload budget leaves after the children, but
// never below an eighth of it. The root answers at most one copy of the stream in repairs: its
// upload is what the mesh exists to save.
func (l *loop) updateRepairLimit() {
	bitrate := l.bitrate
	if bitrate <= 0 {
		bitrate = assumedBitrate
	}
	var bps int64
	if l.cfg.Root {
		bps = bitrate
	} else {
		budget := l.cfg.MaxUploadBps
		if budget <= 0 {
			budget = 3 * bitrate
		}
		children := int64(l.totalChildren()) * bitrate / int64(len(l.stripes))
		bps = max(budget-children, budget/8)
	}
	l.repairLimit.SetLimitAt(l.now, rate.Limit(bps/8))
}

func (l *loop) fallbackDelay() time.Duration {
	if l.cfg.FallbackDelay > 0 {
		return l.cfg.FallbackDelay
	}
	// Three quarters of a segment: a player stays a few segments behind the live edge, so the
	// tree may take its time; a deep node of a big swarm gets the last chunks of a segment a
	// second after the origin sent them, and fetching them again over HTTP at that moment is
	// what turned a loaded 200-peer swarm into 100 origin copies.
	return l.targetDur * 3 / 4
}

func (l *loop) fallback(ctx context.Context) {
	if !l.timeline.known {
		return
	}
	for seq := l.timeline.lowSeq(); seq <= l.timeline.newest; seq++ {
		st := l.segState(seq)
		if st.Broken {
			l.n.window.Abandon(seq)
			continue
		}
		// Give up only on a segment the swarm left long ago that the CDN could not complete
		// either (or that we cannot ask the CDN for): the playlist then moves past it.
		if !st.Complete && !st.Abandoned && !l.fetches.running[seq] && !l.joining && seq+abandonLag <= l.timeline.newest &&
			l.now.Sub(l.movedOnAt(seq+1)) > 3*l.targetDur && (l.fetches.attempts[seq] >= 3 || l.originHTTP == "") {
			l.n.log.Warn("giving up on a segment nobody could deliver", "seq", seq)
			l.n.window.Abandon(seq)
			l.n.stats.segmentsAbandoned.Add(1)
			continue
		}
		if l.originHTTP == "" || len(l.fetches.running) >= maxFetchJobs {
			continue
		}
		prog := segmentProgress{
			Complete:  st.Complete,
			Abandoned: st.Abandoned,
			Fetching:  l.fetches.running[seq],
			NextKnown: l.movedOnAt(seq + 1),
			LastFetch: l.fetches.last[seq],
		}
		delay := l.fallbackDelay()
		start := l.joining && seq < l.timeline.newest
		if start || l.playerNeedsSoon(seq) {
			delay = joinFallbackDelay
		}
		if grace, blocked := l.llPlayerBlockedBehind(seq); blocked {
			// The local LL player waits for a part after this segment: the part grace after the
			// swarm moved on (llfallback.go), not three quarters of a segment.
			delay = min(delay, grace)
		}
		if !fallbackDue(prog, l.now, delay, fetchRetry) {
			continue
		}
		// A joiner's start segment comes from the swarm for a while: neighbours that announced
		// its chunks answer its requests, and its parents push what they hold of their stripes
		// when it subscribes (onSubscribe). A whole-segment fetch now would make all of that a
		// second copy, and the CDN a copy per joiner. Within the wait the CDN sends only the
		// joiner's slice of what no viewer holds (fetchStartShare); after it, whatever is still
		// missing.
		if start && l.cfg.StartNeighbourWait > 0 && l.now.Sub(prog.NextKnown) < joinFallbackDelay+l.cfg.StartNeighbourWait {
			if l.fetchStartShare(ctx, seq, st) {
				continue
			}
		}
		// The segment is late: fetch every missing chunk that the origin's signatures say exists
		// (below one we hold, or below the signed count), except those just requested from a
		// neighbour (a request that has not answered in a moment is no reason to wait longer).
		// What neighbours merely claim is never asked of the CDN: sixteen HAVEs of indexes up to
		// 65,535 once made a peer send 65,539 requests. Past the proven indexes the fetch walks
		// the tail one chunk at a time until the last chunk or the first 404.
		budget := l.cdnBudget(seq, st)
		if budget <= 0 {
			continue
		}
		var want []uint32
		for i, h := range st.Have {
			if p := l.repairs.pending[chunkKey{seq, uint32(i)}]; !h && (p == nil || l.now.Sub(p.at) > freshRequest) {
				want = append(want, uint32(i))
			}
		}
		tail := -1
		if st.ChunkCount < 0 {
			tail = len(st.Have)
		}
		if len(want) == 0 && tail < 0 {
			continue
		}
		l.fetches.running[seq] = true
		job := fetchJob{base: l.originHTTP, stream: l.cfg.Stream, seq: seq, indexes: want, tailFrom: tail,
			whole: !slices.Contains(st.Have, true), budget: budget, untilPart: -1}
		l.n.wg.Go(func() { l.n.runFetch(ctx, job) })
	}
}

// fetchStartRest is the CDN's part of a joiner's start segment while the swarm is given its
// chance (Config.StartNeighbourWait), once some viewer neighbour holds some of it: the missing
// chunks known to exist (below one we hold, or announced) whose holder had its chance (asked, and
// the wait passed or it refused), and those no viewer neighbour says it holds, no request is out
// for, and which are ours to fetch: our slice (startslice.go), or any once our slice fetch failed.
// Those a viewer holds are asked of it (repair asks at once while joining) and come over many
// uplinks in a few hundred milliseconds; the other slices are on their way from the joiners that
// fetched them, or come from the CDN when the wait ends.
func (l *loop) fetchStartRest(ctx context.Context, seq uint64, st segwindowState) {
	slice := l.startSlice()
	anySlice := len(l.stripes) < 2 || l.fetches.slices[seq] == sliceFailed
	var want []uint32
	for _, idx := range l.missing(seq, st) {
		key := chunkKey{seq, idx}
		if p := l.repairs.pending[key]; p != nil && l.now.Sub(p.at) < l.cfg.StartNeighbourWait {
			continue
		}
		if l.viewerHolds(key) {
			if len(l.repairs.tried[key]) == 0 {
				continue
			}
		} else if !anySlice && !slice.Holds(idx) {
			continue
		}
		want = append(want, idx)
	}
	budget := l.cdnBudget(seq, st)
	if len(want) == 0 || budget <= 0 {
		return
	}
	l.fetches.running[seq] = true
	job := fetchJob{base: l.originHTTP, stream: l.cfg.Stream, seq: seq, indexes: want, tailFrom: -1,
		budget: budget, untilPart: -1, startRest: true}
	l.n.wg.Go(func() { l.n.runFetch(ctx, job) })
}

// viewerHoldsAny says whether a neighbour other than the origin told us it holds a chunk of seq.
func (l *loop) viewerHoldsAny(seq uint64) bool {
	for _, nb := range l.nbs {
		if nb.origin {
			continue
		}
		if nb.has.anyOf(seq) {
			return true
		}
	}
	return false
}

// viewerHolds says whether a neighbour other than the origin told us it holds key.
func (l *loop) viewerHolds(key chunkKey) bool {
	for _, nb := range l.nbs {
		if nb.has.has(key) && !nb.origin {
			return true
		}
	}
	return false
}

// cdnSlack is how many HTTP requests beyond its chunk count a segment may cost the CDN path: a
// whole-segment request, the 404 that ends a tail walk, a retry or two.
const cdnSlack = 4

// cdnBudget is how many more HTTP requests the fallback may spend on seq: its chunk count (signed,
// or bounded by chunkIndexLimit while unknown) plus cdnSlack, less what it already spent.
func (l *loop) cdnBudget(seq uint64, st segwindowState) int {
	count := st.ChunkCount
	if count < 0 {
		count = max(len(st.Have), min(l.timeline.chunkIndexLimit(), max(l.timeline.maxChunkCount, len(st.Have))+16))
	}
	return count + cdnSlack - l.fetches.requests[seq]
}

// urgentBuffer: when the local player will run dry within this time and the segment it needs
// next is incomplete, the segment comes from the CDN now (a whole-segment fetch takes a round trip
// and the transfer; the rest is margin).
const urgentBuffer = 1500 * time.Millisecond

// playerNeedsSoon says whether seq is the segment the local player asks for next and its buffer
// runs out within urgentBuffer.
func (l *loop) playerNeedsSoon(seq uint64) bool {
	next, end, ok := l.n.playback.state()
	return ok && seq == next && end.Sub(l.now) < urgentBuffer
}

// movedOnAt is when the swarm, as far as it concerns us, moved on to seq: when the first chunk of
// seq reached us. Neighbours' HAVEs and the origin's playlist tell us earlier, but a deep node
// hears of a shallow neighbour's progress long before its own tree delivers, so that evidence
// counts only a quarter target duration later.
func (l *loop) movedOnAt(seq uint64) time.Time {
	if st, ok := l.n.window.State(seq); ok && !st.FirstSeen.IsZero() {
		return st.FirstSeen
	}
	if t, ok := l.timeline.seen[seq]; ok {
		if l.joining {
			return t // a joiner's player is waiting; the origin lists only complete segments
		}
		return t.Add(l.targetDur / 4)
	}
	return time.Time{}
}

// segwindowState is the part of a segment's state the schedulers read.
type segwindowState struct {
	Complete, Abandoned, Broken bool
	ChunkCount                  int
	Have                        []bool
}

func (l *loop) segState(seq uint64) segwindowState {
	st, ok := l.n.window.State(seq)
	if !ok {
		return segwindowState{ChunkCount: -1}
	}
	return segwindowState{Complete: st.Complete, Abandoned: st.Abandoned, Broken: st.Broken, ChunkCount: st.ChunkCount, Have: st.Have}
}

func (l *loop) updateJoining() {
	if !l.joining {
		return
	}
	complete := 0
	for _, seq := range l.n.window.Seqs() {
		if st, ok := l.n.window.State(seq); ok && st.Complete {
			complete++
		}
	}
	if complete >= joinSegments || l.now.Sub(l.joinedAt) > joinWindow {
		l.joining = false
		l.n.log.Debug("joined", "complete_segments", complete, "after", l.now.Sub(l.joinedAt))
	}
}
