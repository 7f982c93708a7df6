package origin

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	bytesProduced prometheus.Counter
	bytesHTTP     prometheus.Counter
	bytesSeeded   prometheus.Counter
	chunks        prometheus.Counter
	segments      prometheus.Counter
	mediaErrors   prometheus.Counter
	packetsLost   prometheus.Counter
	rejected      *prometheus.CounterVec
	publishers    prometheus.Gauge
	removed       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		bytesProduced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "bytes_produced_total", Help: "Segment bytes produced (chunk payloads)."}),
		bytesHTTP: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "bytes_http_total", Help: "Bytes served over HTTP: playlists, segments and chunks."}),
		bytesSeeded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "bytes_seeded_total", Help: "Chunk bytes the mesh root sent to its children."}),
		chunks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "chunks_total", Help: "Signed chunks emitted."}),
		segments: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "segments_total", Help: "Segments finished."}),
		mediaErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "media_errors_total", Help: "RTP packets or access units that could not be decoded or muxed."}),
		packetsLost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "rtp_packets_lost_total", Help: "RTP packets lost between publisher (or pulled source) and origin."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "publish_rejected_total", Help: "Publishers turned away, by reason."}, []string{"reason"}),
		publishers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "publishers", Help: "Streams being published or pulled now."}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "crowdsurf", Subsystem: "origin",
			Name: "streams_removed_total", Help: "Streams removed after their publisher left (the grace passed, or they never made a segment)."}),
	}
	reg.MustRegister(m.bytesProduced, m.bytesHTTP, m.bytesSeeded, m.chunks, m.segments, m.mediaErrors, m.packetsLost, m.rejected, m.publishers, m.removed)
	return m
}
