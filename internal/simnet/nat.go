package simnet

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// NATKind is how the home router in front of a host translates and filters.
type NATKind uint8

const (
	// NATNone is a host with a public address: nothing is translated or filtered.
	NATNone NATKind = iota
	// NATCone is the common home router: endpoint-independent mapping (one external port for
	// the host's socket, whatever the destination) with address-and-port-dependent filtering
	// (an inbound packet passes only from an addr:port the mapping has sent to). RFC 4787
	// calls this EIM with APDF; it is what hole punching relies on.
	NATCone
	// NATSymmetric gives every destination addr:port a mapping (external port) of its own and
	// filters like NATCone, so the port an observer sees is useless to anyone else.
	NATSymmetric
)

// String names the kind as the load test's --nat flag does.
func (k NATKind) String() string {
	switch k {
	case NATNone:
		return "public"
	case NATCone:
		return "cone"
	case NATSymmetric:
		return "symmetric"
	}
	return fmt.Sprintf("natkind(%d)", uint8(k))
}

// DefaultNATTimeout is how long a mapping and its filter entries live without outbound
// traffic. Home routers keep UDP mappings for 30 s to a few minutes; 30 s is the short end,
// the one keepalives must beat.
const DefaultNATTimeout = 30 * time.Second

// firstNATPort is where a router starts handing out external ports (the IANA dynamic range).
const firstNATPort = 49152

// NAT puts a host behind its own home router. One router has exactly one host behind it, so
// two simulated hosts never share a public address (no hairpinning to model).
type NAT struct {
	// Kind selects the translation; NATNone (the zero value) leaves the host public.
	Kind NATKind
	// PublicIP is the router's address on the network. Zero takes the next free address, as
	// public hosts get theirs.
	PublicIP netip.Addr
	// Timeout is how long a mapping, and each address it may hear from, lives after the host
	// last sent through it. Inbound traffic does not refresh it. Zero means DefaultNATTimeout.
	Timeout time.Duration
}

func (c NAT) validate() error {
	switch {
	case c.Kind > NATSymmetric:
		return fmt.Errorf("simnet: host config: unknown NAT kind %d", c.Kind)
	case c.Timeout < 0:
		return fmt.Errorf("simnet: host config: negative NAT timeout %s", c.Timeout)
	case c.PublicIP.IsValid() && !c.PublicIP.Unmap().Is4():
		return fmt.Errorf("simnet: host config: NAT public IP %s is not IPv4", c.PublicIP)
	}
	return nil
}

// natMapping is one external port and the time the host last sent through it.
type natMapping struct {
	port    uint16
	addr    *net.UDPAddr // the source receivers see; shared, never modified
	ap      netip.AddrPort
	lastOut int64
}

// natFlow is a filter entry: the remote endpoint may send to mapping m until lastOut+timeout.
type natFlow struct {
	m       *natMapping
	lastOut int64
}

// nat is the state of one home router. WriteTo (any goroutine of the host) calls outbound;
// the scheduler calls inbound.
type nat struct {
	kind    NATKind
	ip      netip.Addr
	timeout int64

	mu       sync.Mutex // guards everything below
	cone     *natMapping
	flows    map[netip.AddrPort]*natFlow // by remote endpoint
	ports    map[uint16]*natMapping      // external ports in use
	nextPort uint16
	sweepAt  int // len(flows) at which expired entries are swept next
}

func newNAT(cfg NAT, ip netip.Addr) *nat {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultNATTimeout
	}
	return &nat{
		kind:     cfg.Kind,
		ip:       ip,
		timeout:  int64(timeout),
		flows:    make(map[netip.AddrPort]*natFlow),
		ports:    make(map[uint16]*natMapping),
		nextPort: firstNATPort,
		sweepAt:  64,
	}
}

func (t *nat) live(lastOut, now int64) bool { return now-lastOut <= t.timeout }

