package simnet

import "time"

// stage says what the scheduler does with a packet when its event is due.
type stage uint8

const (
	// stageDownlink: the packet reaches the receiver's capped downlink queue.
	stageDownlink stage = iota
	// stageDeliver: the packet lands in the receiver's socket buffer.
	stageDeliver
)

// event is one packet due at a simulated time. seq breaks ties so packets
// due at the same instant keep their send order.
type event struct {
	at    int64
	seq   uint64
	pkt   *packet
	stage stage
}

// eventHeap is a min-heap by (at, seq). Hand-written rather than
// container/heap so events stay unboxed values.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].seq < h[j].seq
}

func (h *eventHeap) push(ev event) {
	*h = append(*h, ev)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = event{}
	s = s[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// schedule queues a packet event and wakes the scheduler if it is now the
// earliest one.
func (n *Network) schedule(at int64, pkt *packet, st stage) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		putPacket(pkt)
		return
	}
	n.seq++
	n.events.push(event{at: at, seq: n.seq, pkt: pkt, stage: st})
	earliest := n.events[0].pkt == pkt
	n.mu.Unlock()
	if earliest {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// runScheduler is the network's only goroutine: it pops due events in time
// order and moves each packet to its next stage. A single reusable timer
// sleeps until the earliest event; packets never own a timer.
func (n *Network) runScheduler() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []event
	for {
		n.mu.Lock()
		now := n.now()
		batch = batch[:0]
		for len(n.events) > 0 && n.events[0].at <= now && len(batch) < 4096 {
			batch = append(batch, n.events.pop())
		}
		var wait time.Duration = -1
		if len(n.events) > 0 {
			wait = time.Duration(n.events[0].at - now)
		}
		n.mu.Unlock()

		if len(batch) > 0 {
			for i := range batch {
				n.handle(batch[i])
				batch[i] = event{}
			}
			continue // time has moved on while handling; look again
		}

		if wait < 0 {
			select {
			case <-n.wake:
			case <-n.done:
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-n.wake:
			timer.Stop()
		case <-n.done:
			return
		}
	}
}

func (n *Network) handle(ev event) {
	pkt := ev.pkt
	switch ev.stage {
	case stageDownlink:
		at, ok := pkt.to.downlinkDeparture(ev.at, len(pkt.data))
		if !ok {
			pkt.to.countDrop(len(pkt.data), &pkt.to.stats.droppedQueue)
			putPacket(pkt)
			return
		}
		n.schedule(at, pkt, stageDeliver)
	case stageDeliver:
		pkt.to.deliver(pkt)
	}
}
