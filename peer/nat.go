package peer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/crowdsurf/crowdsurf/proto"
)

// NAT traversal in the node. One goroutine (bindingReader) reads every non-QUIC datagram of the
// mesh Transport, since quic-go keeps one queue of them: binding responses go to the reflexive
// discovery, PUNCH_REQUESTs from an observer (the tracker's "punch now") start a punch, and the
// other side's PUNCH datagrams are only counted. The dialling side of a punch is the loop's
// dial of a candidate that came with a punch schedule (punchDial).

const (
	// punchLate is how late after its moment a scheduled punch is still dialled: the other side
	// punched at the moment, and its mapping towards us lives far longer than this, so a late
	// dial still finds the door open; later than this the candidate list is stale anyway.
	punchLate = 3 * time.Second
	// punchTargetTTL is how long an address we punched towards counts as a punched link when
	// it connects to us.
	punchTargetTTL = 5 * time.Second
	// maxPunchOrders bounds the punch orders a node remembers (ids seen, targets): a tracker,
	// or someone spoofing its observer, cannot make it remember more.
	maxPunchOrders = 256
)

// linkKind is how a neighbour connection came about, for operators and the load test.
type linkKind uint8

const (
	// linkDirect: dialled at a public address, or accepted without a punch.
	linkDirect linkKind = iota
	// linkPunched: made by a punch (either side).
	linkPunched
	// linkOutgoing: we dialled it from behind a NAT; nobody could have dialled us.
	linkOutgoing
)

func (k linkKind) String() string {
	switch k {
	case linkPunched:
		return "punched"
	case linkOutgoing:
		return "outgoing_only"
	}
	return "direct"
}

// LinkCounts counts neighbour connections by how they came about.
type LinkCounts struct {
	// Direct: dialled at a public address, or accepted without a punch.
	Direct int `json:"direct"`
	// Punched: made through both NATs by a punch the tracker scheduled.
	Punched int `json:"punched"`
	// OutgoingOnly: dialled by us from behind a NAT to a public peer; it could not dial us.
	OutgoingOnly int `json:"outgoing_only"`
}

func (c *LinkCounts) add(k linkKind) {
	switch k {
	case linkPunched:
		c.Punched++
	case linkOutgoing:
		c.OutgoingOnly++
	default:
		c.Direct++
	}
}

// natState is the node's NAT-traversal state shared by its goroutines.
type natState struct {
	observers      atomic.Pointer[[]net.Addr]
	observersKnown chan struct{}
	observersOnce  sync.Once
	responses      chan *proto.BindingResponse
	announceNow    chan struct{} // a fresh reflexive address is worth announcing at once

	mu      sync.Mutex
	orders  map[proto.TxID]time.Time // punch orders already acted on -> forget after
	targets map[netip.AddrPort]time.Time
}

func newNATState(observers []net.Addr) *natState {
	s := &natState{
		observersKnown: make(chan struct{}),
		responses:      make(chan *proto.BindingResponse, 4),
		announceNow:    make(chan struct{}, 1),
		orders:         make(map[proto.TxID]time.Time),
		targets:        make(map[netip.AddrPort]time.Time),
	}
	if len(observers) > 0 {
		s.setObservers(observers)
	}
	return s
}

func (s *natState) setObservers(addrs []net.Addr) {
	s.observers.Store(&addrs)
	s.observersOnce.Do(func() { close(s.observersKnown) })
}

// learnObservers takes the observers a tracker answer names, unless Config.Observers set them.
func (n *Node) learnObservers(addrs []string) {
	if len(n.cfg.Observers) > 0 || len(addrs) == 0 {
		return
	}
	var parsed []net.Addr
	for _, a := range addrs {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			parsed = append(parsed, net.UDPAddrFromAddrPort(ap))
		}
	}
	if old := n.nat.observers.Load(); old != nil && sameAddrs(*old, parsed) {
		return
	}
	n.nat.setObservers(parsed)
}

func sameAddrs(a, b []net.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].String() != b[i].String() {
			return false
		}
	}
	return true
}

// isObserver says whether a datagram's source is one of our observers: only they may order a
// punch (an off-path sender would have to spoof the tracker's address, and gains five small
// packets towards an address of its choice).
func (n *Node) isObserver(from net.Addr) bool {
	obs := n.nat.observers.Load()
	if obs == nil {
		return false
	}
	src, ok := addrPortOf(from)
	if !ok {
		return false
	}
	for _, o := range *obs {
		if ap, ok := addrPortOf(o); ok && ap == src {
			return true
		}
	}
	return false
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	ap, err := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err == nil
}

