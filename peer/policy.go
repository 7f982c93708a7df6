package peer

import (
	"cmp"
	"slices"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// The scheduling decisions of the node are pure functions of what the loop knows, so they can be
// tested with tables and the loop only gathers inputs and acts on the answer.

// parentCandidate is a neighbour as a possible parent for one stripe.
type parentCandidate struct {
	ID        uint64
	Depth     uint8 // its depth on the stripe; proto.NoDepth when unattached
	FreeSlots int
	RTT       time.Duration
	IsOrigin  bool // the root: its few seed slots are for when no viewer can feed us
	// Withheld is how often it was our parent and pushed nothing (measured, not claimed): a
	// candidate that let us down ranks behind every one that did not, whatever depth it claims.
	Withheld int
}

// originDepthLimit is the depth at which a viewer parent stops being preferred to the root: a
// chain that deep makes every chunk late, and the root's seed slot, if it has one, is better.
const originDepthLimit = 6

// parentPolicy holds the hysteresis of parent switching.
type parentPolicy struct {
	// SwitchMargin is how many levels shallower another candidate must be before we leave a
	// working parent for it.
	SwitchMargin int
	// MinHold is how long we keep a parent before we consider switching away from it.
	MinHold time.Duration
}

var defaultParentPolicy = parentPolicy{SwitchMargin: 1, MinHold: 3 * time.Second}

// rttBucket groups round-trip times so that tiny differences do not decide between otherwise equal
// candidates (and do not make us flap).
func rttBucket(d time.Duration) int64 { return int64(d / (20 * time.Millisecond)) }

// betterParent orders candidates: viewers before the root (unless they sit originDepthLimit deep),
// then those that let us down less often (Withheld), then small depth, then low RTT, then many free slots, then id (so the choice is deterministic).
// The root comes last because every viewer can reach it and it has only a few seed slots: ranked
// by depth, the root (depth 0) was every orphan's first choice, and at 200 peers thousands of
// SUBSCRIBEs a minute went to it, were refused or timed out, while viewers with free slots at
// depth 1 sat idle and the stripes stayed on the CDN.
func betterParent(a, b parentCandidate) int {
	if c := cmp.Compare(originRank(a), originRank(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Withheld, b.Withheld); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Depth, b.Depth); c != 0 {
		return c
	}
	if c := cmp.Compare(rttBucket(a.RTT), rttBucket(b.RTT)); c != 0 {
		return c
	}
	if c := cmp.Compare(b.FreeSlots, a.FreeSlots); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// originRank is 1 for the root and for viewers too deep to prefer to it, 0 for the others.
func originRank(c parentCandidate) int {
	if c.IsOrigin || c.Depth >= originDepthLimit {
		return 1
	}
	return 0
}

// chooseParent picks the neighbour to subscribe to for one stripe. cands excludes neighbours that
// must not be our parent (our own children on the stripe, recent refusals). current is the index
// of our current parent in cands, or -1 when we are unattached; heldFor is how long we have had it;
// pick is a uniform random number in [0, 1) (spreadParent). The answer is an index into cands, or
// -1 for none; returning current means keep it.
//
// Unattached, we take an attached candidate with a free slot, any depth will do, since a stripe
// with a parent beats none (spreadParent). Attached, we only move to a candidate at least
// SwitchMargin levels shallower than our parent (betterParent), after MinHold, so the tree settles
// instead of flapping.
func chooseParent(cands []parentCandidate, current int, heldFor time.Duration, pol parentPolicy, pick float64) int {
	if current < 0 || cands[current].Depth == proto.NoDepth {
		return spreadParent(cands, current, pick)
	}
	best := bestParent(cands, current)
	cur := cands[current]
	if best < 0 || heldFor < pol.MinHold {
		return current
	}
	if cands[best].IsOrigin && !cur.IsOrigin {
		return current // a working viewer parent never gives way to the root's scarce slots
	}
	if int(cands[best].Depth)+pol.SwitchMargin <= int(cur.Depth) {
		return best
	}
	return current
}

// canParent says whether cands[i] could be our parent at all: attached, with a free slot, and not
// the one at index exclude (our current parent).
func canParent(cands []parentCandidate, i, exclude int) bool {
	c := cands[i]
	return i != exclude && c.Depth != proto.NoDepth && c.FreeSlots > 0
}

// bestParent is the index of the best candidate by betterParent, exclude left out; -1 for none.
func bestParent(cands []parentCandidate, exclude int) int {
	best := -1
	for i, c := range cands {
		if canParent(cands, i, exclude) && (best < 0 || betterParent(c, cands[best]) < 0) {
			best = i
		}
	}
	return best
}

// spreadReach is how far (levels of depth plus RTT buckets) behind the best candidate an orphan
// still considers one; each step halves its weight.
const spreadReach = 3

// spreadParent picks a parent for an unattached stripe at random among the good candidates,
// weighted by their free slots and halved for each level of depth or RTT bucket they are behind
// the best (betterParent's order before that: viewers before the root, those that never let us
// down first). Not simply the best: when a crowd arrives at once, every orphan sees the same few
// shallow neighbours with room and asks the same one; it takes a handful and refuses the rest,
// who try the next best together, and so on. Measured at 60 peers joining in the same second
// (scale lab), 84 % of SUBSCRIBEs were refused and a peer had all four stripes after 1.9 s (p50),
// 3.3 s (p95), its start segments from the CDN meanwhile. Spread out, the askers fill the slots
// of a whole level at once. pick is a uniform random number in [0, 1).
func spreadParent(cands []parentCandidate, exclude int, pick float64) int {
	// The best by betterParent: its ties past the RTT bucket (free slots, id) do not matter
	// here, every weight depends only on the keys before them.
	best := bestParent(cands, exclude)
	if best < 0 {
		return -1
	}
	b := cands[best]
	weight := func(i int) float64 {
		c := cands[i]
		if !canParent(cands, i, exclude) || originRank(c) != originRank(b) || c.Withheld != b.Withheld {
			return 0
		}
		behind := int(c.Depth) - int(b.Depth) + max(0, int(rttBucket(c.RTT)-rttBucket(b.RTT)))
		if behind > spreadReach {
			return 0
		}
		return float64(min(c.FreeSlots, 64)) / float64(int(1)<<behind)
	}
	total := 0.0
	for i := range cands {
		total += weight(i)
	}
	x := pick * total
	for i := range cands {
		w := weight(i)
		if w > 0 && x < w {
			return i
		}
		x -= w
	}
	return best // pick rounding at the top end
}

// repairCandidate is a neighbour that advertised a chunk we miss.
type repairCandidate struct {
	ID          uint64
	IsParent    bool // our parent on the chunk's stripe
	IsOrigin    bool // the root: asked last, its upload is the scarce resource
	Outstanding int  // requests we have open at it
	RTT         time.Duration
	Tried       bool // already asked for this chunk and it did not answer in time
}

// chooseRepairTarget picks who to REQUEST a missing chunk from: the stripe's parent first (it
// should have pushed it and likely has it queued), then other peers before the origin, then the
// one with the fewest open requests, then the nearest. -1 when nobody can be asked now.
func chooseRepairTarget(cands []repairCandidate, maxOutstanding int) int {
	idx := make([]int, 0, len(cands))
	for i, c := range cands {
		if !c.Tried && c.Outstanding < maxOutstanding {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return -1
	}
	return slices.MinFunc(idx, func(i, j int) int {
		a, b := cands[i], cands[j]
		if a.IsParent != b.IsParent {
			if a.IsParent {
				return -1
			}
			return 1
		}
		if a.IsOrigin != b.IsOrigin {
			if b.IsOrigin {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.Outstanding, b.Outstanding); c != 0 {
			return c
		}
		if c := cmp.Compare(rttBucket(a.RTT), rttBucket(b.RTT)); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// repairDue says whether a missing chunk that some neighbour holds should be requested now. The
// push tree is the normal path, so we wait for it unless the evidence says the push is late: a
// later chunk of the same stripe already arrived, we have no parent on the stripe, we are joining
// (we need the newest segments at once), or the HAVE is older than wait. When only the origin
// holds the chunk (it advertises every chunk first), asking it would spend the scarcest upload
// on a chunk the tree is most likely still carrying, so we wait twice as long and nothing else
// counts.
func repairDue(advertisedAt time.Time, laterOfStripeHeld, attached, joining, onlyOrigin bool, now time.Time, wait time.Duration) bool {
	if onlyOrigin {
		return !advertisedAt.IsZero() && now.Sub(advertisedAt) >= 2*wait
	}
	if joining || !attached || laterOfStripeHeld {
		return true
	}
	return !advertisedAt.IsZero() && now.Sub(advertisedAt) >= wait
}

// segmentProgress is what the fallback decision knows about one segment.
type segmentProgress struct {
	Complete  bool
	Abandoned bool
	Fetching  bool      // an HTTP fetch for it is running
	NextKnown time.Time // when we first learned that seq+1 exists anywhere; zero = not yet
	LastFetch time.Time // when the previous HTTP fetch for it ended; zero = never
}

// fallbackDue says whether a segment's missing chunks should now be fetched over HTTP: the swarm
// has moved on to the next segment at least delay ago and the segment is still incomplete. A
// segment fetched before is retried only after retry, so a slow origin is not hammered.
func fallbackDue(p segmentProgress, now time.Time, delay, retry time.Duration) bool {
	if p.Complete || p.Abandoned || p.Fetching || p.NextKnown.IsZero() {
		return false
	}
	if now.Sub(p.NextKnown) < delay {
		return false
	}
	return p.LastFetch.IsZero() || now.Sub(p.LastFetch) >= retry
}

// stripeStalled says whether our parent on a stripe has failed it: we have known for at least
// timeout of a chunk of the stripe that the parent did not push (undeliveredSince, zero = none),
// the parent pushed nothing on the stripe since, and the other stripes' other parents did deliver
// since (othersDelivered: the latest push on any stripe fed by another parent, zero = none). The
// last condition keeps a node whose CPU or link is slow for everyone from blaming one parent;
// stripes that share the parent do not count, or a parent feeding every stripe could never be
// found stalled. A parent that dies outright is also noticed by parentSilent. A new parent gets
// timeout from subscribing.
func stripeStalled(undeliveredSince, lastFromParent, subscribedAt, othersDelivered, now time.Time, timeout time.Duration) bool {
	if undeliveredSince.IsZero() || now.Sub(subscribedAt) < timeout {
		return false
	}
	if now.Sub(undeliveredSince) < timeout || lastFromParent.After(undeliveredSince) {
		return false
	}
	return othersDelivered.IsZero() || othersDelivered.After(undeliveredSince)
}

// parentSilent says whether a parent has gone quiet: nothing at all heard from it (chunks,
// control messages; every node sends one at least every heartbeatEvery) for timeout, and we
// have held it that long. This notices a parent that died without a word in about a second,
// whatever the other stripes do, long before the QUIC idle timeout (which grows with the RTT
// estimate on a loaded machine).
func parentSilent(lastHeard, subscribedAt, now time.Time, timeout time.Duration) bool {
	return now.Sub(subscribedAt) >= timeout && now.Sub(lastHeard) >= timeout
}

// assumedBitrate stands in for the stream's bitrate until a complete segment measured it, so an
// explicit upload budget means something from the start (a free rider's tiny budget gives no
// slots, not the auto budget's dozen).
const assumedBitrate = 2_000_000

// childSlots is how many stripe children an upload budget carries: each child of a stripe costs
// that stripe's share of the bitrate, and children get three quarters of the budget. The rest is
// headroom for repairs, control traffic and bursts: a budget filled to the brim by pushes queues
// every chunk behind the others (measured on the simulated mesh: 9 slots on a 2.4 Mbit budget
// for a 1 Mbit stream gave a median delivery latency of a second; 7 slots keep it to the links'
// latency). The auto budget (0) is three copies of the stream, whatever its bitrate.
func childSlots(maxUploadBps, bitrateBps int64, stripes int) int {
	if maxUploadBps <= 0 {
		return 3 * stripes * 3 / 4
	}
	if bitrateBps <= 0 {
		bitrateBps = assumedBitrate
	}
	perChild := max(bitrateBps/int64(stripes), 1)
	return int(min(maxUploadBps*3/4/perChild, 1<<16))
}

// stripeCap is the child limit on one stripe for a node with slots child slots: its even share,
// rounded up. (Twice the share was tried at 100 peers on the simulated 3 Mbit uplinks: the
// simultaneous pushes of one chunk to four children overflow the uplink's queue, QUIC backs off,
// pushes miss their deadline and the trees churn.)
func stripeCap(slots, stripes int) int {
	return (slots + stripes - 1) / stripes
}

// rootStripesPerChild is how many stripes the root feeds one child: its seed slots spread over as
// many different peers as it has neighbours. The first peers to subscribe would otherwise take
// every stripe from the root, become everyone's favourite parent on every stripe at once, and
// choke their uplinks; spread out, each top-level peer carries one stripe. A lone viewer still
// gets every stripe.
func rootStripesPerChild(stripes, seedCopies, neighbours int) int {
	slots := stripes * seedCopies
	return min(stripes, (slots+max(neighbours, 1)-1)/max(neighbours, 1))
}

// dialBackoffAfter is how long to wait before dialling an address again after failures
// consecutive failed dials: dialBackoff, doubling, at most 16 times as long.
func dialBackoffAfter(failures int) time.Duration {
	return dialBackoff << min(max(failures-1, 0), 4)
}
