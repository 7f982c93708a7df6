package tracker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// A reused choice is handed to at most choiceUses askers, for at most choiceTTL, never to an
// asker it holds, and never after one of its peers left the swarm; its JSON is its peers'.
func TestReusedChoiceIsBoundedNeverHoldsTheAskerNorAPeerThatLeft(t *testing.T) {
	rng := testRNG(7)
	const n = 8
	for _, size := range []int{3, n + 1, n + 2, 50, 1000} {
		peers := randomSwarm(rng, size)
		s := swarmOfPeers(peers)
		now := time.Unix(1000, 0)
		key := func(infos []proto.PeerInfo) string { b, _ := json.Marshal(infos); return string(b) }
		var last string
		run := 0
		for i := range 400 {
			asker := peers[i%size].PeerID
			if i%50 == 49 {
				now = now.Add(choiceTTL) // a choice this old is not handed out again
				last = ""
			}
			infos, encoded := s.neighboursFor(rng, asker, n, now)
			require.False(t, holdsPeer(infos, asker), "size %d: the asker got itself", size)
			require.Len(t, infos, min(n, size-1))
			if encoded != nil {
				require.JSONEq(t, key(infos), string(encoded))
			}
			if k := key(infos); k == last {
				run++
			} else {
				last, run = k, 1
			}
			require.LessOrEqual(t, run, choiceUses, "size %d: one choice went to more than %d askers in a row", size, choiceUses)
		}

		// A peer leaves: no answer hands it out afterwards.
		infos, _ := s.neighboursFor(rng, "nobody", n, now)
		gone := infos[0].PeerID
		require.True(t, s.remove(gone))
		for range 3 * choiceUses {
			infos, _ := s.neighboursFor(rng, "nobody", n, now)
			require.False(t, holdsPeer(infos, gone), "size %d: a peer that left was handed out", size)
		}
	}
}

// Reuse is what makes it cheap: in a large swarm most askers get a choice made before.
func TestLargeSwarmReusesChoices(t *testing.T) {
	rng := testRNG(8)
	peers := randomSwarm(rng, 1000)
	s := swarmOfPeers(peers)
	now := time.Unix(1000, 0)
	made, unencoded := 0, 0
	var prev *proto.PeerInfo
	for i := range 400 {
		infos, encoded := s.neighboursFor(rng, peers[i].PeerID, 8, now)
		if encoded == nil { // the asker was in the new choice: one of its own, not kept
			unencoded++
		}
		if &infos[0] != prev {
			made++
			prev = &infos[0]
		}
	}
	require.Less(t, made, 400/choiceUses+20, "choices were not reused")
	require.GreaterOrEqual(t, made, 400/choiceUses)
	require.Less(t, unencoded, 20)
}
