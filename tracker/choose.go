package tracker

import (
	"math"
	"math/rand/v2"
	"net/netip"

	"github.com/crowdsurf/crowdsurf/proto"
)

const (
	// candidateSample bounds the work of one choice: in a larger swarm a uniform sample of this
	// many peers is weighed instead of all of them, so an announce costs the same at 300 or
	// 30,000 peers.
	candidateSample = 256
	// unattachedDepth is the depth assumed for a stripe a peer has no parent for: such a peer
	// can serve nothing yet, but may soon. An unvouched peer's claimed depths count as this.
	unattachedDepth = 8
	// fullWeight is the slot factor of a peer without free slots; it is small but not zero, so
	// it still gets links for pull repair and for when a slot frees up.
	fullWeight = 0.05
	// unvouchedShare bounds the weighted picks that may go to unvouched peers (no child on
	// another host names them as parent): a newcomer is welcome, a crowd of self-praising
	// newcomers does not take every answer. The rest of the answer is filled with them only
	// when there is nobody else.
	unvouchedShare = 4 // at most 1 in 4, and at least 1
)

// chooseNeighbours picks up to n distinct peers of s for asker, never asker itself.
//
// Most picks are a weighted random sample favouring free child slots and small depth (good
// parents), believed only for peers that children on other hosts name as parent; at most a
// quarter of them go to unvouched peers. About a quarter of the picks are uniform over hosts
// (not over peers, so a host running many peers is not many times as likely), which keeps the
// mesh connected even when a few peers look best to everyone. Every pick comes from another host
// while there are hosts left. The result is in pick order, best weighted picks first.
func chooseNeighbours(rng *rand.Rand, s *swarm, asker string, n int) []proto.PeerInfo {
	if n <= 0 || s == nil {
		return nil
	}
	askerAt := -1
	if i, ok := s.index[asker]; ok {
		askerAt = i
	}
	pool := s.candidatePool(rng, askerAt)
	if len(pool) <= n {
		out := make([]proto.PeerInfo, len(pool))
		for i, j := range rng.Perm(len(pool)) {
			out[i] = s.infos[pool[j]]
		}
		return out
	}
	uniform := n / 4
	if uniform == 0 && n >= 2 {
		uniform = 1
	}
	weighted := n - uniform

	// Efraimidis–Spirakis: ordered by Exp(1)/w, a prefix is a weighted sample without
	// replacement. Each candidate's key is packed with its position in the pool into one
	// uint64 (a positive float's bits order as the float does; the low poolBits bits of the
	// mantissa give way to the position). The candidates are a min-heap, popped into sorted
	// order only as far as the passes below read: usually a few times n of the whole pool.
	keys := s.scratchKeys[:0]
	for k, pi := range pool {
		key := rng.ExpFloat64() / s.weights[pi]
		keys = append(keys, math.Float64bits(key)&^poolMask|uint64(k))
	}
	s.scratchKeys = keys
	heapify(keys)
	sorted := s.scratchSorted[:0]
	defer func() { s.scratchSorted = sorted }()
	// cand returns the c-th smallest candidate, or false when there are fewer.
	cand := func(c int) (uint64, bool) {
		for len(sorted) <= c && len(keys) > 0 {
			sorted = append(sorted, keys[0])
			keys = popMin(keys)
		}
		if c < len(sorted) {
			return sorted[c], true
		}
		return 0, false
	}
	taken := s.scratchTaken[:0]
	for range pool {
		taken = append(taken, false)
	}
	s.scratchTaken = taken
	at := func(key uint64) int { return pool[key&poolMask] }
	host := func(key uint64) netip.Addr { return s.meta[at(key)].host }
	vouched := func(key uint64) bool { return s.meta[at(key)].vouchers > 0 }

	out := make([]proto.PeerInfo, 0, n)
	usedHosts := make(map[netip.Addr]bool, n)
	// taken is indexed by pool position (a key's low bits).
	take := func(key uint64) {
		taken[key&poolMask] = true
		usedHosts[host(key)] = true
		out = append(out, s.infos[at(key)])
	}
	maxUnvouched := max(1, weighted/unvouchedShare)
	unvouched := 0
	// Weighted picks, strictest pass first: one per host and few unvouched; then any unvouched;
	// then any host.
	for pass := 0; pass < 3 && len(out) < weighted; pass++ {
		for c := 0; len(out) < weighted; c++ {
			key, ok := cand(c)
			if !ok {
				break
			}
			if taken[key&poolMask] || (pass < 2 && usedHosts[host(key)]) || (pass < 1 && !vouched(key) && unvouched >= maxUnvouched) {
				continue
			}
			if !vouched(key) {
				unvouched++
			}
			take(key)
		}
	}

	// Uniform picks over hosts: a random untaken candidate, kept with probability one over its
	// host's peer count (so a host running eight peers is as likely as one running one) and only
	// from a host not in the answer yet; after a few tries anything untaken will do (a demo runs
	// every peer on one host). Which candidates are left does not depend on their order.
	rest := make([]uint64, 0, len(pool))
	for k := range pool {
		if !taken[k] {
			rest = append(rest, uint64(k))
		}
	}
	for tries := 0; len(out) < n && len(rest) > 0; tries++ {
		j := rng.IntN(len(rest))
		key := rest[j]
		if h := host(key); tries < 8*n && (usedHosts[h] || rng.IntN(max(1, s.perHost[h])) != 0) {
			continue
		}
		take(key)
		rest[j] = rest[len(rest)-1]
		rest = rest[:len(rest)-1]
	}
	return out
}

