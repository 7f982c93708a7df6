package simnet

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Host is a simulated machine with one UDP socket. It implements
// net.PacketConn and can be handed to quic.Transport as its Conn.
type Host struct {
	net     *Network
	addr    netip.AddrPort
	udpAddr *net.UDPAddr // shared by every ReadFrom result; callers must not modify it
	cfg     HostConfig
	nat     *nat // nil for a public host

	upMu   sync.Mutex // guards uplink and rng: several goroutines may write at once
	uplink rateLink
	rng    *rand.Rand

	downlink rateLink // touched only by the scheduler goroutine

	mu       sync.Mutex // guards rq and closed
	rq       packetQueue
	closed   bool
	readable chan struct{} // signalled when rq may be non-empty
	closedCh chan struct{}

	readDeadline  *deadline
	writeDeadline *deadline

	stats hostCounters
}

var _ net.PacketConn = (*Host)(nil)

func newHost(n *Network, addr netip.AddrPort, cfg HostConfig, seed uint64) *Host {
	return &Host{
		net:           n,
		addr:          addr,
		udpAddr:       net.UDPAddrFromAddrPort(addr),
		cfg:           cfg,
		uplink:        rateLink{rate: cfg.Uplink, buffer: cfg.UplinkBuffer},
		downlink:      rateLink{rate: cfg.Downlink, buffer: cfg.DownlinkBuffer},
		rng:           rand.New(rand.NewPCG(seed, seed>>1|1)),
		readable:      make(chan struct{}, 1),
		closedCh:      make(chan struct{}),
		readDeadline:  newDeadline(),
		writeDeadline: newDeadline(),
	}
}

// Addr is the host's address.
func (h *Host) Addr() netip.AddrPort { return h.addr }

// Config is the host's link configuration, with defaults filled in.
func (h *Host) Config() HostConfig { return h.cfg }

// Stats returns a snapshot of the host's counters.
func (h *Host) Stats() Stats { return h.stats.snapshot() }

// WriteTo sends a datagram. It never blocks: like UDP, a packet that will be
// dropped on the way (full queue, loss, MTU, unknown address) is still
// reported as written.
func (h *Host) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-h.closedCh:
		return 0, h.opError("write", addr, net.ErrClosed)
	case <-h.writeDeadline.wait():
		return 0, h.opError("write", addr, os.ErrDeadlineExceeded)
	default:
	}
	size := len(p)
	h.stats.packetsSent.Add(1)
	h.stats.bytesSent.Add(uint64(size))

	dst, dstAP := h.net.lookup(addr)
	var mapping *natMapping
	if h.nat != nil && dstAP.IsValid() { // the router maps before it knows whether the packet gets anywhere
		mapping = h.nat.outbound(dstAP, h.net.now())
	}
	if dst == nil {
		h.countDrop(size, &h.stats.droppedUnroutable)
		return size, nil
	}
	if size > h.cfg.MTU || size > dst.cfg.MTU {
		h.countDrop(size, &h.stats.droppedMTU)
		return size, nil
	}

	now := h.net.now()
	h.upMu.Lock()
	departed, queued := h.uplink.depart(now, size)
	// The lost packet still used the uplink: loss happens beyond it.
	lost := queued && (h.cfg.Loss > 0 || dst.cfg.Loss > 0) &&
		h.rng.Float64() >= (1-h.cfg.Loss)*(1-dst.cfg.Loss)
	h.upMu.Unlock()
	switch {
	case !queued:
		h.countDrop(size, &h.stats.droppedQueue)
		return size, nil
	case lost:
		h.countDrop(size, &h.stats.droppedLoss)
		return size, nil
	}

	arrival := departed + int64(h.cfg.Latency) + int64(dst.cfg.Latency)
	st := stageDeliver
	if dst.cfg.Downlink > 0 {
		st = stageDownlink
	}
	pkt := getPacket(h, dst, p)
	pkt.dstPort = dstAP.Port()
	if mapping != nil {
		pkt.src, pkt.srcAP = mapping.addr, mapping.ap
	}
	h.net.schedule(arrival, pkt, st)
	return size, nil
}

