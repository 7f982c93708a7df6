package tracker

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func testRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// swarmOfPeers puts peers into a swarm, each on its own host and vouched for by a child on
// another host (the trust rules are tested on their own in trust_test.go).
func swarmOfPeers(peers []proto.PeerInfo) *swarm {
	s := newSwarm()
	for i, p := range peers {
		s.put(p, peerMeta{host: testHost(i)})
	}
	for i, p := range peers {
		s.put(proto.PeerInfo{PeerID: "child-of-" + p.PeerID}, peerMeta{host: testHost(len(peers) + i), parents: []string{p.PeerID}})
	}
	// The children vouch; they are not candidates themselves.
	s.infos, s.meta, s.weights = s.infos[:len(peers)], s.meta[:len(peers)], s.weights[:len(peers)]
	for i := range peers {
		delete(s.index, "child-of-"+peers[i].PeerID)
	}
	return s
}

// testHost is a distinct public-looking IPv4 address per i.
func testHost(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, byte(64 + i>>16), byte(i >> 8), byte(i)})
}

// randomSwarm makes n peers with mixed free slots and depths.
func randomSwarm(rng *rand.Rand, n int) []proto.PeerInfo {
	peers := make([]proto.PeerInfo, n)
	for i := range peers {
		depths := make([]int, 4)
		for s := range depths {
			depths[s] = rng.IntN(6) - 1
		}
		free := 0
		if rng.IntN(10) < 3 {
			free = 1 + rng.IntN(4)
		}
		peers[i] = proto.PeerInfo{PeerID: fmt.Sprintf("p%03d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 10000+i), Depths: depths, FreeSlots: free}
	}
	return peers
}

func TestChooseNeverReturnsAskerNorDuplicatesAndRespectsCount(t *testing.T) {
	rng := testRNG(1)
	for _, size := range []int{0, 1, 2, 5, 9, 10, 50, 257, 258, 1000} {
		peers := randomSwarm(rng, size)
		sw := swarmOfPeers(peers)
		for _, n := range []int{1, 3, 8, 20} {
			for trial := 0; trial < 20; trial++ {
				asker := "newcomer"
				if size > 0 && trial%2 == 0 {
					asker = peers[rng.IntN(size)].PeerID
				}
				got := chooseNeighbours(rng, sw, asker, n)
				others := size
				if asker != "newcomer" {
					others--
				}
				require.Len(t, got, min(n, others), "size %d n %d", size, n)
				seen := map[string]bool{}
				for _, p := range got {
					require.NotEqual(t, asker, p.PeerID)
					require.False(t, seen[p.PeerID], "duplicate %s", p.PeerID)
					seen[p.PeerID] = true
				}
			}
		}
	}
}

func TestChooseWithZeroCountReturnsNothing(t *testing.T) {
	require.Empty(t, chooseNeighbours(testRNG(2), swarmOfPeers(randomSwarm(testRNG(3), 10)), "x", 0))
}

func TestChooseFavoursFreeSlots(t *testing.T) {
	rng := testRNG(4)
	peers := make([]proto.PeerInfo, 100)
	for i := range peers {
		free := 0
		if i%2 == 0 {
			free = 3
		}
		peers[i] = proto.PeerInfo{PeerID: fmt.Sprintf("p%d", i), Depths: []int{2, 2, 2, 2}, FreeSlots: free}
	}
	sw := swarmOfPeers(peers)
	withFree, full := 0, 0
	for range 2000 {
		for _, p := range chooseNeighbours(rng, sw, "asker", 8) {
			if p.FreeSlots > 0 {
				withFree++
			} else {
				full++
			}
		}
	}
	t.Logf("picks with free slots %d, without %d", withFree, full)
	require.Greater(t, withFree, 3*full, "peers with free slots should be picked far more often")
	require.Positive(t, full, "full peers must still be picked sometimes (uniform share)")
}

func TestChooseFavoursSmallDepth(t *testing.T) {
	rng := testRNG(5)
	peers := make([]proto.PeerInfo, 100)
	for i := range peers {
		d := 6
		if i%2 == 0 {
			d = 1
		}
		peers[i] = proto.PeerInfo{PeerID: fmt.Sprintf("p%d", i), Depths: []int{d, d, d, d}, FreeSlots: 2}
	}
	sw := swarmOfPeers(peers)
	shallow, deep := 0, 0
	for range 2000 {
		for _, p := range chooseNeighbours(rng, sw, "asker", 8) {
			if p.Depths[0] == 1 {
				shallow++
			} else {
				deep++
			}
		}
	}
	t.Logf("shallow picks %d, deep picks %d", shallow, deep)
	require.Greater(t, float64(shallow), 1.5*float64(deep))
}

func TestChooseInducesConnectedGraph(t *testing.T) {
	for _, tc := range []struct {
		name  string
		swarm func(rng *rand.Rand) []proto.PeerInfo
	}{
		{"mixed swarm", func(rng *rand.Rand) []proto.PeerInfo { return randomSwarm(rng, 200) }},
		{"only three peers have free slots", func(rng *rand.Rand) []proto.PeerInfo {
			peers := randomSwarm(rng, 200)
			for i := range peers {
				peers[i].FreeSlots = 0
			}
			for i := 0; i < 3; i++ {
				peers[i].FreeSlots = 8
				peers[i].Depths = []int{1, 1, 1, 1}
			}
			return peers
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(10); seed < 30; seed++ {
				rng := testRNG(seed)
				peers := tc.swarm(rng)
				sw := swarmOfPeers(peers)
				adj := make(map[string][]string, len(peers))
				// Every peer announces once and links to its answer.
				for _, p := range peers {
					for _, q := range chooseNeighbours(rng, sw, p.PeerID, 8) {
						adj[p.PeerID] = append(adj[p.PeerID], q.PeerID)
						adj[q.PeerID] = append(adj[q.PeerID], p.PeerID)
					}
				}
				seen := map[string]bool{peers[0].PeerID: true}
				queue := []string{peers[0].PeerID}
				for len(queue) > 0 {
					at := queue[0]
					queue = queue[1:]
					for _, next := range adj[at] {
						if !seen[next] {
							seen[next] = true
							queue = append(queue, next)
						}
					}
				}
				require.Len(t, seen, len(peers), "seed %d: graph not connected", seed)
			}
		})
	}
}

func TestChooseSamplesLargeSwarmsWidely(t *testing.T) {
	// In a swarm larger than candidateSample every peer must still be reachable as a neighbour.
	rng := testRNG(6)
	peers := randomSwarm(rng, 2000)
	sw := swarmOfPeers(peers)
	picked := map[string]bool{}
	for range 3000 {
		for _, p := range chooseNeighbours(rng, sw, "asker", 8) {
			picked[p.PeerID] = true
		}
	}
	require.Greater(t, len(picked), 1900)
}

func BenchmarkChooseNeighbours(b *testing.B) {
	rng := testRNG(7)
	for _, size := range []int{50, 1000, 100000} {
		peers := randomSwarm(rng, size)
		sw := swarmOfPeers(peers)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			for b.Loop() {
				chooseNeighbours(rng, sw, "asker", 8)
			}
		})
	}
}

