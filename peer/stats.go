package peer

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Stats is what a node reports about itself: /stats serves it as JSON and the load test reads it
// in-process.
type Stats struct {
	PeerID string `json:"peer_id"`
	Stream string `json:"stream"`
	Root   bool   `json:"root"`
	// BytesFromPeers counts verified chunk bytes received from other viewers.
	BytesFromPeers int64 `json:"bytes_from_peers"`
	// BytesFromOrigin counts verified chunk bytes from the origin: over QUIC from the root plus
	// the HTTP fallback (BytesFromHTTP is the HTTP part).
	BytesFromOrigin int64 `json:"bytes_from_origin"`
	BytesFromHTTP   int64 `json:"bytes_from_http"`
	// BytesFromHTTPJoining is the part of BytesFromHTTP that came while the node was joining:
	// its start segments and the first moments before its parents pushed.
	BytesFromHTTPJoining int64 `json:"bytes_from_http_joining"`
	// BytesToPeers counts chunk frame bytes pushed to neighbours.
	BytesToPeers int64 `json:"bytes_to_peers"`
	// BytesPublished counts chunk bytes handed in with Publish (root).
	BytesPublished int64 `json:"bytes_published"`

	Neighbours int   `json:"neighbours"`
	Parents    int   `json:"parents"`
	Children   int   `json:"children"`
	FreeSlots  int   `json:"free_slots"`
	Depths     []int `json:"depths"` // per stripe; -1 = no parent
	// ParentIDs holds the peer id of our parent per stripe, "" where we have none.
	ParentIDs []string `json:"parent_ids"`
	Joining   bool     `json:"joining"`

	SegmentsComplete     int64 `json:"segments_complete"`
	SegmentsWithFallback int64 `json:"segments_with_fallback"`
	SegmentsAbandoned    int64 `json:"segments_abandoned"`
	ChunksRejected       int64 `json:"chunks_rejected"`
	Requests             int64 `json:"requests"`            // REQUESTs we sent (repair)
	RequestsServed       int64 `json:"requests_served"`     // neighbours' REQUESTs we answered
	RequestsRefused      int64 `json:"requests_refused"`    // REQUESTs left unanswered: over the repair budget
	RequestsDeferred     int64 `json:"requests_deferred"`   // REQUESTs answered when the repair budget allowed (within a second)
	RequestsOverShare    int64 `json:"requests_over_share"` // of RequestsRefused: the neighbour had used its share of the budget while others asked (repairshare.go)
	PushesDropped        int64 `json:"pushes_dropped"`
	PublishDropped       int64 `json:"publish_dropped"`
	BitrateBps           int64 `json:"bitrate_bps"`
	// ParentDials counts connections dialled beyond the neighbour budget to reach a parent for
	// a stripe we had none for; Evicted counts neighbours dropped to make room (useless ones:
	// no parent, child or depth); ParentsSilent counts parents left because they went silent.
	ParentDials   int64 `json:"parent_dials"`
	Evicted       int64 `json:"evicted"`
	ParentsSilent int64 `json:"parents_silent"`
	// ParentsWithheld counts parents left because they pushed nothing on a stripe whose chunks
	// verifiably existed (a parent is kept for what it delivers); FalseHaves counts HAVEs whose
	// claims the signed timeline refutes; CDNRequests counts HTTP requests of the fallback.
	ParentsWithheld int64 `json:"parents_withheld"`
	FalseHaves      int64 `json:"false_haves"`
	CDNRequests     int64 `json:"cdn_requests"`
	// PartFetches counts CDN fetches started for a part the local LL-HLS player waited on.
	PartFetches int64 `json:"part_fetches"`
	// LoopLags counts ticks that ran far behind schedule: the node itself was starved.
	LoopLags int64 `json:"loop_lags"`
	// Dials counts connections we started, DialsFailed those that never completed the
	// handshake; ConnsUp counts neighbours taken (both directions), ConnsDown those lost.
	// A node dialling far more than it keeps is in a connect storm.
	Dials       int64 `json:"dials"`
	DialsFailed int64 `json:"dials_failed"`
	ConnsUp     int64 `json:"conns_up"`
	ConnsDown   int64 `json:"conns_down"`
	// Offload is the share of received bytes that did not come from the origin.
	Offload float64 `json:"offload"`

	// ReflexiveAddr is the mesh socket's address as the tracker's observers see it (empty
	// until they answered, or without Config.Observers); NATKind is what they tell of the NAT.
	ReflexiveAddr string        `json:"reflexive_addr,omitempty"`
	NATKind       proto.NATKind `json:"nat_kind"`
	// PunchesAttempted counts punches this node dialled (the tracker scheduled them with a
	// cone-NATed candidate), PunchesSucceeded those that connected; PunchOrders counts the
	// tracker's orders to punch towards a peer that dials us; PunchesReceived the other
	// sides' PUNCH datagrams that got through our NAT.
	PunchesAttempted int64 `json:"punches_attempted"`
	PunchesSucceeded int64 `json:"punches_succeeded"`
	PunchOrders      int64 `json:"punch_orders"`
	PunchesReceived  int64 `json:"punches_received"`
	// Links counts the neighbours by how their connection came about; DialledLinks counts
	// only those we dialled (so a swarm's links summed over its peers count each once).
	Links        LinkCounts `json:"links"`
	DialledLinks LinkCounts `json:"dialled_links"`
	// ControlSent and ControlReceived count the control messages written to and read from
	// neighbours, by type (HAVE, STATUS, ...); PacketsSent and PacketsReceived the QUIC packets of
	// all mesh connections, ACKs and keep-alives included (updated every second), and
	// PacketBytesSent and PacketBytesReceived their bytes (QUIC's, without UDP and IP headers),
	// which tell the packets' mean size: whether path MTU discovery made them large.
	ControlSent         map[string]int64 `json:"control_sent"`
	ControlReceived     map[string]int64 `json:"control_received"`
	PacketsSent         uint64           `json:"packets_sent"`
	PacketsReceived     uint64           `json:"packets_received"`
	PacketBytesSent     uint64           `json:"packet_bytes_sent"`
	PacketBytesReceived uint64           `json:"packet_bytes_received"`
}

