package tracker

import (
	"math/rand/v2"

	"github.com/crowdsurf/crowdsurf/proto"
)

const (
	// candidateSample bounds the work of one choice: in a larger swarm a uniform sample of this
	// many peers is weighed instead of all of them, so an announce costs the same at 300 or
	// 30,000 peers.
	candidateSample = 256
	// unattachedDepth is the depth assumed for a stripe a peer has no parent for: such a peer
	// can serve nothing yet, but may soon.
	unattachedDepth = 8
	// fullWeight is the slot factor of a peer without free slots; it is small but not zero, so
	// it still gets links for pull repair and for when a slot frees up.
	fullWeight = 0.05
)

// chooseNeighbours picks up to n distinct peers for asker out of peers, never asker itself.
// Most picks are a weighted random sample favouring free child slots and small depth (good
// parents); about a quarter are uniform picks, which keep the mesh connected even when a few
// peers look best to everyone. The result is in pick order, best weighted picks first.
func chooseNeighbours(rng *rand.Rand, peers []proto.PeerInfo, asker string, n int) []proto.PeerInfo {
	if n <= 0 {
		return nil
	}
	pool := candidatePool(rng, peers, asker)
	if len(pool) <= n {
		out := make([]proto.PeerInfo, len(pool))
		for i, j := range rng.Perm(len(pool)) {
			out[i] = peers[pool[j]]
		}
		return out
	}

	uniform := n / 4
	if uniform == 0 && n >= 2 {
		uniform = 1
	}
	weighted := n - uniform

	// Efraimidis–Spirakis: the k smallest keys Exp(1)/w are a weighted sample without
	// replacement. best is kept sorted by key; k is small, so insertion is cheapest.
	type keyed struct {
		key float64
		at  int // index into pool
	}
	best := make([]keyed, 0, weighted+1)
	for at, pi := range pool {
		k := rng.ExpFloat64() / neighbourWeight(peers[pi])
		if len(best) == weighted && k >= best[len(best)-1].key {
			continue
		}
		i := len(best)
		best = append(best, keyed{})
		for i > 0 && best[i-1].key > k {
			best[i] = best[i-1]
			i--
		}
		best[i] = keyed{k, at}
		if len(best) > weighted {
			best = best[:weighted]
		}
	}

	out := make([]proto.PeerInfo, 0, n)
	for _, b := range best {
		out = append(out, peers[pool[b.at]])
		pool[b.at] = -1 // taken
	}
	// Uniform picks among the rest: a partial Fisher–Yates over the untaken entries.
	rest := pool[:0]
	for _, pi := range pool {
		if pi >= 0 {
			rest = append(rest, pi)
		}
	}
	for i := 0; i < uniform && i < len(rest); i++ {
		j := i + rng.IntN(len(rest)-i)
		rest[i], rest[j] = rest[j], rest[i]
		out = append(out, peers[rest[i]])
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
// so one huge budget does not take every child) and inversely to its mean stripe depth.
func neighbourWeight(p proto.PeerInfo) float64 {
	slots := fullWeight
	if p.FreeSlots > 0 {
		slots = 1 + float64(min(p.FreeSlots, 8))
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
