package peer

import (
	"context"
	"maps"
	"net"
	"time"

	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/proto"
)

const (
	// tickInterval paces the loop's periodic work. Every wait it checks is hundreds of
	// milliseconds; at 50 ms the ticks of 200 in-process peers were a tenth of the machine.
	tickInterval = 100 * time.Millisecond
	// haveEvery (ticks): HAVE batches go out every 500 ms, the root's every second. Every
	// control message is a small packet of its own plus an ACK; at 150 ms HAVEs were two
	// thirds of the control messages and a quarter of all packets in the 50-peer simulation,
	// and repair rarely needs to know sooner: a gap in a stripe (laterOfStripeHeld) is seen
	// at once, and holders of older chunks were announced long before.
	haveEvery     = int(500 * time.Millisecond / tickInterval)
	rootHaveEvery = int(time.Second / tickInterval)
	// heartbeatEvery: a neighbour we told nothing for this long gets a STATUS, so that silence
	// means death (parentSilent) and not merely nothing new to say.
	// 500 ms gives three chances in the 1.5 s a silent parent is allowed; at 300 ms the
	// heartbeats were a third of all control messages at 100 peers.
	heartbeatEvery   = 500 * time.Millisecond
	subscribeTimeout = 2500 * time.Millisecond // a loaded parent answers late; giving up sooner only churns
	refuseBackoff    = 2 * time.Second
	stallPenalty     = 5 * time.Second
	requestTimeout   = 800 * time.Millisecond
	freshRequest     = 200 * time.Millisecond // a REQUEST younger than this keeps its chunk off the CDN
	maxOutstanding   = 32
	fetchRetry       = 500 * time.Millisecond
	maxFetchJobs     = 3
	dialBackoff      = 2 * time.Second
	joinWindow       = 3 * time.Second
	// joinSegments is how many complete segments before the live edge a joiner gets, so its
	// player starts with that much buffer. Two, not three: when a crowd arrives at once nobody
	// but the origin holds them, and each one is a copy of a segment the CDN sends to every
	// joiner (measured at 100 peers joining together: the first 8 s cost more origin egress
	// than the minute after).
	joinSegments = 2
	// joinFallbackDelay is how long a joiner waits for neighbours to deliver a segment the
	// origin has completed before it fetches it from the CDN: its player is waiting.
	joinFallbackDelay = 300 * time.Millisecond
	// repairSpan is how many segments behind the newest known one repair and fallback look at.
	repairSpan = 4
	// repairEvery: the repair and fallback scans run every 100 ms; their waits are hundreds
	// of ms.
	repairEvery = int(100 * time.Millisecond / tickInterval)
	dialEvery   = int(500 * time.Millisecond / tickInterval)
	// childCheckEvery: silent children are looked for every 200 ms; housekeepingEvery: the
	// neighbour budget, the maps' pruning and the repair rate every second.
	childCheckEvery   = int(200 * time.Millisecond / tickInterval)
	housekeepingEvery = int(time.Second / tickInterval)
	// lagThreshold: a tick this late says the loop itself was starved.
	lagThreshold = 250 * time.Millisecond
	// abandonLag is how far the swarm must have moved past an incomplete segment, after fallback
	// failed twice, before we give up on it so the playlist can move on.
	abandonLag = 3
	// haveSeqAhead bounds how far past the verified live edge a neighbour's HAVE may point and
	// still be remembered: a neighbour nearer the root is a segment or so ahead of us.
	haveSeqAhead   = 2
	maxHaveIndexes = 8192
	// maxClaimsPerNeighbour bounds what we remember a neighbour holds (chunk keys): a full window
	// of a 10 Mbit/s stream is a few thousand chunks.
	maxClaimsPerNeighbour = 16384
	// defaultChunkIndexLimit bounds claimed chunk indexes before any segment told us its signed
	// chunk count: 4 MiB in 8 KiB chunks, a 2 s segment at 16 Mbit/s.
	defaultChunkIndexLimit = 512
	// maxFalseHaves is how many HAVEs with provably or outrageously false claims a neighbour may
	// send before it is banned; one could be a race with a restarted stream, three are a habit.
	maxFalseHaves = 3
	// repairBurst lets a few chunks of repair go out at once (bytes).
	repairBurst = 4 * 16 << 10
	// repairWaitPerLevel is added to RepairWait for each level of depth below the first: a
	// push takes longer to reach a deep node, and asking early only duplicates it.
	repairWaitPerLevel = 100 * time.Millisecond
)