// counters are the node's running totals, updated from any goroutine.
type counters struct {
	bytesFromPeers, bytesFromOrigin, bytesFromHTTP, bytesPublished, bytesToPeers                      atomic.Int64
	bytesFromHTTPJoining                                                                              atomic.Int64
	requestsOverShare                                                                                 atomic.Int64
	chunksRejected, segmentsComplete, segmentsWithFallback, segmentsAbandoned                         atomic.Int64
	requests, requestsServed, requestsRefused, requestsDeferred, pushDropped, publishDropped, bitrate atomic.Int64
	parentDials, evicted, parentsSilent, loopLags                                                     atomic.Int64
	dials, dialsFailed, connsUp, connsDown                                                            atomic.Int64
	parentsWithheld, falseHaves, cdnRequests, partFetches                                             atomic.Int64
	punchesAttempted, punchesSucceeded, punchOrders, punchesReceived                                  atomic.Int64
	controlSent, controlReceived                                                                      messageCounts
	packets                                                                                           packetTotals
}

func (c *counters) received(src Source, n int) {
	switch src {
	case SourcePeer:
		c.bytesFromPeers.Add(int64(n))
	case SourceOrigin:
		c.bytesFromOrigin.Add(int64(n))
	case SourceHTTP:
		c.bytesFromOrigin.Add(int64(n))
		c.bytesFromHTTP.Add(int64(n))
	case SourceLocal:
		c.bytesPublished.Add(int64(n))
	}
}

