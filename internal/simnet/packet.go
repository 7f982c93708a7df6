package simnet

import (
	"net"
	"net/netip"
	"sync"
)

// packet is a datagram in flight. Packets are pooled: at 20k+ packets/s a
// fresh copy per WriteTo would be most of the garbage the swarm makes.
type packet struct {
	from *Host
	to   *Host
	data []byte

	src     *net.UDPAddr   // the source the receiver sees: from's address or its NAT mapping
	srcAP   netip.AddrPort // src, for the receiver's NAT filter
	dstPort uint16         // the destination port, for the receiver's NAT filter
}

// pooledCap covers every packet up to DefaultMTU; bigger ones (hosts with a
// raised MTU) get their own slice.
const pooledCap = 1500

var packetPool = sync.Pool{New: func() any { return &packet{data: make([]byte, 0, pooledCap)} }}

func getPacket(from, to *Host, b []byte) *packet {
	p := packetPool.Get().(*packet)
	p.from, p.to = from, to
	p.src, p.srcAP = from.udpAddr, from.addr
	p.data = append(p.data[:0], b...)
	return p
}

func putPacket(p *packet) {
	if cap(p.data) > pooledCap {
		p.data = make([]byte, 0, pooledCap)
	}
	p.from, p.to, p.src = nil, nil, nil
	p.data = p.data[:0]
	packetPool.Put(p)
}

// packetQueue is a FIFO of received packets, the host's socket buffer.
type packetQueue struct {
	items []*packet
	head  int
	bytes int
}

func (q *packetQueue) len() int { return len(q.items) - q.head }

func (q *packetQueue) push(p *packet) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 64 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, p)
	q.bytes += len(p.data)
}

func (q *packetQueue) pop() *packet {
	p := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	q.bytes -= len(p.data)
	return p
}

func (q *packetQueue) drain() {
	for q.len() > 0 {
		putPacket(q.pop())
	}
	q.items, q.head = nil, 0
}
