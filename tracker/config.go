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
	// NATSInProcess runs the embedded NATS server without a port: only clients in this process
	// reach it, with the options Tracker.NATSOptions returns. A testing/synctest bubble, where
	// no real socket may be used, runs a whole tracker this way. Ignored with NATSURL.
	NATSInProcess bool
	// Replicas is how many servers of a NATS cluster hold each bucket (default 1). With 3 on a
	// three-node JetStream cluster the swarm state survives one node going down. The embedded
	// server is a single node and takes only 1.
	Replicas int

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
	// POST proto.TrackerStreamsPath (the origin's --register-token). The signature already
	// decides who may register a (name, key) swarm; the token decides who may register streams
	// on this tracker at all. Registration over NATS needs no token: whoever reaches NATS is
	// trusted with it (the signature is still checked).
	RegisterToken string
	// RegistrationSkew is how far a registration's IssuedAt may be from this tracker's clock
	// (default proto.TrackerStreamTTL); an older or later one is refused as a replay or a forgery
	// of the future.
	RegistrationSkew time.Duration

	// TrustProxyHeader names a request header (e.g. X-Forwarded-For) whose last address is
	// taken as the client's instead of the connection's. Set it only behind a proxy you run that
	// sets it; anyone else can write any header.
	TrustProxyHeader string
	// AllowForeignAddr accepts announced QUIC addresses on other hosts than the announcing one.
	// Only for a load test whose peers sit on a simulated network while announcing from
	// 127.0.0.1; never on a tracker the internet reaches (anyone could point the swarm at a
	// third party).
	AllowForeignAddr bool
	// MaxPeersPerHost bounds the peers of one host (the IP of their QUIC address) listed in one
	// swarm (default 8); -1 means no bound. More are answered but never handed out. Loopback
	// addresses are exempt: only processes on the tracker's own machine can announce them.
	MaxPeersPerHost int
	// MaxPeersPerSwarm bounds one swarm (default 20000): newcomers beyond it are answered but
	// not listed. MaxStreams bounds the registered swarms (default 1000): a new registration
	// beyond it gets 503.
	MaxPeersPerSwarm int
	MaxStreams       int

	// DashboardAddrs lets GET /v1/swarm/NAME (the dashboard) show peers' and the origin's
	// addresses; off, it shows neither.
	DashboardAddrs bool

	// ObserverConns are UDP sockets the reflexive-address observer answers on and pushes punch
	// orders from (see Observer); the caller owns them. ObserverAddrs are UDP addresses the
	// tracker listens on for the same, closing them when Run returns (the command's default:
	// the HTTP port and the next one). Give two, on different ports, so peers can tell cone
	// from symmetric NATs. Both empty: no observer, and no NAT traversal (every peer is
	// handed out at its announced address).
	ObserverConns []net.PacketConn
	ObserverAddrs []string
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
	if c.RegistrationSkew == 0 {
		c.RegistrationSkew = proto.TrackerStreamTTL
	}
	if c.MaxPeersPerHost == 0 {
		c.MaxPeersPerHost = 8
	}
	if c.MaxPeersPerSwarm == 0 {
		c.MaxPeersPerSwarm = 20000
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = 1000
	}
	if c.Replicas == 0 {
		c.Replicas = 1
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
	case c.Replicas < 1 || c.Replicas > 5 || (c.NATSURL == "" && c.Replicas != 1):
		return c, fmt.Errorf("%w: replicas %d must be 1 to 5, and 1 with the embedded NATS server (a single node)", ErrBadConfig, c.Replicas)
	case c.RegistrationSkew < 0 || c.MaxPeersPerHost < -1 || c.MaxPeersPerSwarm < 1 || c.MaxStreams < 1:
		return c, fmt.Errorf("%w: registration skew, peers per host (-1 = no bound), peers per swarm and streams must be positive", ErrBadConfig)
	}
	return c, nil
}
