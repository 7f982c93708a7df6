package tracker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdsurf/crowdsurf/proto"
)

// NAT traversal on the tracker: it runs the observers, checks the reflexive addresses peers
// announce, hands out only candidates the asker can reach (ConnectPath), and schedules a punch
// for every pair of cone-NATed peers it introduces. The candidate gets the order at once as a
// PUNCH_REQUEST from the first observer to its reflexive address (its binding keepalives hold
// that mapping open), and again in its next announce answer in case the datagram was lost; the
// asker gets the same moment in its answer and dials.

const (
	// punchDelay is how far ahead of the answer a punch is scheduled: enough for the HTTP
	// answer to reach the asker and the PUNCH_REQUEST the candidate (one trip each, plus a
	// loaded tracker's slack), short enough that a joiner's first neighbours come quickly.
	punchDelay = 300 * time.Millisecond
	// punchOrderTTL is how long an order waits for its target's next announce; past it the
	// asker's dial (bounded to 2 s after the punch moment) has given up.
	punchOrderTTL = 2 * time.Second
	// pairEvery is how often the same pair is scheduled again: the asker may be handed the
	// same candidate in every answer, and a punch it does not need (already connected, budget
	// full) costs the other side packets. A failed pair is retried after it.
	pairEvery = 10 * time.Second
	// maxPairs bounds the pair memory; beyond it no new punch is scheduled until old ones age out.
	maxPairs = 200_000
	// candidateFactor: with NAT traversal on, the choice draws this many times the neighbour
	// count, since candidates the asker cannot reach are filtered out afterwards.
	candidateFactor = 2
)

// errForeignReflexive means an announce names a reflexive address that is not on the
// announcing host.
var errForeignReflexive = errors.New("foreign reflexive address")

// natCoord is the tracker's punch coordination. Its maps are small and touched briefly by
// handlers, so a mutex guards them rather than the view's loop (which the swarm state owns).
type natCoord struct {
	obs       *Observer
	addrs     []netip.AddrPort // the observers' local addresses
	scheduled *prometheus.CounterVec

	mu        sync.Mutex
	pairs     map[[2]string]time.Time   // (asker, candidate) -> last scheduled
	orders    map[string][]pendingOrder // candidate peer id -> orders not yet in an answer
	lastSweep time.Time
}

type pendingOrder struct {
	order proto.PunchOrder
	at    time.Time // the punch moment
}

func newNATCoord(obs *Observer, conns []net.PacketConn, reg *prometheus.Registry) (*natCoord, error) {
	c := &natCoord{
		obs:    obs,
		pairs:  make(map[[2]string]time.Time),
		orders: make(map[string][]pendingOrder),
		scheduled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "crowdsurf", Subsystem: "tracker", Name: "punches_scheduled_total",
			Help: "Punches scheduled between two cone-NATed peers, by how the order reached the candidate first (udp, or answer when the push failed).",
		}, []string{"via"}),
	}
	for _, conn := range conns {
		ap, ok := observedAddr(conn.LocalAddr())
		if !ok {
			return nil, fmt.Errorf("tracker: observer address %s is not IP:port", conn.LocalAddr())
		}
		c.addrs = append(c.addrs, ap)
	}
	if err := reg.Register(c.scheduled); err != nil {
		return nil, fmt.Errorf("tracker: punch metrics: %w", err)
	}
	return c, nil
}

// advertised is the observer addresses for an answer; an unspecified host becomes local, the
// address the asker reached the tracker's HTTP API at (the observers listen on every address).
func (c *natCoord) advertised(local netip.Addr) []string {
	out := make([]string, 0, len(c.addrs))
	for _, ap := range c.addrs {
		ip := ap.Addr()
		if ip.IsUnspecified() {
			if !local.IsValid() {
				continue
			}
			ip = local
		}
		out = append(out, netip.AddrPortFrom(ip, ap.Port()).String())
	}
	return out
}

// checkReflexive checks an announced reflexive address like the QUIC address: on the announcing
// host (the observer saw the packets come from where the HTTP request came from), unless
// foreign addresses are allowed. It is cleared when the kind is absent, since it then says nothing.
func checkReflexive(st *proto.PeerState, src netip.Addr, allowForeign bool) error {
	if st.ReflexiveAddr == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(st.ReflexiveAddr)
	if err != nil { // Validate accepted it, so this cannot happen
		return fmt.Errorf("%w: reflexive_addr: %w", proto.ErrBadAnnounce, err)
	}
	ip := ap.Addr().Unmap()
	if !allowForeign && ip != src && !(ip.IsLoopback() && src.IsLoopback()) {
		return fmt.Errorf("%w: reflexive_addr %s is not the announcing host %s", errForeignReflexive, st.ReflexiveAddr, src)
	}
	st.ReflexiveAddr = netip.AddrPortFrom(ip, ap.Port()).String()
	return nil
}

// candidateInfo is how the tracker hands a peer out: at its reflexive address with its NAT
// kind when it reported them (a peer whose observers could not tell the kind counts as
// symmetric), else at its announced address as before NAT traversal.
func candidateInfo(rec proto.PeerRecord) proto.PeerInfo {
	info := proto.PeerInfo{PeerID: rec.PeerID, Addr: rec.Addr, Depths: rec.Depths, FreeSlots: rec.FreeSlots}
	if rec.ReflexiveAddr != "" {
		info.NATKind = rec.NATKind
		if info.NATKind == proto.NATUnknown {
			info.NATKind = proto.NATSymmetric
		}
		if info.NATKind != proto.NATPublic {
			info.Addr = rec.ReflexiveAddr
		}
	}
	return info
}