// topology is the loop's latest view of the node's place in the mesh.
type topology struct {
	Depths     []int
	ParentIDs  []string
	FreeSlots  int
	Neighbours int
	Parents    int
	Children   int
	Joining    bool
	Links      LinkCounts
	Dialled    LinkCounts
}

func (t *topology) equal(o *topology) bool {
	return slices.Equal(t.Depths, o.Depths) && slices.Equal(t.ParentIDs, o.ParentIDs) &&
		t.FreeSlots == o.FreeSlots && t.Neighbours == o.Neighbours && t.Parents == o.Parents &&
		t.Children == o.Children && t.Joining == o.Joining && t.Links == o.Links && t.Dialled == o.Dialled
}

func depthsInt(d []uint8) []int {
	out := make([]int, len(d))
	for i, v := range d {
		out[i] = int(v)
		if v == 0xff {
			out[i] = -1
		}
	}
	return out
}

// Stats returns the node's current figures. Safe to call from any goroutine.
func (n *Node) Stats() Stats {
	t := n.topology.Load()
	s := Stats{
		PeerID:               n.PeerID(),
		Stream:               n.cfg.Stream,
		Root:                 n.cfg.Root,
		BytesFromPeers:       n.stats.bytesFromPeers.Load(),
		BytesFromOrigin:      n.stats.bytesFromOrigin.Load(),
		BytesFromHTTP:        n.stats.bytesFromHTTP.Load(),
		BytesFromHTTPJoining: n.stats.bytesFromHTTPJoining.Load(),
		BytesToPeers:         n.stats.bytesToPeers.Load(),
		BytesPublished:       n.stats.bytesPublished.Load(),
		Neighbours:           t.Neighbours,
		Parents:              t.Parents,
		Children:             t.Children,
		FreeSlots:            t.FreeSlots,
		Depths:               append([]int(nil), t.Depths...),
		ParentIDs:            append([]string(nil), t.ParentIDs...),
		Joining:              t.Joining,
		SegmentsComplete:     n.stats.segmentsComplete.Load(),
		SegmentsWithFallback: n.stats.segmentsWithFallback.Load(),
		SegmentsAbandoned:    n.stats.segmentsAbandoned.Load(),
		ChunksRejected:       n.stats.chunksRejected.Load(),
		Requests:             n.stats.requests.Load(),
		RequestsServed:       n.stats.requestsServed.Load(),
		RequestsRefused:      n.stats.requestsRefused.Load(),
		RequestsDeferred:     n.stats.requestsDeferred.Load(),
		RequestsOverShare:    n.stats.requestsOverShare.Load(),
		PushesDropped:        n.stats.pushDropped.Load(),
		PublishDropped:       n.stats.publishDropped.Load(),
		BitrateBps:           n.stats.bitrate.Load(),
		ParentDials:          n.stats.parentDials.Load(),
		Evicted:              n.stats.evicted.Load(),
		ParentsSilent:        n.stats.parentsSilent.Load(),
		ParentsWithheld:      n.stats.parentsWithheld.Load(),
		FalseHaves:           n.stats.falseHaves.Load(),
		CDNRequests:          n.stats.cdnRequests.Load(),
		PartFetches:          n.stats.partFetches.Load(),
		LoopLags:             n.stats.loopLags.Load(),
		Dials:                n.stats.dials.Load(),
		DialsFailed:          n.stats.dialsFailed.Load(),
		ConnsUp:              n.stats.connsUp.Load(),
		ConnsDown:            n.stats.connsDown.Load(),
		PunchesAttempted:     n.stats.punchesAttempted.Load(),
		PunchesSucceeded:     n.stats.punchesSucceeded.Load(),
		PunchOrders:          n.stats.punchOrders.Load(),
		PunchesReceived:      n.stats.punchesReceived.Load(),
		Links:                t.Links,
		DialledLinks:         t.Dialled,
		ControlSent:          n.stats.controlSent.byName(),
		ControlReceived:      n.stats.controlReceived.byName(),
		PacketsSent:          n.stats.packets.sent.Load(),
		PacketsReceived:      n.stats.packets.received.Load(),
		PacketBytesSent:      n.stats.packets.bytesSent.Load(),
		PacketBytesReceived:  n.stats.packets.bytesReceived.Load(),
	}
	if r := n.reflexive.Load(); r != nil {
		s.NATKind = r.Kind
		if r.Addr.IsValid() {
			s.ReflexiveAddr = r.Addr.String()
		}
	}
	if total := s.BytesFromPeers + s.BytesFromOrigin; total > 0 {
		s.Offload = float64(s.BytesFromPeers) / float64(total)
	}
	return s
}

