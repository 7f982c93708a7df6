package tracker

import (
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// A neighbour choice in a large swarm is handed to a few askers in a row, encoded once: at tens
// of thousands of announces a second, choosing and encoding for every asker was a third of the
// tracker's work, done under the view's lock. A choice is reused at most choiceUses times and
// for at most choiceTTL, never for an asker it holds, and dropped when a peer leaves the swarm,
// so nobody is handed a peer the swarm no longer has.
const (
	choiceUses = 4
	choiceTTL  = 250 * time.Millisecond
)

// cachedChoice is a swarm's current reusable choice.
type cachedChoice struct {
	infos   []proto.PeerInfo // shared by its askers: read only
	encoded []byte           // infos as a JSON array; nil if it could not be encoded
	uses    int
	madeAt  time.Time
}

// neighboursFor returns up to n neighbour candidates for asker and, when the answer may use it,
// their JSON array. The slice may be shared with other askers: callers must not modify it. Call
// with the view's lock held.
func (s *swarm) neighboursFor(rng *rand.Rand, asker string, n int, now time.Time) ([]proto.PeerInfo, []byte) {
	if s == nil {
		return nil, nil
	}
	if s.len() <= n+1 {
		// Everyone but the asker: a choice for nobody would hold the asker.
		return chooseNeighbours(rng, s, asker, n), nil
	}
	c := &s.choice
	if c.infos == nil || c.uses >= choiceUses || now.Sub(c.madeAt) >= choiceTTL || holdsPeer(c.infos, asker) {
		infos := chooseNeighbours(rng, s, "", n)
		if holdsPeer(infos, asker) {
			return chooseNeighbours(rng, s, asker, n), nil
		}
		enc, err := json.Marshal(infos)
		if err != nil {
			enc = nil
		}
		*c = cachedChoice{infos: infos, encoded: enc, madeAt: now}
	}
	c.uses++
	return c.infos, c.encoded
}

func holdsPeer(infos []proto.PeerInfo, peerID string) bool {
	for i := range infos {
		if infos[i].PeerID == peerID {
			return true
		}
	}
	return false
}
