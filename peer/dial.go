package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Dialling: bootstrap addresses, the origin and the tracker's candidates, within MaxNeighbours;
// plus a few connections beyond it to candidates that can be our parent on a stripe we lack.

const (
	// parentDialExtra is how many connections beyond the neighbour budget a node may dial to
	// reach a candidate parent for a stripe it has none for. In a big swarm the budget fills
	// with other newcomers (inbound included), none of them attached; without these extra dials
	// a node never meets a peer that could feed it, and its stripes live on the CDN.
	parentDialExtra = 4
	// parentDialsInFlight bounds the extra dials running at once.
	parentDialsInFlight = 2
)

// evictGrace is how long a neighbour is kept before it may be dropped as useless: a fresh
// connection has not had the time to subscribe or to tell us its depths. (A variable so that a
// test need not wait for it.)
var evictGrace = 10 * time.Second

// spareGrace is how long a neighbour that is no tree link of ours is kept before a newcomer may
// take its place (evictSpare): time to subscribe to it or to take it as a child. (A variable so
// that a test need not wait for it.)
var spareGrace = 2 * time.Second

// dialState is whom the loop dials: the tracker's candidates, dials under way, the backoff of
// addresses that failed, and those it will never dial again.
type dialState struct {
	self       string          // our own mesh address, never a candidate
	candidates []candidate     // from the tracker
	dialing    map[string]bool // addr -> dialled beyond the neighbour budget, for a parent
	notBefore  map[string]time.Time
	failures   map[string]int // consecutive failed dials per address
	bans       banList
}

func newDialState(self string) dialState {
	return dialState{
		self:      self,
		dialing:   make(map[string]bool),
		notBefore: make(map[string]time.Time),
		failures:  make(map[string]int),
		bans:      newBanList(),
	}
}

// prune forgets the backoff of addresses whose last failure is long past, so addresses the tracker
// once proposed do not pile up: a dial that fails again starts its backoff afresh.
func (d *dialState) prune(now time.Time) {
	for addr, t := range d.notBefore {
		if now.Sub(t) > forgetFailedDialAfter {
			delete(d.notBefore, addr)
			delete(d.failures, addr)
		}
	}
}

// forgetFailedDialAfter is how long after its backoff ended a failed address is remembered.
const forgetFailedDialAfter = 5 * time.Minute

// ErrUnsignedOrigin means a tracker's answer carries no registration of our stream signed with
// the watch link's key, so nothing in it says where the origin is.
var ErrUnsignedOrigin = errors.New("no origin registration signed with the watch link's key")

// originRegistration returns the stream's registration from a tracker answer once it has checked
// that the origin signed it with the key of our watch link, for our stream.
func (l *loop) originRegistration(resp proto.AnnounceResponse) (*proto.StreamRegistration, error) {
	reg := resp.Registration
	if reg == nil {
		return nil, fmt.Errorf("%w: the answer has none", ErrUnsignedOrigin)
	}
	key, err := proto.ParsePublicKey(reg.PublicKey)
	if err != nil || !key.Equal(l.cfg.OriginKey) || reg.Name != l.cfg.Stream {
		return nil, fmt.Errorf("%w: it is for stream %q under another key", ErrUnsignedOrigin, reg.Name)
	}
	if err := reg.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsignedOrigin, err)
	}
	return reg, nil
}

// candidate is a neighbour the tracker proposed, with what it said about the peer.
type candidate struct {
	addr      string
	depths    []int // per stripe, -1 = no parent; nil = unknown
	freeSlots int
	// behindNAT: the tracker says the candidate sits behind a NAT; it is dialled only with
	// the punch the tracker scheduled (punch, once: a second dial would find no punch).
	behindNAT bool
	punch     *PunchPlan
}

