package simnet

import "sync/atomic"

// Stats are a host's counters since it was created. A dropped packet is
// charged to the host whose link dropped it: the sender for a full uplink,
// loss, an oversized packet or an unknown destination; the receiver for a
// full downlink or socket buffer, for arriving after it closed, or for being filtered by its
// NAT.
type Stats struct {
	PacketsSent     uint64 // packets handed to WriteTo, including ones later dropped
	BytesSent       uint64
	PacketsReceived uint64 // packets delivered into the socket buffer
	BytesReceived   uint64
	PacketsDropped  uint64 // all drops charged to this host
	BytesDropped    uint64

	// Drops by cause, in packets; they add up to PacketsDropped.
	DroppedQueue         uint64 // uplink or downlink buffer full
	DroppedLoss          uint64 // random loss
	DroppedMTU           uint64 // larger than the sender's or receiver's MTU
	DroppedUnroutable    uint64 // no live host at the destination
	DroppedReceiveBuffer uint64 // socket buffer full: the application read too slowly
	DroppedFiltered      uint64 // unsolicited: the receiver's NAT had no mapping that allowed it
}

// Add returns the field-wise sum, for network totals.
func (s Stats) Add(o Stats) Stats {
	return Stats{
		PacketsSent:          s.PacketsSent + o.PacketsSent,
		BytesSent:            s.BytesSent + o.BytesSent,
		PacketsReceived:      s.PacketsReceived + o.PacketsReceived,
		BytesReceived:        s.BytesReceived + o.BytesReceived,
		PacketsDropped:       s.PacketsDropped + o.PacketsDropped,
		BytesDropped:         s.BytesDropped + o.BytesDropped,
		DroppedQueue:         s.DroppedQueue + o.DroppedQueue,
		DroppedLoss:          s.DroppedLoss + o.DroppedLoss,
		DroppedMTU:           s.DroppedMTU + o.DroppedMTU,
		DroppedUnroutable:    s.DroppedUnroutable + o.DroppedUnroutable,
		DroppedReceiveBuffer: s.DroppedReceiveBuffer + o.DroppedReceiveBuffer,
		DroppedFiltered:      s.DroppedFiltered + o.DroppedFiltered,
	}
}

type hostCounters struct {
	packetsSent, bytesSent         atomic.Uint64
	packetsReceived, bytesReceived atomic.Uint64
	packetsDropped, bytesDropped   atomic.Uint64
	droppedQueue, droppedLoss      atomic.Uint64
	droppedMTU, droppedUnroutable  atomic.Uint64
	droppedReceiveBuffer           atomic.Uint64
	droppedFiltered                atomic.Uint64
}

func (c *hostCounters) snapshot() Stats {
	return Stats{
		PacketsSent:          c.packetsSent.Load(),
		BytesSent:            c.bytesSent.Load(),
		PacketsReceived:      c.packetsReceived.Load(),
		BytesReceived:        c.bytesReceived.Load(),
		PacketsDropped:       c.packetsDropped.Load(),
		BytesDropped:         c.bytesDropped.Load(),
		DroppedQueue:         c.droppedQueue.Load(),
		DroppedLoss:          c.droppedLoss.Load(),
		DroppedMTU:           c.droppedMTU.Load(),
		DroppedUnroutable:    c.droppedUnroutable.Load(),
		DroppedReceiveBuffer: c.droppedReceiveBuffer.Load(),
		DroppedFiltered:      c.droppedFiltered.Load(),
	}
}

// TotalStats sums the counters of every host ever created on the network,
// closed ones included.
func (n *Network) TotalStats() Stats {
	n.mu.Lock()
	all := n.all
	n.mu.Unlock()
	var total Stats
	for _, h := range all {
		total = total.Add(h.Stats())
	}
	return total
}
