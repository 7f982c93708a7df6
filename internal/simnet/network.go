// Package simnet is an in-process simulated network for running a whole swarm
// of QUIC peers on one machine in real wall-clock time.
//
// Every simulated host gets one net.PacketConn with a fake UDP address
// (10.x.y.z:port) and an access link with an uplink rate cap and drop-tail
// buffer, an optional downlink cap, a one-way latency, a random loss
// probability and an MTU. Packets never touch a socket. A host may sit behind a home
// router of its own (HostConfig.NAT: cone or symmetric, with a mapping timeout) that
// translates its packets' source and filters what comes in.
//
// It follows the spirit of quic-go's testutils/simnet (packets scheduled by
// delivery time on a heap, MTU drops) but not its code: that package runs two
// goroutines and a timer per link, has no rate cap, buffer or loss, and its
// FixedLatencyRouter starts a time.AfterFunc per packet. Here one scheduler
// goroutine serves the whole network, and the uplink is modelled
// analytically at send time (the departure time of each packet follows from
// the link's busy-until time), so a packet costs at most two heap operations
// and no goroutine or timer of its own.
package simnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrClosed is returned when a host is created on a network that was closed.
var ErrClosed = errors.New("simnet: network closed")

// ErrAddrInUse is returned by NewHost when the requested address already
// belongs to a live host.
var ErrAddrInUse = errors.New("simnet: address already in use")

// DefaultPort is the UDP port given to hosts whose config names no address.
const DefaultPort = 4433

// Config configures a Network.
type Config struct {
	// Seed makes the random loss decisions reproducible. Zero picks a random seed.
	Seed uint64
}

// Network is a simulated packet network. Create it with New, add hosts with
// NewHost and stop it with Close.
type Network struct {
	start time.Time // all simulated times are nanoseconds since start (monotonic)

	// routeMu guards hosts apart from mu, so WriteTo's lookup does not
	// contend with the scheduler's heap operations.
	routeMu sync.RWMutex
	hosts   map[netip.AddrPort]*Host
	nats    map[netip.Addr]*Host // NATed hosts by their router's public IP

	mu          sync.Mutex // guards events, seq, all, nextIP, nextPrivate, closed
	events      eventHeap
	seq         uint64
	all         []*Host // every host ever created, for TotalStats
	nextIP      uint32
	nextPrivate uint32
	seedBase    uint64
	closed      bool

	wake chan struct{} // a new earliest event was pushed
	done chan struct{} // closed by Close
	wg   sync.WaitGroup
}

// New creates a network and starts its scheduler goroutine.
func New(cfg Config) *Network {
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	n := &Network{
		start:    time.Now(),
		hosts:    make(map[netip.AddrPort]*Host),
		nats:     make(map[netip.Addr]*Host),
		nextIP:   0x0a000000, // 10.0.0.0
		seedBase: seed,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	n.wg.Go(n.runScheduler)
	return n
}

// now returns the simulated clock: wall-clock nanoseconds since New.
func (n *Network) now() int64 {
	return int64(time.Since(n.start))
}

// NewHost attaches a host with the given link parameters and returns its
// connection.
func (n *Network) NewHost(cfg HostConfig) (*Host, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if cfg.NAT.Kind != NATNone {
		return n.newNATHostLocked(cfg)
	}
	addr := cfg.Addr
	if !addr.IsValid() {
		addr = n.allocAddrLocked()
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	n.routeMu.Lock()
	defer n.routeMu.Unlock()
	if _, ok := n.hosts[addr]; ok || n.nats[addr.Addr()] != nil {
		return nil, fmt.Errorf("simnet: new host %s: %w", addr, ErrAddrInUse)
	}
	h := newHost(n, addr, cfg, n.seedBase^uint64(len(n.all)+1)*0x9e3779b97f4a7c15)
	n.hosts[addr] = h
	n.all = append(n.all, h)
	return h, nil
}

// allocAddrLocked hands out 10.0.0.1, 10.0.0.2, … skipping .0 and .255 so the
// addresses look like ordinary host addresses in logs.
func (n *Network) allocAddrLocked() netip.AddrPort {
	for {
		n.nextIP++
		if last := n.nextIP & 0xff; last == 0 || last == 0xff {
			continue
		}
		ip := n.nextIP
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), DefaultPort)
		n.routeMu.RLock()
		_, taken := n.hosts[addr]
		taken = taken || n.nats[addr.Addr()] != nil
		n.routeMu.RUnlock()
		if !taken {
			return addr
		}
	}
}

// lookup finds the live host behind a destination address: a public host by its address, a
// NATed one by its router's IP (its router filters the packet when it arrives).
func (n *Network) lookup(addr net.Addr) (*Host, netip.AddrPort) {
	ap, ok := addrPort(addr)
	if !ok {
		return nil, ap
	}
	n.routeMu.RLock()
	h := n.hosts[ap]
	if h == nil && len(n.nats) > 0 {
		h = n.nats[ap.Addr()]
	}
	n.routeMu.RUnlock()
	return h, ap
}

func addrPort(addr net.Addr) (netip.AddrPort, bool) {
	switch a := addr.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	case nil:
		return netip.AddrPort{}, false
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
}

// removeHost unroutes a closing host; packets already in flight to it are
// dropped when they arrive.
func (n *Network) removeHost(h *Host) {
	n.routeMu.Lock()
	if n.hosts[h.addr] == h {
		delete(n.hosts, h.addr)
	}
	if h.nat != nil && n.nats[h.nat.ip] == h {
		delete(n.nats, h.nat.ip)
	}
	n.routeMu.Unlock()
}

// Hosts returns the live hosts, in no particular order.
func (n *Network) Hosts() []*Host {
	n.routeMu.RLock()
	defer n.routeMu.RUnlock()
	hosts := make([]*Host, 0, len(n.hosts)+len(n.nats))
	for _, h := range n.hosts {
		hosts = append(hosts, h)
	}
	for _, h := range n.nats {
		hosts = append(hosts, h)
	}
	return hosts
}

// Close stops the scheduler, closes every host (unblocking their readers)
// and drops all packets in flight. It returns once the scheduler goroutine
// has exited.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	hosts := n.Hosts()

	close(n.done)
	n.wg.Wait()
	for _, h := range hosts {
		_ = h.Close()
	}
	n.mu.Lock()
	for _, ev := range n.events {
		putPacket(ev.pkt)
	}
	n.events = nil
	n.mu.Unlock()
	return nil
}
