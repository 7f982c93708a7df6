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
	closedSent, closedReceived uint64        // loop-owned
	sent, received             atomic.Uint64 // closed + open at the last update
}

// packetsOf is what a connection has sent and received so far (only packets it could decrypt
// count as received, so nobody can inflate them by spoofing its address).
func packetsOf(nb *neighbour) (sent, received uint64) {
	s := nb.conn.ConnectionStats()
	return s.PacketsSent, s.PacketsReceived
}

// closeConn adds a closing connection's packets to the totals.
func (p *packetTotals) closeConn(nb *neighbour) {
	s, r := packetsOf(nb)
	p.closedSent += s
	p.closedReceived += r
}

// update sums the open connections' packets with the closed ones'.
func (p *packetTotals) update(nbs map[uint64]*neighbour) {
	sent, received := p.closedSent, p.closedReceived
	for _, nb := range nbs {
		s, r := packetsOf(nb)
		sent += s
		received += r
	}
	p.sent.Store(sent)
	p.received.Store(received)
}
