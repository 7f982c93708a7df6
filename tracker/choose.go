package tracker

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"

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
	pool := candidatePool(rng, s.infos, asker)
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
	// replacement. The pool is at most candidateSample, so sorting it is cheap.
	type keyed struct {
		key   float64
		at    int // index into s.infos
		taken bool
	}
	cands := make([]keyed, len(pool))
	for k, pi := range pool {
		cands[k] = keyed{key: rng.ExpFloat64() / neighbourWeight(s.infos[pi], s.vouchers(pi)), at: pi}
	}
	slices.SortFunc(cands, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	host := func(c *keyed) netip.Addr { return s.meta[c.at].host }
	vouched := func(c *keyed) bool { return s.meta[c.at].vouchers > 0 }

	out := make([]proto.PeerInfo, 0, n)
	usedHosts := make(map[netip.Addr]bool, n)
	take := func(c *keyed) {
		c.taken = true
		usedHosts[host(c)] = true
		out = append(out, s.infos[c.at])
	}
	maxUnvouched := max(1, weighted/unvouchedShare)
	unvouched := 0
	// Weighted picks, strictest pass first: one per host and few unvouched; then any unvouched;
	// then any host.
	for pass := 0; pass < 3 && len(out) < weighted; pass++ {
		for i := range cands {
			c := &cands[i]
			if len(out) == weighted {
				break
			}
			if c.taken || (pass < 2 && usedHosts[host(c)]) || (pass < 1 && !vouched(c) && unvouched >= maxUnvouched) {
				continue
			}
			if !vouched(c) {
				unvouched++
			}
			take(c)
		}
	}

	// Uniform picks over hosts: a random untaken candidate, kept with probability one over its
	// host's peer count (so a host running eight peers is as likely as one running one) and only
	// from a host not in the answer yet; after a few tries anything untaken will do (a demo runs
	// every peer on one host).
	rest := make([]int, 0, len(cands))
	for i := range cands {
		if !cands[i].taken {
			rest = append(rest, i)
		}
	}
	for tries := 0; len(out) < n && len(rest) > 0; tries++ {
		j := rng.IntN(len(rest))
		c := &cands[rest[j]]
		if h := host(c); tries < 8*n && (usedHosts[h] || rng.IntN(max(1, s.perHost[h])) != 0) {
			continue
		}
		take(c)
		rest[j] = rest[len(rest)-1]
		rest = rest[:len(rest)-1]
	}
	return out
}

// candidatePool returns indices into peers of the candidates: all peers but asker, or a uniform
// sample of candidateSample of them in a large swarm. Peer ids are unique within peers.
func candidatePool(rng *rand.Rand, peers []proto.PeerInfo, asker string) []int {
	if len(peers) <= candidateSample+1 {
		pool := make([]int, 0, len(peers))
		for i := range peers {
			if peers[i].PeerID != asker {
				pool = append(pool, i)
			}
		}
		return pool
	}
	seen := make(map[int]struct{}, candidateSample)
	pool := make([]int, 0, candidateSample)
	for len(pool) < candidateSample {
		i := rng.IntN(len(peers))
		if _, dup := seen[i]; dup || peers[i].PeerID == asker {
			continue
		}
		seen[i] = struct{}{}
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