func (l *loop) onAnnounce(ctx context.Context, resp proto.AnnounceResponse) {
	if reg, err := l.originRegistration(resp); err != nil {
		if !l.warnedUnsigned {
			l.warnedUnsigned = true
			l.n.log.Warn("the tracker's answer names no origin signed with the watch link's key; its origin addresses are ignored", "error", err)
		}
	} else {
		if l.cfg.OriginHTTP == "" && reg.HTTPURL != "" && trimSlash(reg.HTTPURL) != l.originHTTP {
			l.originHTTP = trimSlash(reg.HTTPURL)
			u := l.originHTTP
			l.n.originHTTP.Store(&u)
			select {
			case l.n.originLearnt <- struct{}{}:
			default:
			}
		}
		if l.cfg.OriginQUIC == "" && reg.QUICAddr != "" {
			l.originQUIC = normalizeAddr(reg.QUICAddr)
		}
	}
	if resp.Stripes != 0 && resp.Stripes != len(l.stripes) {
		l.n.log.Warn("tracker says the stream has a different stripe count; neighbours with it will refuse us",
			"tracker", resp.Stripes, "ours", len(l.stripes))
	}
	l.dials.candidates = l.dials.candidates[:0]
	received := time.Now()
	for _, p := range resp.Neighbours {
		if a := normalizeAddr(p.Addr); a != "" {
			c := candidate{addr: a, freeSlots: p.FreeSlots}
			c.behindNAT = p.NATKind == proto.NATCone || p.NATKind == proto.NATSymmetric
			if p.Punch != nil {
				id, _ := proto.ParsePunchID(p.Punch.ID) // ParseAnnounceResponse checked it
				target, err := netip.ParseAddrPort(a)
				if err == nil {
					c.punch = &PunchPlan{Target: target, At: received.Add(time.Duration(p.Punch.DelayMs) * time.Millisecond), ID: id}
				}
			}
			if len(p.Depths) == len(l.stripes) {
				c.depths = p.Depths
			}
			l.dials.candidates = append(l.dials.candidates, c)
		}
	}
	l.dialMore(ctx)
}

// orphanStripes marks the stripes we have no attached parent for (nor a subscription on its way).
func (l *loop) orphanStripes() []bool {
	out := make([]bool, len(l.stripes))
	for s, st := range l.stripes {
		out[s] = (st.parent == nil || st.depth == proto.NoDepth) && st.pendingSub == nil
	}
	return out
}

// feedsOrphan says whether a candidate says it could be our parent on a stripe we lack one for:
// it has a depth there and a free slot.
func feedsOrphan(depths []int, freeSlots int, orphan []bool) bool {
	if freeSlots <= 0 || len(depths) != len(orphan) {
		return false
	}
	for s, o := range orphan {
		if o && depths[s] >= 0 && depths[s] < int(proto.NoDepth)-1 {
			return true
		}
	}
	return false
}

func (l *loop) dialMore(ctx context.Context) {
	if l.cfg.Root {
		return
	}
	connected := make(map[string]bool, 2*len(l.nbs))
	for _, nb := range l.nbs {
		connected[nb.addr] = true
		if nb.dialAddr != "" {
			connected[nb.dialAddr] = true
		}
	}
	canDial := func(addr string) bool {
		if addr == "" || addr == l.dials.self || connected[addr] || l.dials.bans.addr(addr) {
			return false
		}
		if ap, err := netip.ParseAddrPort(addr); err == nil && l.n.guard.isBanned(ipOf(net.UDPAddrFromAddrPort(ap))) {
			return false
		}
		if _, ok := l.dials.dialing[addr]; ok {
			return false
		}
		nb, ok := l.dials.notBefore[addr]
		return !ok || !l.now.Before(nb)
	}
	dial := func(addr string, extra bool) {
		l.dials.dialing[addr] = extra
		connected[addr] = true
		l.n.stats.dials.Add(1)
		l.n.wg.Go(func() { l.n.dial(ctx, addr) })
	}
	// A NATed candidate is dialled only with its punch, once and not too late; the punch
	// takes the dial's place.
	punchable := func(c *candidate) bool {
		if !c.behindNAT {
			return true
		}
		return c.punch != nil && l.now.Before(c.punch.At.Add(punchLate))
	}
	dialCandidate := func(c *candidate, extra bool) {
		if c.punch == nil {
			dial(c.addr, extra)
			return
		}
		plan := *c.punch
		c.punch = nil
		l.dials.dialing[c.addr] = extra
		connected[c.addr] = true
		l.n.stats.dials.Add(1)
		l.n.wg.Go(func() { l.n.punchDial(ctx, c.addr, plan) })
	}
	// The origin is always a candidate parent, whatever the neighbour budget.
	if canDial(l.originQUIC) {
		dial(l.originQUIC, false)
	}
	for _, a := range l.cfg.Bootstrap {
		if a = normalizeAddr(a); canDial(a) && len(l.nbs)+len(l.dials.dialing) < l.cfg.MaxNeighbours {
			dial(a, false)
		}
	}
	orphan := l.orphanStripes()
	needParent := slices.Contains(orphan, true)
	for i := range l.dials.candidates {
		c := &l.dials.candidates[i]
		if !canDial(c.addr) || !punchable(c) {
			continue
		}
		if len(l.nbs)+len(l.dials.dialing) < l.cfg.MaxNeighbours {
			dialCandidate(c, false)
			continue
		}
		if needParent && feedsOrphan(c.depths, c.freeSlots, orphan) &&
			l.extraDials() < parentDialsInFlight && len(l.nbs)+len(l.dials.dialing) < l.neighbourCap() {
			l.n.stats.parentDials.Add(1)
			dialCandidate(c, true)
		}
	}
}

