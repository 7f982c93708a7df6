package tracker

import (
	"net/netip"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// swarmID names a swarm: a stream name with the public key that signs it (FormatPublicKey's
// spelling). Someone else's key under the same name is another swarm.
type swarmID struct {
	name, key string
}

// swarm holds one swarm's peers in a slice (cheap random sampling) with an index by peer id
// (cheap update and swap-delete), and what the tracker can cross-check about them: how many
// peers each host runs, and which hosts' peers name a peer as their parent.
type swarm struct {
	infos []proto.PeerInfo
	meta  []peerMeta
	index map[string]int
	// perHost counts peers by the IP of their QUIC address.
	perHost map[netip.Addr]int
	// vouch[parent][host] counts the peers on host that name parent as a stripe parent.
	vouch map[string]map[netip.Addr]int
	// weights[i] is neighbourWeight of peer i, kept up to date by put and recount: a choice
	// reads one dense slice instead of every sampled peer's record.
	weights []float64

	// choice is the neighbour choice handed to the last askers (choicecache.go).
	choice cachedChoice

	// Scratch space of chooseNeighbours, reused so a choice allocates little.
	mark          []uint32 // mark[i] == markGen: peer i is in this choice's sample
	markGen       uint32
	scratchPool   []int
	scratchKeys   []uint64
	scratchSorted []uint64
	scratchTaken  []bool
}

type peerMeta struct {
	uploadBps int64
	rev       uint64
	// fp is the record's fingerprint (see fingerprint).
	fp      uint64
	created time.Time
	// host is the IP of the peer's QUIC address (the announcing host's own, unless the tracker
	// allows foreign addresses).
	host netip.Addr
	// parents are the distinct peer ids the peer names as its stripe parents.
	parents []string
	// vouchers counts the other hosts whose peers name this peer as a parent (kept up to date
	// by account and unaccount, so a choice reads it instead of counting).
	vouchers int
}

func newSwarm() *swarm {
	return &swarm{index: map[string]int{}, perHost: map[netip.Addr]int{}, vouch: map[string]map[netip.Addr]int{}}
}

func (s *swarm) len() int { return len(s.infos) }

// has reports whether peerID is in the swarm.
func (s *swarm) has(peerID string) bool {
	_, ok := s.index[peerID]
	return ok
}

// put inserts or replaces a peer; it reports whether the peer is new.
func (s *swarm) put(info proto.PeerInfo, meta peerMeta) bool {
	if i, ok := s.index[info.PeerID]; ok {
		s.unaccount(i)
		s.infos[i], s.meta[i] = info, meta
		s.weights[i] = neighbourWeight(info, 0)
		s.account(i)
		s.recount(info.PeerID)
		return false
	}
	s.index[info.PeerID] = len(s.infos)
	s.infos = append(s.infos, info)
	s.meta = append(s.meta, meta)
	s.weights = append(s.weights, neighbourWeight(info, 0))
	s.account(len(s.infos) - 1)
	s.recount(info.PeerID)
	return true
}

// remove deletes a peer; it reports whether it was there.
func (s *swarm) remove(peerID string) bool {
	i, ok := s.index[peerID]
	if !ok {
		return false
	}
	s.unaccount(i)
	s.choice = cachedChoice{} // it may hold the peer
	last := len(s.infos) - 1
	s.infos[i], s.meta[i], s.weights[i] = s.infos[last], s.meta[last], s.weights[last]
	s.index[s.infos[i].PeerID] = i
	s.infos, s.meta, s.weights = s.infos[:last], s.meta[:last], s.weights[:last]
	delete(s.index, peerID)
	return true
}

func (s *swarm) account(i int) {
	m := &s.meta[i]
	s.perHost[m.host]++
	for _, p := range m.parents {
		hosts := s.vouch[p]
		if hosts == nil {
			hosts = map[netip.Addr]int{}
			s.vouch[p] = hosts
		}
		if hosts[m.host]++; hosts[m.host] == 1 {
			s.recount(p)
		}
	}
}

func (s *swarm) unaccount(i int) {
	m := &s.meta[i]
	if s.perHost[m.host]--; s.perHost[m.host] <= 0 {
		delete(s.perHost, m.host)
	}
	for _, p := range m.parents {
		hosts := s.vouch[p]
		if hosts[m.host]--; hosts[m.host] <= 0 {
			delete(hosts, m.host)
			s.recount(p)
		}
		if len(hosts) == 0 {
			delete(s.vouch, p)
		}
	}
}

// vouchers counts the other hosts whose peers name peer i as a parent. Only these reports lift
// a peer's claimed free slots and depth: a host can say anything about itself, and its own
// peers can say anything about each other.
func (s *swarm) vouchers(i int) int { return s.meta[i].vouchers }

// recount brings peerID's voucher count up to date, if it is in the swarm.
func (s *swarm) recount(peerID string) {
	i, ok := s.index[peerID]
	if !ok {
		return
	}
	hosts := s.vouch[peerID]
	n := len(hosts)
	if _, self := hosts[s.meta[i].host]; self {
		n--
	}
	s.meta[i].vouchers = n
	s.weights[i] = neighbourWeight(s.infos[i], n)
}

// distinctParents returns the distinct non-empty ids of parents, never self.
func distinctParents(self string, parents []string) []string {
	var out []string
	for _, p := range parents {
		if p == "" || p == self {
			continue
		}
		dup := false
		for _, q := range out {
			dup = dup || q == p
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out
}