func TestChooseBelievesClaimsOnlyOfVouchedPeersAndSpreadsOverHosts(t *testing.T) {
	rng := testRNG(8)
	s := newSwarm()
	// 20 modest real peers on their own hosts, each vouched for by a child elsewhere ...
	for i := range 20 {
		s.put(proto.PeerInfo{PeerID: fmt.Sprintf("real%d", i), Depths: []int{3, 3, 3, 3}, FreeSlots: 1}, peerMeta{host: testHost(i)})
		s.put(proto.PeerInfo{PeerID: fmt.Sprintf("child%d", i), Depths: []int{4, 4, 4, 4}}, peerMeta{host: testHost(100 + i), parents: []string{fmt.Sprintf("real%d", i)}})
	}
	// ... and 40 boasting unvouched peers on two hosts, which also name each other from their own host.
	for i := range 40 {
		s.put(proto.PeerInfo{PeerID: fmt.Sprintf("fake%d", i), Depths: []int{1, 1, 1, 1}, FreeSlots: 4096},
			peerMeta{host: testHost(200 + i%2), parents: []string{fmt.Sprintf("fake%d", (i+2)%40)}})
	}
	for range 500 {
		got := chooseNeighbours(rng, s, "asker", 8)
		require.Len(t, got, 8)
		fakes := map[netip.Addr]int{}
		for _, p := range got[:6] { // the weighted picks
			if p.FreeSlots == 4096 {
				fakes[s.meta[s.index[p.PeerID]].host]++
			}
		}
		for h, n := range fakes {
			require.Equal(t, 1, n, "one weighted pick per host (%s)", h)
		}
		require.LessOrEqual(t, len(fakes), 1, "at most a quarter of 6 weighted picks are unvouched")
	}
}