// extraDials counts the dials running beyond the neighbour budget.
func (l *loop) extraDials() int {
	n := 0
	for _, extra := range l.dials.dialing {
		if extra {
			n++
		}
	}
	return n
}

// neighbourCap is the most connections a node holds: inbound ones up to twice the budget, plus
// the parent-seeking extra dials.
func (l *loop) neighbourCap() int { return 2*l.cfg.MaxNeighbours + parentDialExtra }

// uselessNeighbour says whether a neighbour may be dropped to make room: it is neither parent nor
// child nor pending subscription on any stripe, we have held it for evictGrace, and it cannot
// feed us: unattached on every stripe (it gets its own chunks from repair and the CDN), or it
// dialled us and never delivered a verified chunk (what it claims about its depths costs it
// nothing; a silent connection that says depth 1 everywhere must not squat a slot). To the root
// nobody delivers: a neighbour that is no seed child is useless to it.
func (l *loop) uselessNeighbour(nb *neighbour) bool {
	if nb.origin || l.now.Sub(nb.connectedAt) < evictGrace {
		return false
	}
	if l.treeLink(nb) {
		return false
	}
	// One that dialled us and never delivered a chunk is useless even while we wait for its
	// answer to a SUBSCRIBE: orphans spread their SUBSCRIBEs over the candidates (spreadParent),
	// and silent squatters claiming depth 1 everywhere would otherwise each hold one and shield
	// each other from eviction.
	if l.cfg.Root || (!nb.dialled && !nb.delivered.Load()) {
		return true
	}
	if l.pendingTo(nb) {
		return false
	}
	for _, d := range nb.depths {
		if d != proto.NoDepth {
			return false
		}
	}
	return true
}

// evictUseless drops up to count useless neighbours and says how many went: first those that
// dialled us and never delivered anything, then the oldest.
func (l *loop) evictUseless(count int, reason string) int {
	var victims []*neighbour
	for _, nb := range l.nbs {
		if l.uselessNeighbour(nb) {
			victims = append(victims, nb)
		}
	}
	silent := func(nb *neighbour) int {
		if !nb.dialled && !nb.delivered.Load() {
			return 0
		}
		return 1
	}
	slices.SortFunc(victims, func(a, b *neighbour) int {
		if c := silent(a) - silent(b); c != 0 {
			return c
		}
		if c := a.connectedAt.Compare(b.connectedAt); c != 0 {
			return c
		}
		return int(a.id) - int(b.id)
	})
	if len(victims) > count {
		victims = victims[:count]
	}
	for _, nb := range victims {
		l.evict(nb, reason)
	}
	return len(victims)
}

// evict drops a neighbour to make room, telling it we are full so that it backs off before
// dialling again.
func (l *loop) evict(nb *neighbour, reason string) {
	l.n.stats.evicted.Add(1)
	_ = nb.conn.CloseWithError(codeRejected, rejectedFull)
	l.dropNeighbour(nb, reason)
}

// evictSpare drops the longest-held neighbour that is no tree link of ours (neither parent nor
// child nor pending subscription) and has been held for spareGrace, to let a newcomer in; it
// says how many went (0 or 1). Without it, once a swarm formed every node held its budget of
// attached, hence not useless, neighbours and refused every newcomer: joiners into a formed
// swarm of 60 (scale lab) got 2-3 neighbours of the 8 they dialled, one parent for every stripe,
// and their start segments from the CDN. A spare link is worth less to us than a newcomer's
// first links are to it, and what dialled it finds another.
func (l *loop) evictSpare(reason string) int {
	var victim *neighbour
	for _, nb := range l.nbs {
		if nb.origin || l.now.Sub(nb.connectedAt) < spareGrace || l.treeLink(nb) || l.pendingTo(nb) {
			continue
		}
		if victim == nil || nb.connectedAt.Before(victim.connectedAt) || (nb.connectedAt.Equal(victim.connectedAt) && nb.id < victim.id) {
			victim = nb
		}
	}
	if victim == nil {
		return 0
	}
	l.evict(victim, reason)
	return 1
}

// pendingTo says whether a SUBSCRIBE of ours to nb awaits its answer.
func (l *loop) pendingTo(nb *neighbour) bool {
	for _, st := range l.stripes {
		if st.pendingSub == nb {
			return true
		}
	}
	return false
}

// trimNeighbours keeps the connection count near the budget: over twice the budget, useless
// neighbours go until it is back under.
func (l *loop) trimNeighbours() {
	if l.cfg.Root {
		l.checkSeeds()
		return
	}
	if over := len(l.nbs) - 2*l.cfg.MaxNeighbours; over > 0 {
		l.evictUseless(over, "neighbour budget: making room for better parents")
	}
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