// outbound translates a packet from the host to remote at time now: it returns the mapping
// the packet leaves through, creating it (and the filter entry for remote) if needed, and
// refreshes both.
func (t *nat) outbound(remote netip.AddrPort, now int64) *natMapping {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.flows[remote]
	if f != nil && t.live(f.lastOut, now) {
		f.lastOut, f.m.lastOut = now, now
		return f.m
	}
	var m *natMapping
	if t.kind == NATCone && t.cone != nil && t.live(t.cone.lastOut, now) {
		m = t.cone
	} else {
		m = t.newMappingLocked(now)
		if t.kind == NATCone {
			t.cone = m
		}
	}
	m.lastOut = now
	if f == nil {
		if len(t.flows) >= t.sweepAt {
			t.sweepLocked(now)
		}
		f = &natFlow{}
		t.flows[remote] = f
	}
	f.m, f.lastOut = m, now
	return m
}

// inbound says whether a packet from remote to the router's port passes the filter at time now.
func (t *nat) inbound(port uint16, remote netip.AddrPort, now int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.flows[remote]
	return f != nil && f.m.port == port && t.live(f.lastOut, now)
}

// newMappingLocked takes the next external port that no live mapping holds. With every
// dynamic port live (no simulated host keeps 16k destinations) it reuses one anyway.
func (t *nat) newMappingLocked(now int64) *natMapping {
	p := t.nextPort
	for range 1 << 16 {
		p = t.nextPort
		t.nextPort++
		if t.nextPort == 0 {
			t.nextPort = firstNATPort
		}
		if old := t.ports[p]; old == nil || !t.live(old.lastOut, now) {
			break
		}
	}
	ap := netip.AddrPortFrom(t.ip, p)
	m := &natMapping{port: p, addr: net.UDPAddrFromAddrPort(ap), ap: ap}
	t.ports[p] = m
	return m
}

// sweepLocked forgets expired filter entries and mappings, so a long run with many
// destinations keeps a bounded table.
func (t *nat) sweepLocked(now int64) {
	for r, f := range t.flows {
		if !t.live(f.lastOut, now) {
			delete(t.flows, r)
		}
	}
	for p, m := range t.ports {
		if !t.live(m.lastOut, now) {
			delete(t.ports, p)
		}
	}
	t.sweepAt = 2*len(t.flows) + 64
}

// NAT is the kind of router in front of the host (NATNone for a public host).
func (h *Host) NAT() NATKind {
	if h.nat == nil {
		return NATNone
	}
	return h.nat.kind
}

// PublicIP is the address other hosts see the host's packets come from: its router's for a
// NATed host, its own otherwise.
func (h *Host) PublicIP() netip.Addr {
	if h.nat == nil {
		return h.addr.Addr()
	}
	return h.nat.ip
}

// newNATHostLocked attaches a host behind a router of its own. Its address (cfg.Addr or the
// next free 172.16.x.y) is private: nothing routes to it, packets reach it only through the
// router's public IP. The caller holds n.mu.
func (n *Network) newNATHostLocked(cfg HostConfig) (*Host, error) {
	ip := cfg.NAT.PublicIP.Unmap()
	for !ip.IsValid() {
		ip = n.allocAddrLocked().Addr()
		n.routeMu.RLock()
		if n.ipInUseLocked(ip) { // a public host took another port on it
			ip = netip.Addr{}
		}
		n.routeMu.RUnlock()
	}
	addr := cfg.Addr
	if !addr.IsValid() {
		n.nextPrivate++
		p := 0xac100000 + n.nextPrivate // 172.16.0.0/12
		addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(p >> 24), byte(p >> 16), byte(p >> 8), byte(p)}), DefaultPort)
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	n.routeMu.Lock()
	defer n.routeMu.Unlock()
	if n.ipInUseLocked(ip) {
		return nil, fmt.Errorf("simnet: new host behind NAT %s: %w", ip, ErrAddrInUse)
	}
	h := newHost(n, addr, cfg, n.seedBase^uint64(len(n.all)+1)*0x9e3779b97f4a7c15)
	h.nat = newNAT(cfg.NAT, ip)
	n.nats[ip] = h
	n.all = append(n.all, h)
	return h, nil
}

// ipInUseLocked says whether a router or any public host already has ip. The caller holds
// routeMu.
func (n *Network) ipInUseLocked(ip netip.Addr) bool {
	if _, ok := n.nats[ip]; ok {
		return true
	}
	for ap := range n.hosts {
		if ap.Addr() == ip {
			return true
		}
	}
	return false
}