// stripeState is the loop's view of one stripe: our parent and depth, and our children.
type stripeState struct {
	parent           *neighbour
	depth            uint8
	parentSince      time.Time
	lastFromParent   time.Time
	undeliveredSince time.Time // we learned of a chunk the parent did not push; zero = none
	pendingSub       *neighbour
	pendingAt        time.Time
	refused          map[uint64]time.Time // neighbour id -> not before (it let us down)
	// full holds neighbours that refused a SUBSCRIBE on this stripe (id -> not before): they had
	// no slot. Unlike refused, it is forgotten when the neighbour says it has free slots again.
	full      map[uint64]time.Time
	children  map[uint64]*neighbour
	newest    chunkKey // newest chunk of the stripe we hold
	hasNewest bool
	// subFrom is the FromSeq of our subscription to the parent (pendingFrom while it is
	// pending): what the parent owes us starts there, so older chunks are no evidence against it.
	subFrom, pendingFrom uint64
	// delivered counts the chunks the current parent pushed us first: a parent is kept for what it
	// delivers, not for the depth it claims (maintainStripes).
	delivered int
}

// loop owns the node's state; every method runs on the loop goroutine.
type loop struct {
	n   *Node
	cfg Config
	ctx context.Context // the node's; the loop starts goroutines with it
	now time.Time

	nbs    map[uint64]*neighbour
	byPeer map[[16]byte]*neighbour

	// The loop's rooms: each owns one part of the state, with its own pruning; the loop composes
	// them and is still the one goroutine that touches any of it.
	dials    dialState      // whom to dial, backoffs, bans (dial.go)
	stripes  []*stripeState // our parent and children per stripe (stripe.go)
	seeds    *seedBook      // root: the seed slots granted (seed.go); nil until the first
	timeline timeline       // what is verifiably known of the stream's segments (timeline.go)
	haves    haveState      // HAVEs to send and chunks neighbours claim we miss (have.go)
	repairs  repairState    // REQUESTs out and their history (repair.go)
	fetches  fetchState     // the CDN path's jobs and budgets (fallback.go)
	// llWait is what the local LL-HLS player waits for, read once per fallback scan
	// (llfallback.go).
	llWait llWait

	joinedAt        time.Time
	joining         bool
	lastChunkAt     time.Time
	unattachedSince time.Time

	originHTTP string
	originQUIC string
	// warnedUnsigned: we said once that the tracker's answers name no signed origin.
	warnedUnsigned bool
	statusDirty    bool
	bitrate        int64
	targetDur      time.Duration
	repairLimit    *rate.Limiter    // bytes/s of chunks sent in answer to REQUESTs
	deferred       []deferredRepair // REQUESTs waiting for repairLimit (deferred.go)
	ticks          int
	lastTickAt     time.Time
	lagUntil       time.Time // until then our loop was lagging: parents are not judged
}

func newLoop(n *Node) *loop {
	l := &loop{
		n:          n,
		cfg:        n.cfg,
		now:        time.Now(),
		nbs:        make(map[uint64]*neighbour),
		byPeer:     make(map[[16]byte]*neighbour),
		dials:      newDialState(n.Addr().String()),
		timeline:   timeline{seen: make(map[uint64]time.Time)},
		haves:      haveState{advertised: make(map[uint64]map[uint32]time.Time)},
		repairs:    newRepairState(),
		fetches:    newFetchState(),
		joining:    !n.cfg.Root,
		originHTTP: n.cfg.OriginHTTP,
		originQUIC: normalizeAddr(n.cfg.OriginQUIC),
		targetDur:  n.cfg.TargetDuration,
	}
	l.joinedAt = l.now
	l.unattachedSince = l.now
	l.repairLimit = rate.NewLimiter(0, repairBurst)
	for range n.cfg.Stripes {
		st := &stripeState{
			depth:    proto.NoDepth,
			refused:  make(map[uint64]time.Time),
			full:     make(map[uint64]time.Time),
			children: make(map[uint64]*neighbour),
		}
		if n.cfg.Root {
			st.depth = 0
		}
		l.stripes = append(l.stripes, st)
	}
	l.updateRepairLimit()
	return l
}

func normalizeAddr(a string) string {
	if a == "" {
		return ""
	}
	if u, err := net.ResolveUDPAddr("udp", a); err == nil {
		return u.String()
	}
	return a
}

func (l *loop) run(ctx context.Context) {
	l.ctx = ctx
	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	l.tick()
	for {
		select {
		case <-ctx.Done():
			l.shutdown()
			return
		case ev := <-l.n.events:
			l.now = time.Now()
			ev.apply(l)
		case c := <-l.n.publishCh:
			l.now = time.Now()
			l.onChunk(nil, c, c.Len(), SourceLocal)
		case <-tick.C:
			l.now = time.Now()
			l.tick()
		}
	}
}

