package peer

import (
	"net/netip"
	"time"
)

// Seed slots: who gets the root's few stripe children. They are the scarcest thing in the mesh
// (SeedCopies per stripe feed the whole audience), so one source IP may hold only its share, and
// a seed child that shows no sign of forwarding gives its slot up when another candidate asks.
//
// What the root can check: the child's IP (QUIC validated it, with a Retry under load), how long
// it has held the slot, whether it still talks to us, and what it claims in STATUS (its depths
// and free child slots). What it cannot: whether the child forwards anything, since chunks go
// from the child to its own children over connections the root does not see, and no message
// names a node's parent. So "forwards nothing" is read from the child's own claims: its free
// slots never went down after it got the seed, i.e. it never said it took a child. A squatter
// that lies about taking children keeps its slot, but holds at most its IP's share.

var (
	// seedGrace is how long a new seed child may show no children before another candidate
	// may take its slot.
	seedGrace = 10 * time.Second
	// displaceEvery bounds how often one stripe's seed child is replaced, so honest idle
	// children in a small swarm do not churn.
	displaceEvery = seedGrace
) // variables so that a test need not wait for them

// seedBook is the loop's record of the seed slots it granted (root only).
type seedBook struct {
	grants    map[uint64]seedGrant // neighbour id ->
	displaced []time.Time          // per stripe, when a child last lost its slot to another
	idle      int                  // idleSeedSlots as last told to the neighbours
}

type seedGrant struct {
	at   time.Time
	free int // the free slots it claimed when it got its first seed slot
}

// seedShare is the most seed slots one source IP may hold over all stripes: a quarter of them,
// at least one (and at most one per stripe, see rootGrants).
func seedShare(stripes, seedCopies int) int { return max(1, stripes*seedCopies/4) }

func (l *loop) seedBook() *seedBook {
	if l.seeds == nil {
		l.seeds = &seedBook{grants: make(map[uint64]seedGrant), displaced: make([]time.Time, len(l.stripes))}
	}
	return l.seeds
}

// sources counts the root's neighbours with each source IP counted once (exempt ones, the load
// test's, each count): sixteen connections of one squatter are one candidate, not sixteen, when
// the seed slots are spread over the candidates (rootStripesPerChild).
func (l *loop) sources() int {
	seen := make(map[netip.Addr]bool, len(l.nbs))
	n := 0
	for _, nb := range l.nbs {
		ip := nb.ip
		if l.n.guard.exempt(ip) {
			n++
		} else if !seen[ip] {
			seen[ip] = true
			n++
		}
	}
	return n
}

// seedSlotsOfIP counts the seed slots held from ip, on stripe s and in all.
func (l *loop) seedSlotsOfIP(ip netip.Addr, s int) (onStripe, total int) {
	for i, st := range l.stripes {
		for _, c := range st.children {
			if c.ip == ip {
				total++
				if i == s {
					onStripe++
				}
			}
		}
	}
	return onStripe, total
}

// rootGrants decides whether the root gives nb a seed slot on stripe s, making room if a child
// there forwards nothing. The caller adds nb to the stripe's children.
func (l *loop) rootGrants(nb *neighbour, s int) bool {
	st := l.stripes[s]
	if l.rootStripesOf(nb) >= rootStripesPerChild(l.cfg.Stripes, l.cfg.SeedCopies, l.sources()) {
		return false
	}
	ip := nb.ip
	exempt := l.n.guard.exempt(ip)
	if !exempt {
		onStripe, total := l.seedSlotsOfIP(ip, s)
		if onStripe >= 1 || total >= seedShare(l.cfg.Stripes, l.cfg.SeedCopies) {
			l.n.guard.seedRefused.Inc()
			return false
		}
	}
	book := l.seedBook()
	grant := func() bool {
		if _, ok := book.grants[nb.id]; !ok || l.rootStripesOf(nb) == 0 {
			book.grants[nb.id] = seedGrant{at: l.now, free: nb.freeSlots}
		}
		return true
	}
	if len(st.children) < l.cfg.SeedCopies {
		return grant()
	}
	// Full. A candidate that says it can feed others may take the slot of a child that, by its
	// own account, feeds no one.
	if exempt || nb.freeSlots <= 0 || l.now.Sub(book.displaced[s]) < displaceEvery {
		return false
	}
	victim := l.idleSeedChild(s, ip)
	if victim == nil {
		return false
	}
	delete(st.children, victim.id)
	l.statusDirty = true
	book.displaced[s] = l.now
	if l.rootStripesOf(victim) == 0 {
		delete(book.grants, victim.id)
	}
	l.n.guard.seedDisplaced.Inc()
	l.n.log.Info("seed child forwards nothing; its slot goes to another candidate",
		"stripe", s, "peer", victim.String(), "to", nb.String())
	return grant()
}

// idleSeedSlots counts the stripes whose seed slots are all taken and one of them by an idle
// child: the root offers them as free (a candidate may take them), or a viewer would never ask a
// root that looks full. Children from exempt IPs never count: none of them is displaced.
func (l *loop) idleSeedSlots() int {
	n := 0
	for s, st := range l.stripes {
		if len(st.children) >= l.cfg.SeedCopies && l.idleSeedChild(s, netip.Addr{}) != nil {
			n++
		}
	}
	return n
}

// checkSeeds has the root tell its neighbours when a seed slot became idle (or stopped being).
func (l *loop) checkSeeds() {
	book := l.seedBook()
	if idle := l.idleSeedSlots(); idle != book.idle {
		book.idle = idle
		l.statusDirty = true
	}
}

// idleSeedChild is the child on stripe s, from an IP other than ip, that has held its slot for
// seedGrace and never claimed to take a child of its own; nil when there is none.
func (l *loop) idleSeedChild(s int, ip netip.Addr) *neighbour {
	book := l.seedBook()
	var idle *neighbour
	var idleAt time.Time
	for _, c := range l.stripes[s].children {
		g, ok := book.grants[c.id]
		if !ok || l.now.Sub(g.at) < seedGrace || c.ip == ip || l.n.guard.exempt(c.ip) {
			continue
		}
		if c.freeSlots < g.free {
			continue // it took children since (so it says)
		}
		if idle == nil || g.at.Before(idleAt) {
			idle, idleAt = c, g.at
		}
	}
	return idle
}

// forgetSeed drops what the book knows of a neighbour that left.
func (l *loop) forgetSeed(nb *neighbour) {
	if l.seeds != nil {
		delete(l.seeds.grants, nb.id)
	}
}
