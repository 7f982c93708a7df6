package tracker

import "github.com/prometheus/client_golang/prometheus"

// metrics are per tracker replica. No label names a peer or a source address: a swarm has
// thousands of them.
type metrics struct {
	announces     *prometheus.CounterVec // by result
	registrations *prometheus.CounterVec // by result
	kvUpdates     *prometheus.CounterVec // by bucket
	kvWrites      prometheus.Counter
	kvWriteErrors prometheus.Counter
	rateLimited   prometheus.Counter
	peers         prometheus.Gauge
	streams       prometheus.Gauge
	announceTime  prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry) *metrics {
	const ns, sub = "crowdsurf", "tracker"
	m := &metrics{
		announces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "announces_total",
			Help: "Announces handled, by result (ok, bad_request, forbidden, unknown_stream, host_full, swarm_full, unavailable).",
		}, []string{"result"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "registrations_total",
			Help: "Stream registrations received over HTTP, by result (ok, unauthorized, bad_request, forbidden, stale, full, unavailable).",
		}, []string{"result"}),
		kvUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "kv_updates_total",
			Help: "Key-value updates seen by this replica's watchers, by bucket.",
		}, []string{"bucket"}),
		kvWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "peer_writes_total",
			Help: "Peer records this replica queued for the peers bucket (an announce writes only when its state changed or its entry needs refreshing; queued records of the same peer are published as one).",
		}),
		kvWriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "peer_write_errors_total",
			Help: "Peer records NATS did not store at a try (the writer tries again while the record is current).",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "rate_limited_total",
			Help: "Requests refused with 429 because their source address exceeded its rate.",
		}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "peers",
			Help: "Peers in this replica's view, all streams.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "streams",
			Help: "Registered streams in this replica's view.",
		}),
		announceTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "announce_seconds",
			Help:    "Time to answer a valid announce, including the NATS write.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}),
	}
	reg.MustRegister(m.announces, m.registrations, m.kvUpdates, m.kvWrites, m.kvWriteErrors, m.rateLimited, m.peers, m.streams, m.announceTime)
	return m
}