func (l *loop) tick() {
	ctx := l.ctx
	// A tick far behind its schedule means our own process is starved (CPU, GC): silence and
	// stalls we see now may be our lag, not our parents' fault, so we do not judge them for
	// a moment.
	if !l.lastTickAt.IsZero() && l.now.Sub(l.lastTickAt) > lagThreshold {
		l.lagUntil = l.now.Add(l.cfg.ParentTimeout)
		l.n.stats.loopLags.Add(1)
	}
	l.lastTickAt = l.now
	l.sendDeferredRepairs()
	if !l.cfg.Root {
		l.maintainStripes()
		if l.ticks%repairEvery == 0 {
			l.repair()
			l.llWait = l.llPlayerWait()
			l.fallback(ctx)
			l.partFallback(ctx)
		}
		l.updateJoining()
	}
	// Dialling reacts to the tracker's answers (onAnnounce dials at once) and to lost
	// neighbours; twice a second is soon enough, and it walks every neighbour.
	if l.ticks%dialEvery == 0 {
		l.dialMore(ctx)
	}
	if l.ticks%childCheckEvery == 0 && l.now.After(l.lagUntil) {
		l.dropSilentChildren()
	}
	l.ticks++
	every := haveEvery
	if l.cfg.Root {
		every = rootHaveEvery
	}
	// A joiner announces what it got at once: in a crowd arriving together its start segments
	// are what the joiners after it want, and each HAVE heard in time keeps a copy off the CDN.
	if l.ticks%every == 0 || l.joining {
		l.flushHave()
	}
	if l.statusDirty {
		l.broadcastStatus()
	}
	l.heartbeat()
	if l.ticks%housekeepingEvery == 0 {
		l.trimNeighbours()
		l.prune()
		l.updateRepairLimit()
		l.n.stats.packets.update(l.nbs)
	}
	// A segment's time without a verified chunk: the origin's playlist then tells us the edge,
	// and which parents owe us a whole segment (onPlaylist), whatever they say about themselves.
	meshSilent := l.lastChunkAt.IsZero() || l.now.Sub(l.lastChunkAt) > l.targetDur
	unattached := !l.unattachedSince.IsZero() && l.now.Sub(l.unattachedSince) > l.cfg.ParentTimeout
	l.n.wantPlaylist.Store(!l.cfg.Root && (l.joining || unattached || meshSilent))
	l.publishTopology()
}

// prune forgets what is older than the window.
func (l *loop) prune() {
	l.dials.prune(l.now)
	for _, st := range l.stripes {
		maps.DeleteFunc(st.refused, func(_ uint64, until time.Time) bool { return l.now.After(until) })
		maps.DeleteFunc(st.full, func(_ uint64, until time.Time) bool { return l.now.After(until) })
	}
	keep := uint64(l.n.window.Config().Keep)
	if !l.timeline.known || l.timeline.newest < keep {
		return
	}
	low := l.timeline.newest - keep
	for _, nb := range l.nbs {
		nb.has.dropBelow(low)
		nb.dropCancelledBelow(low)
	}
	l.timeline.prune(low)
	l.haves.prune(low)
	l.repairs.prune(low)
	l.fetches.prune(low)
}

// publishTopology gives Stats and the tracker the loop's view, and the gauges their values, when
// it changed: it is asked every tick and rarely changes.
func (l *loop) publishTopology() {
	t := &topology{
		Depths:     depthsInt(l.depths()),
		FreeSlots:  l.freeSlots(),
		Neighbours: len(l.nbs),
		Children:   l.totalChildren(),
		Joining:    l.joining,
	}
	for _, nb := range l.nbs {
		t.Links.add(nb.link)
		if nb.dialled {
			t.Dialled.add(nb.link)
		}
	}
	for _, st := range l.stripes {
		id := ""
		if st.parent != nil {
			t.Parents++
			id = st.parent.hexID()
		}
		t.ParentIDs = append(t.ParentIDs, id)
	}
	if prev := l.n.topology.Load(); prev != nil && prev.equal(t) {
		return
	}
	l.n.topology.Store(t)
	l.n.metrics.children.Set(float64(t.Children))
	l.n.metrics.parents.Set(float64(t.Parents))
	l.n.metrics.linkKinds.WithLabelValues(linkDirect.String()).Set(float64(t.Links.Direct))
	l.n.metrics.linkKinds.WithLabelValues(linkPunched.String()).Set(float64(t.Links.Punched))
	l.n.metrics.linkKinds.WithLabelValues(linkOutgoing.String()).Set(float64(t.Links.OutgoingOnly))
}

// shutdown says GOODBYE to every neighbour, gives the messages a moment to leave, then closes.
func (l *loop) shutdown() {
	for _, nb := range l.nbs {
		nb.send(&proto.Goodbye{Reason: "leaving"})
	}
	deadline := time.NewTimer(300 * time.Millisecond)
	defer deadline.Stop()
wait:
	for _, nb := range l.nbs {
		select {
		case <-nb.writerDone:
		case <-deadline.C:
			break wait
		}
	}
	for _, nb := range l.nbs {
		nb.gone = true
		_ = nb.conn.CloseWithError(codeGoodbye, "leaving")
	}
	clear(l.nbs)
}