// treeOffload models a swarm forming from the tracker's answers: real peers join one by one and,
// per stripe, take the shallowest real neighbour in their one answer that is attached and has a
// free slot, else one of the origin's seed slots, else the CDN. Fakes (fakeHosts hosts, 8 each,
// claiming depth 1 and every free slot) are in the swarm from the start and serve nothing.
// It returns the share of stripe subscriptions peers serve (the rest cost the origin).
func treeOffload(rng *rand.Rand, reals, fakeHosts int) float64 {
	const stripes, slotsPerStripe, seedSlots = 4, 2, 2
	s := newSwarm()
	for f := range 8 * fakeHosts {
		id := fmt.Sprintf("fake%d", f)
		s.put(proto.PeerInfo{PeerID: id, Depths: []int{1, 1, 1, 1}, FreeSlots: proto.TrackerMaxFreeSlots}, peerMeta{host: testHost(100_000 + f%fakeHosts)})
	}
	type peer struct {
		depth   [stripes]int
		free    [stripes]int
		parents []string
	}
	real := map[string]*peer{}
	seeds := [stripes]int{seedSlots, seedSlots, seedSlots, seedSlots}
	served, total := 0, 0
	for i := range reals {
		id := fmt.Sprintf("real%d", i)
		p := &peer{free: [stripes]int{slotsPerStripe, slotsPerStripe, slotsPerStripe, slotsPerStripe}, parents: make([]string, stripes)}
		answer := chooseNeighbours(rng, s, id, 8)
		for st := range stripes {
			total++
			var best *peer
			for _, nb := range answer {
				q := real[nb.PeerID]
				if q != nil && q.depth[st] > 0 && q.free[st] > 0 && (best == nil || q.depth[st] < best.depth[st]) {
					best, p.parents[st] = q, nb.PeerID
				}
			}
			switch {
			case best != nil:
				best.free[st]--
				p.depth[st] = best.depth[st] + 1
				served++
			case seeds[st] > 0:
				seeds[st]--
				p.depth[st] = 1
				p.parents[st] = "origin"
			default:
				p.depth[st] = 0 // the CDN: unattached
				p.parents[st] = ""
			}
		}
		real[id] = p
		// It and its parents announce their new state.
		for _, qid := range append([]string{id}, p.parents...) {
			q := real[qid]
			if q == nil {
				continue
			}
			depths, free := make([]int, stripes), 0
			for st := range stripes {
				depths[st] = q.depth[st]
				if q.depth[st] == 0 {
					depths[st] = -1
				}
				free += q.free[st]
			}
			var n int
			fmt.Sscanf(qid, "real%d", &n)
			s.put(proto.PeerInfo{PeerID: qid, Depths: depths, FreeSlots: free}, peerMeta{host: testHost(n), parents: distinctParents(qid, q.parents)})
		}
	}
	return float64(served) / float64(total)
}

func TestFakesFromTenHostsKeepOffloadWithinATenthOfTheirAbsence(t *testing.T) {
	var without, with float64
	for seed := uint64(1); seed <= 5; seed++ {
		without += treeOffload(testRNG(seed), 200, 0) / 5
		with += treeOffload(testRNG(seed), 200, 10) / 5
	}
	t.Logf("modelled offload of 200 real peers: %.3f without fakes, %.3f with 80 listed fakes from 10 hosts (ratio %.3f)", without, with, with/without)
	require.GreaterOrEqual(t, with, 0.9*without)
}