// heapify makes h a min-heap.
func heapify(h []uint64) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
}

// popMin removes the heap's minimum (h[0]) and returns the shorter heap.
func popMin(h []uint64) []uint64 {
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	siftDown(h, 0)
	return h
}

func siftDown(h []uint64, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r] < h[l] {
			m = r
		}
		if h[i] <= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// poolBits is wide enough for a position in the pool (at most candidateSample+1 peers).
const (
	poolBits = 9
	poolMask = 1<<poolBits - 1
)

var _ = [1]struct{}{}[(candidateSample+1)>>poolBits] // candidateSample+1 < 1<<poolBits

// candidatePool returns indices into s.infos of the candidates: all peers but the one at askerAt
// (-1: none), or a uniform sample of candidateSample of them in a large swarm. The slice is the
// swarm's scratch space, valid until the next call.
func (s *swarm) candidatePool(rng *rand.Rand, askerAt int) []int {
	pool := s.scratchPool[:0]
	defer func() { s.scratchPool = pool }()
	if len(s.infos) <= candidateSample+1 {
		for i := range s.infos {
			if i != askerAt {
				pool = append(pool, i)
			}
		}
		return pool
	}
	// Sampled peers are marked with a generation number instead of kept in a set: no
	// allocation, and a large swarm is never walked.
	s.markGen++
	if s.markGen == 0 || len(s.mark) < len(s.infos) {
		s.mark = make([]uint32, len(s.infos)+len(s.infos)/4)
		s.markGen = 1
	}
	for len(pool) < candidateSample {
		i := rng.IntN(len(s.infos))
		if s.mark[i] == s.markGen || i == askerAt {
			continue
		}
		s.mark[i] = s.markGen
		pool = append(pool, i)
	}
	return pool
}

// neighbourWeight is how attractive p is as a neighbour: proportional to its free slots (capped,
// so one huge budget does not take every child) and inversely to its mean stripe depth. Both are
// claims; they are believed only for a peer that children on other hosts vouch for. An
// unvouched peer weighs as an unattached one with at most one free slot, whatever it says.
func neighbourWeight(p proto.PeerInfo, vouchers int) float64 {
	free := p.FreeSlots
	if vouchers == 0 {
		free = min(free, 1)
	}
	slots := fullWeight
	if free > 0 {
		slots = 1 + float64(min(free, 8))
	}
	if vouchers == 0 {
		return slots / (1 + unattachedDepth)
	}
	depthSum, stripes := 0, 0
	for _, d := range p.Depths {
		if d < 0 {
			d = unattachedDepth
		}
		depthSum += d
		stripes++
	}
	mean := float64(unattachedDepth)
	if stripes > 0 {
		mean = float64(depthSum) / float64(stripes)
	}
	return slots / (1 + mean)
}