// downlinkDeparture queues an arriving packet on the capped downlink. Only
// the scheduler goroutine calls it.
func (h *Host) downlinkDeparture(at int64, size int) (int64, bool) {
	return h.downlink.depart(at, size)
}

// deliver puts a packet into the socket buffer, or drops it if the buffer
// is full or the host has closed.
func (h *Host) deliver(pkt *packet) {
	size := len(pkt.data)
	if h.nat != nil && !h.nat.inbound(pkt.dstPort, pkt.srcAP, h.net.now()) {
		h.countDrop(size, &h.stats.droppedFiltered)
		putPacket(pkt)
		return
	}
	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		h.countDrop(size, &h.stats.droppedUnroutable)
		putPacket(pkt)
		return
	case h.rq.bytes+size > h.cfg.ReceiveBuffer:
		h.mu.Unlock()
		h.countDrop(size, &h.stats.droppedReceiveBuffer)
		putPacket(pkt)
		return
	}
	h.rq.push(pkt)
	h.mu.Unlock()
	h.stats.packetsReceived.Add(1)
	h.stats.bytesReceived.Add(uint64(size))
	h.signalReadable()
}

func (h *Host) signalReadable() {
	select {
	case h.readable <- struct{}{}:
	default:
	}
}

func (h *Host) countDrop(size int, cause *atomic.Uint64) {
	cause.Add(1)
	h.stats.packetsDropped.Add(1)
	h.stats.bytesDropped.Add(uint64(size))
}

// ReadFrom blocks until a datagram arrives, the read deadline passes or the
// host is closed. Like recvfrom, a datagram longer than b is truncated.
func (h *Host) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		expired := h.readDeadline.wait()
		if isClosed(expired) {
			return 0, nil, h.opError("read", nil, os.ErrDeadlineExceeded)
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return 0, nil, h.opError("read", nil, net.ErrClosed)
		}
		if h.rq.len() > 0 {
			pkt := h.rq.pop()
			more := h.rq.len() > 0
			h.mu.Unlock()
			if more {
				h.signalReadable() // another reader may be waiting
			}
			n := copy(b, pkt.data)
			from := pkt.src
			putPacket(pkt)
			return n, from, nil
		}
		h.mu.Unlock()
		select {
		case <-h.readable:
		case <-h.closedCh:
		case <-expired:
		}
	}
}

// Close detaches the host: blocked readers return net.ErrClosed, packets in
// its buffer are discarded and packets still on their way are dropped.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.rq.drain()
	close(h.closedCh)
	h.mu.Unlock()
	h.net.removeHost(h)
	// Stop any pending deadline timers.
	h.readDeadline.set(time.Time{})
	h.writeDeadline.set(time.Time{})
	return nil
}

// LocalAddr returns the host's address as a *net.UDPAddr.
func (h *Host) LocalAddr() net.Addr { return h.udpAddr }

// SetDeadline sets both the read and write deadlines.
func (h *Host) SetDeadline(t time.Time) error {
	h.readDeadline.set(t)
	h.writeDeadline.set(t)
	return nil
}

// SetReadDeadline sets the read deadline; quic-go uses it to stop its read
// loop when a Transport closes.
func (h *Host) SetReadDeadline(t time.Time) error {
	h.readDeadline.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline. Writes never block, so it only
// makes writes fail once it has passed.
func (h *Host) SetWriteDeadline(t time.Time) error {
	h.writeDeadline.set(t)
	return nil
}

// SetReadBuffer is accepted and ignored (ReceiveBuffer is set in HostConfig);
// it exists so quic-go does not warn about buffer sizes.
func (h *Host) SetReadBuffer(int) error { return nil }

// SetWriteBuffer is accepted and ignored; see SetReadBuffer.
func (h *Host) SetWriteBuffer(int) error { return nil }

func (h *Host) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: h.udpAddr, Addr: addr, Err: err}
}