// askerKind is the asker's NAT kind for ConnectPath: a peer that reported no reflexive address
// has nothing another peer could punch towards, so it counts as unknown (it dials public peers).
func askerKind(st proto.PeerState) proto.NATKind {
	if st.ReflexiveAddr == "" {
		return proto.NATUnknown
	}
	return st.NATKind
}

// plan keeps the candidates the asker can reach, at most n, and schedules a punch with every
// cone-NATed one (unless the pair was scheduled within pairEvery). A candidate that reported no
// reflexive address while the tracker runs observers is not handed out: it could not reach them
// (a strict firewall, or it has just started), and nobody knows where to reach it.
func (c *natCoord) plan(asker proto.PeerState, cands []proto.PeerInfo, n int, now time.Time) []proto.PeerInfo {
	kind := askerKind(asker)
	out := cands[:0]
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
	for _, b := range cands {
		if len(out) == n {
			break
		}
		if b.NATKind == proto.NATUnknown {
			continue // reported no reflexive address
		}
		switch ConnectPath(kind, b.NATKind) {
		case ADials:
			out = append(out, b)
		case PunchADials:
			key := [2]string{asker.PeerID, b.PeerID}
			if last, ok := c.pairs[key]; ok && now.Sub(last) < pairEvery {
				continue // scheduled recently: connected, or failed and waiting
			}
			if len(c.pairs) >= maxPairs {
				continue
			}
			c.pairs[key] = now
			b.Punch = c.scheduleLocked(asker, b, now)
			out = append(out, b)
		}
		// BDials: the candidate will dial the asker when it is handed the asker. NoPath: never.
	}
	return out
}

// scheduleLocked records and pushes the candidate's half of a punch and returns the asker's.
func (c *natCoord) scheduleLocked(asker proto.PeerState, b proto.PeerInfo, now time.Time) *proto.PunchInfo {
	var id proto.TxID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	idHex := hex.EncodeToString(id[:])
	target, _ := netip.ParseAddrPort(asker.ReflexiveAddr)
	via := "answer"
	if to, err := netip.ParseAddrPort(b.Addr); err == nil && c.obs != nil {
		msg := &proto.PunchRequest{ID: id, DelayMs: uint16(punchDelay.Milliseconds()), Target: target}
		if c.obs.push(msg, to) == nil {
			via = "udp"
		}
	}
	c.scheduled.WithLabelValues(via).Inc()
	c.orders[b.PeerID] = append(c.orders[b.PeerID], pendingOrder{
		order: proto.PunchOrder{ID: idHex, Target: asker.ReflexiveAddr},
		at:    now.Add(punchDelay),
	})
	return &proto.PunchInfo{ID: idHex, DelayMs: punchDelay.Milliseconds()}
}

// ordersFor takes the punch orders waiting for peer, with delays counted from now.
func (c *natCoord) ordersFor(peer string, now time.Time) []proto.PunchOrder {
	c.mu.Lock()
	pending := c.orders[peer]
	delete(c.orders, peer)
	c.mu.Unlock()
	var out []proto.PunchOrder
	for _, p := range pending {
		if now.Sub(p.at) > punchOrderTTL || len(out) == proto.MaxAnswerPunches {
			continue
		}
		o := p.order
		o.DelayMs = max(0, p.at.Sub(now).Milliseconds())
		out = append(out, o)
	}
	return out
}

// sweepLocked forgets pairs past pairEvery and orders past their TTL, at most once a second.
func (c *natCoord) sweepLocked(now time.Time) {
	if now.Sub(c.lastSweep) < time.Second {
		return
	}
	c.lastSweep = now
	for k, t := range c.pairs {
		if now.Sub(t) >= pairEvery {
			delete(c.pairs, k)
		}
	}
	for peer, list := range c.orders {
		if len(list) == 0 || now.Sub(list[len(list)-1].at) > punchOrderTTL {
			delete(c.orders, peer)
		}
	}
}

// ObserverAddrsFor reads the tracker command's --observe value: a comma-separated list of UDP
// addresses, "-" (or empty) for none, or "auto" for the HTTP address's host on its port and
// the next one (UDP, so the API's TCP port is free to reuse).
func ObserverAddrsFor(spec, httpAddr string) ([]string, error) {
	switch spec = strings.TrimSpace(spec); spec {
	case "", "-":
		return nil, nil
	case "auto":
		host, portStr, err := net.SplitHostPort(httpAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: --observe auto: HTTP address %q is not host:port", ErrBadConfig, httpAddr)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 1 || port > 65534 {
			return nil, fmt.Errorf("%w: --observe auto needs an HTTP port from 1 to 65534, not %q; give the observer addresses", ErrBadConfig, portStr)
		}
		return []string{net.JoinHostPort(host, strconv.Itoa(port)), net.JoinHostPort(host, strconv.Itoa(port+1))}, nil
	}
	var out []string
	for a := range strings.SplitSeq(spec, ",") {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%w: --observe: %q is not HOST:PORT", ErrBadConfig, a)
		}
		out = append(out, a)
	}
	return out, nil
}