// metrics are the node's Prometheus series; no per-peer labels (a swarm has thousands of peers).
type metrics struct {
	bytesReceived *prometheus.CounterVec
	// receivedBy is bytesReceived's counter of each Source, looked up once: a chunk's arrival
	// should not hash a label.
	receivedBy       [SourceLocal + 1]prometheus.Counter
	bytesSent        prometheus.Counter
	chunksRejected   prometheus.Counter
	segmentsComplete prometheus.Counter
	segmentsFallback prometheus.Counter
	neighbours       prometheus.Gauge
	parents          prometheus.Gauge
	children         prometheus.Gauge
	natKind          *prometheus.GaugeVec // 1 for the kind the observers last reported
	punches          *prometheus.CounterVec
	punchOrders      prometheus.Counter
	linkKinds        *prometheus.GaugeVec
}

func newMetrics(reg *prometheus.Registry, _ *counters) (*metrics, error) {
	const ns, sub = "crowdsurf", "peer"
	m := &metrics{
		bytesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "chunk_bytes_received_total", Help: "Verified chunk bytes received, by source (peer, origin, http, local)."},
			[]string{"source"}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "chunk_bytes_sent_total", Help: "Chunk frame bytes pushed to neighbours."}),
		chunksRejected: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "chunks_rejected_total", Help: "Chunks rejected: malformed, oversized or failing the origin signature."}),
		segmentsComplete: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "segments_complete_total", Help: "Segments completed in the local window."}),
		segmentsFallback: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "segments_fallback_total", Help: "Completed segments that needed at least one chunk over HTTP."}),
		neighbours: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "neighbours", Help: "Connected mesh neighbours."}),
		parents: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "parents", Help: "Stripes with a parent."}),
		children: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "children", Help: "Stripe children served."}),
		natKind: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "nat_kind", Help: "1 for the NAT kind the tracker's observers last reported (unknown, public, cone, symmetric)."},
			[]string{"kind"}),
		punches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "punches_total", Help: "Hole punches this node dialled, by result (attempted, succeeded, failed)."},
			[]string{"result"}),
		punchOrders: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "punch_orders_total", Help: "The tracker's orders to punch towards a peer that dials us."}),
		linkKinds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "neighbours_by_link", Help: "Connected neighbours by how the link came about (direct, punched, outgoing_only)."},
			[]string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.bytesReceived, m.bytesSent, m.chunksRejected, m.segmentsComplete,
		m.segmentsFallback, m.neighbours, m.parents, m.children, m.natKind, m.punches, m.punchOrders, m.linkKinds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("peer metrics: %w", err)
		}
	}
	for src := SourcePeer; src <= SourceLocal; src++ {
		m.receivedBy[src] = m.bytesReceived.WithLabelValues(src.String())
	}
	return m, nil
}

// countRejected counts a chunk that failed parsing or verification, wherever it came from.
func (n *Node) countRejected() {
	n.stats.chunksRejected.Add(1)
	n.metrics.chunksRejected.Inc()
}

func (m *metrics) received(src Source, n int) {
	if int(src) < len(m.receivedBy) && m.receivedBy[src] != nil {
		m.receivedBy[src].Add(float64(n))
		return
	}
	m.bytesReceived.WithLabelValues(src.String()).Add(float64(n))
}