// bindingReader is the one reader of the Transport's non-QUIC datagrams, until ctx ends.
func (n *Node) bindingReader(ctx context.Context) {
	buf := make([]byte, 1500)
	for {
		size, from, err := n.tr.ReadNonQUICPacket(ctx, buf)
		if err != nil {
			return
		}
		m, _, err := proto.ParseBinding(buf[:size])
		if err != nil {
			continue
		}
		switch m := m.(type) {
		case *proto.BindingResponse:
			if !m.Observed.IsValid() {
				continue
			}
			select {
			case n.nat.responses <- m:
			default: // no discovery running, or it has its answer already
			}
		case *proto.PunchRequest:
			if !n.isObserver(from) {
				continue
			}
			n.onPunchOrder(ctx, m.ID, m.Target, time.Duration(m.DelayMs)*time.Millisecond)
		case *proto.Punch:
			n.stats.punchesReceived.Add(1)
		}
	}
}

// onPunchOrder punches towards target after delay, once per order id: the same order may come
// as a PUNCH_REQUEST and again in an announce answer.
func (n *Node) onPunchOrder(ctx context.Context, id proto.TxID, target netip.AddrPort, delay time.Duration) {
	if n.tr == nil || !target.IsValid() {
		return
	}
	now := time.Now()
	n.nat.mu.Lock()
	for k, t := range n.nat.orders {
		if now.After(t) {
			delete(n.nat.orders, k)
		}
	}
	for k, t := range n.nat.targets {
		if now.After(t) {
			delete(n.nat.targets, k)
		}
	}
	_, seen := n.nat.orders[id]
	full := len(n.nat.orders) >= maxPunchOrders || len(n.nat.targets) >= maxPunchOrders
	if !seen && !full {
		n.nat.orders[id] = now.Add(2 * punchTargetTTL)
		n.nat.targets[netip.AddrPortFrom(target.Addr().Unmap(), target.Port())] = now.Add(punchTargetTTL)
	}
	n.nat.mu.Unlock()
	if seen || full {
		return
	}
	n.stats.punchOrders.Add(1)
	n.metrics.punchOrders.Inc()
	plan := PunchPlan{Target: target, At: now.Add(delay), ID: id}
	n.wg.Go(func() {
		if err := Punch(ctx, n.tr, plan, PunchConfig{}); err != nil && ctx.Err() == nil {
			n.log.Debug("punch order", "target", target, "error", err)
		}
	})
}

// punchedFrom says whether an inbound connection comes from an address we punched towards.
func (n *Node) punchedFrom(addr net.Addr) bool {
	ap, ok := addrPortOf(addr)
	if !ok {
		return false
	}
	n.nat.mu.Lock()
	defer n.nat.mu.Unlock()
	until, ok := n.nat.targets[ap]
	return ok && time.Now().Before(until)
}

// natKind is what the observers last said about our NAT.
func (n *Node) natKind() proto.NATKind {
	if r := n.reflexive.Load(); r != nil {
		return r.Kind
	}
	return proto.NATUnknown
}

// dialledLink is the kind of a connection we dialled without a punch: outgoing only when we
// sit behind a NAT (nobody could have dialled us), else direct.
func (n *Node) dialledLink() linkKind {
	switch n.natKind() {
	case proto.NATCone, proto.NATSymmetric:
		return linkOutgoing
	}
	return linkDirect
}

// punchDial is the dialling side of a punch the tracker scheduled: PunchAndDial on the mesh
// Transport, then the same handshake as any dial. A failure is an ordinary failed dial: the
// loop backs off the address and tries its next candidate.
func (n *Node) punchDial(ctx context.Context, addr string, plan PunchPlan) {
	n.stats.punchesAttempted.Add(1)
	n.metrics.punches.WithLabelValues("attempted").Inc()
	start := plan.At
	if now := time.Now(); start.Before(now) {
		plan.At, start = now, now
	}
	err := func() error {
		conn, err := PunchAndDial(ctx, n.tr, plan, n.tlsClient, n.quicConf, PunchConfig{})
		if err != nil {
			return err
		}
		took := time.Since(start)
		n.stats.punchesSucceeded.Add(1)
		n.metrics.punches.WithLabelValues("succeeded").Inc()
		if n.cfg.OnPunch != nil {
			n.cfg.OnPunch(true, took)
		}
		return n.setUp(ctx, conn, addr, linkPunched)
	}()
	if err != nil {
		if errors.Is(err, ErrPunchFailed) {
			n.metrics.punches.WithLabelValues("failed").Inc()
			if n.cfg.OnPunch != nil {
				n.cfg.OnPunch(false, 0)
			}
		}
		n.emit(ctx, evDialFailed{addr: addr, err: err, lied: errors.Is(err, ErrProtocol)})
	}
}

// setUp opens the control stream of a connection we dialled, says HELLO and hands it to the loop.
func (n *Node) setUp(ctx context.Context, conn *quic.Conn, addr string, link linkKind) error {
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	ctrl, err := conn.OpenStreamSync(dctx)
	if err != nil {
		_ = conn.CloseWithError(codeRejected, "no control stream")
		return err
	}
	nb := n.newNeighbour(conn, ctrl, true)
	nb.dialAddr = addr
	nb.link = link
	if err := n.handshake(nb, true); err != nil {
		_ = conn.CloseWithError(codeRejected, clip(err.Error()))
		return err
	}
	n.startConn(ctx, nb)
	return nil
}
