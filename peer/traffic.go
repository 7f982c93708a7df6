package peer

import (
	"sync/atomic"

	"github.com/crowdsurf/crowdsurf/proto"
)

// What the mesh's connections cost in control messages and QUIC packets. A viewer's CPU goes
// mostly to packets (syscalls, decryption, ACKs, the wake-ups they cause) rather than to bytes:
// these totals say which messages make them, so a change to the control plane can be judged by
// them (make bench-peer prints them per second).

// messageCounts counts control messages by type, a slot for each of the 256 a type byte can
// say (2 KiB), so a type added to the protocol is counted under its own name.
type messageCounts [256]atomic.Int64

func (c *messageCounts) add(t proto.MessageType) { c[t].Add(1) }

// byName is the counts that are not zero, keyed by the protocol's names of the types.
func (c *messageCounts) byName() map[string]int64 {
	out := make(map[string]int64)
	for i := range c {
		if v := c[i].Load(); v > 0 {
			out[proto.MessageType(i).String()] = v
		}
	}
	return out
}

// packetTotals are the QUIC packets of every mesh connection this node had: those of closed
// connections added when they close, those of open ones read by the loop every second.
type packetTotals struct {
	closed                                   packetCount   // loop-owned
	sent, received, bytesSent, bytesReceived atomic.Uint64 // closed + open at the last update
}

// packetCount is what connections have sent and received.
type packetCount struct{ sent, received, bytesSent, bytesReceived uint64 }

func (c *packetCount) add(o packetCount) {
	c.sent += o.sent
	c.received += o.received
	c.bytesSent += o.bytesSent
	c.bytesReceived += o.bytesReceived
}

// packetsOf is what a connection has sent and received so far (only packets it could decrypt
// count as received, so nobody can inflate them by spoofing its address).
func packetsOf(nb *neighbour) packetCount {
	s := nb.conn.ConnectionStats()
	return packetCount{s.PacketsSent, s.PacketsReceived, s.BytesSent, s.BytesReceived}
}

// closeConn adds a closing connection's packets to the totals.
func (p *packetTotals) closeConn(nb *neighbour) { p.closed.add(packetsOf(nb)) }

// update sums the open connections' packets with the closed ones'.
func (p *packetTotals) update(nbs map[uint64]*neighbour) {
	total := p.closed
	for _, nb := range nbs {
		total.add(packetsOf(nb))
	}
	p.sent.Store(total.sent)
	p.received.Store(total.received)
	p.bytesSent.Store(total.bytesSent)
	p.bytesReceived.Store(total.bytesReceived)
}
