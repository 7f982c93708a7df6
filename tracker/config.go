// Package tracker keeps swarm membership and topology: which peers watch which stream, and which
// neighbours each peer gets. Peers announce over HTTP; the state lives in NATS JetStream key-value
// buckets, so several tracker replicas on one NATS give the same answers. With no NATS URL the
// tracker runs an embedded NATS server, so one process is enough on one machine.
package tracker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Config configures a Tracker. The zero value works: it listens on :7070 with an embedded,
// in-memory NATS server.
type Config struct {
	// HTTPListener serves the API; when nil the tracker listens on HTTPAddr.
	HTTPListener net.Listener
	// HTTPAddr is where the API listens when HTTPListener is nil (default ":7070").
	HTTPAddr string
	// NATSURL names an existing NATS server or cluster (with JetStream). Empty starts an embedded
	// server on 127.0.0.1 at a random port; see Tracker.NATSURL.
	NATSURL string
	// DataDir keeps the embedded NATS server's JetStream state on disk, so registered streams
	// survive a restart. Empty keeps everything in memory. Ignored with NATSURL.
	DataDir string

	Logger   *slog.Logger
	Registry *prometheus.Registry

	// PeerTTL is how long a peer stays in the swarm after its last announce (default 10s).
	PeerTTL time.Duration
	// StreamTTL is how long a stream registration lives without being renewed (default 30s).
	StreamTTL time.Duration
	// AnnounceInterval is how often peers are told to announce (default 3s); it must be
	// shorter than PeerTTL.
	AnnounceInterval time.Duration
	// NeighbourCount is how many neighbour candidates an announce gets back (default 8).
	NeighbourCount int

	// RateLimit is the sustained number of API requests per second per source IP (default 20);
	// rate.Inf turns the limit off (a load test that runs a whole swarm on 127.0.0.1 needs that).
	RateLimit rate.Limit
	// RateBurst is the burst allowed per source IP (default 40).
	RateBurst int
	// MaxTrackedIPs bounds the rate limiter's memory (default 10000 source addresses).
	MaxTrackedIPs int
	// MaxBodyBytes bounds a request body (default 64 KiB).
	MaxBodyBytes int64
	// RegisterToken, when set, must be sent as "Authorization: Bearer TOKEN" with
	// POST /v1/streams. Registration over NATS is trusted (whoever reaches NATS is trusted).
	RegisterToken string
}

// ErrBadConfig means a Config field is out of range; the message says which.
var ErrBadConfig = errors.New("bad tracker config")

func (c Config) withDefaults() (Config, error) {
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":7070"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.PeerTTL == 0 {
		c.PeerTTL = 10 * time.Second
	}
	if c.StreamTTL == 0 {
		c.StreamTTL = proto.TrackerStreamTTL
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = 3 * time.Second
	}
	if c.NeighbourCount == 0 {
		c.NeighbourCount = 8
	}
	if c.RateLimit == 0 {
		c.RateLimit = 20
	}
	if c.RateBurst == 0 {
		c.RateBurst = 40
	}
	if c.MaxTrackedIPs == 0 {
		c.MaxTrackedIPs = 10000
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 10
	}
	switch {
	case c.AnnounceInterval < 0 || c.AnnounceInterval >= c.PeerTTL:
		return c, fmt.Errorf("%w: announce interval %v must be positive and shorter than the peer TTL %v", ErrBadConfig, c.AnnounceInterval, c.PeerTTL)
	case c.PeerTTL < 100*time.Millisecond || c.StreamTTL < 100*time.Millisecond:
		// JetStream's smallest useful max age; shorter would also flap under load.
		return c, fmt.Errorf("%w: peer TTL %v and stream TTL %v must be at least 100ms", ErrBadConfig, c.PeerTTL, c.StreamTTL)
	case c.NeighbourCount < 1 || c.NeighbourCount > 100:
		return c, fmt.Errorf("%w: neighbour count %d must be 1 to 100", ErrBadConfig, c.NeighbourCount)
	case c.RateLimit < 0 || c.RateBurst < 1 || c.MaxTrackedIPs < 1 || c.MaxBodyBytes < 1024:
		return c, fmt.Errorf("%w: rate limit, burst, tracked IPs and body size must be positive (body at least 1 KiB)", ErrBadConfig)
	}
	return c, nil
}
