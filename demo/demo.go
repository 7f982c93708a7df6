// Package demo runs the whole system in one process: a tracker with embedded NATS, an origin, the
// built-in test card published over RTSP into it, and a few peers, each serving local HLS. It is
// what `crowdsurf demo` (and `make demo`) runs, and what the swarm tests start.
package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
	"github.com/crowdsurf/crowdsurf/tracker"
)

// Stream is the test card's stream name.
const Stream = "testcard"

// Config configures a demo. Zero values take the defaults in the comments.
type Config struct {
	OriginHTTP  string // origin HTTP address (default 127.0.0.1:8080)
	OriginRTSP  string // origin RTSP address (default 127.0.0.1:8554)
	OriginMesh  string // origin mesh UDP address (default 127.0.0.1:4433)
	TrackerHTTP string // tracker HTTP address (default 127.0.0.1:7070)
	// PeerHTTP is peer 0's local HLS address; peer i listens on its port plus i (default
	// 127.0.0.1:8090). With port 0 every peer gets a free port.
	PeerHTTP   string
	Peers      int           // number of peers (default 3)
	SeedCopies int           // origin children per stripe (default 2)
	Segment    time.Duration // target segment duration (default 2s)
	// PeerUploadBps caps each peer's upload (0 = auto, three times the stream bitrate).
	PeerUploadBps int64
	Logger        *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.OriginHTTP, "127.0.0.1:8080")
	def(&c.OriginRTSP, "127.0.0.1:8554")
	def(&c.OriginMesh, "127.0.0.1:4433")
	def(&c.TrackerHTTP, "127.0.0.1:7070")
	def(&c.PeerHTTP, "127.0.0.1:8090")
	if c.Peers < 0 {
		c.Peers = 0
	} else if c.Peers == 0 {
		c.Peers = 3
	}
	if c.SeedCopies <= 0 {
		c.SeedCopies = peer.DefaultSeedCopies
	}
	if c.Segment <= 0 {
		c.Segment = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Demo is a running demo: every component is created (and every port bound) by New.
type Demo struct {
	cfg       Config
	key       ed25519.PrivateKey
	tracker   *tracker.Tracker
	origin    *origin.Origin
	publisher *testcard.Publisher
	peers     []*peer.Node
	closers   []func()
}

// New binds every port and builds every component; Run starts them.
func New(cfg Config) (_ *Demo, err error) {
	cfg = cfg.withDefaults()
	d := &Demo{cfg: cfg}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	_, d.key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	publishKey := randomSecret()

	d.tracker, err = tracker.New(tracker.Config{
		HTTPAddr:  cfg.TrackerHTTP,
		RateLimit: rate.Inf, // every demo peer comes from 127.0.0.1
		Logger:    cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("tracker on %s: %w (use --tracker-http)", cfg.TrackerHTTP, err)
	}
	d.origin, err = origin.New(origin.Config{
		RTSPAddr:        cfg.OriginRTSP,
		UDPRTPAddr:      "-",
		HTTPAddr:        cfg.OriginHTTP,
		MeshAddr:        cfg.OriginMesh,
		SeedCopies:      cfg.SeedCopies,
		Key:             d.key,
		PublishKey:      publishKey,
		SegmentDuration: cfg.Segment,
		TrackerURL:      d.tracker.URL(),
		Logger:          cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("origin: %w (use --origin-http / --origin-rtsp / --origin-mesh)", err)
	}
	d.publisher, err = testcard.New(testcard.Config{
		URL:    "rtsp://" + d.origin.RTSPAddr().String() + "/" + Stream,
		User:   "demo",
		Pass:   publishKey,
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("test card: %w", err)
	}

	host, portStr, err := net.SplitHostPort(cfg.PeerHTTP)
	if err != nil {
		return nil, fmt.Errorf("peer HTTP address %q: %w", cfg.PeerHTTP, err)
	}
	basePort, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("peer HTTP address %q: bad port", cfg.PeerHTTP)
	}
	for i := range cfg.Peers {
		port := 0
		if basePort != 0 {
			port = basePort + i
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("peer %d local HLS on %s: %w (use --peer-http)", i, addr, err)
		}
		d.closers = append(d.closers, func() { ln.Close() })
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("peer %d mesh socket: %w", i, err)
		}
		d.closers = append(d.closers, func() { pc.Close() })
		n, err := peer.New(peer.Config{
			Stream:         Stream,
			OriginKey:      d.key.Public().(ed25519.PublicKey),
			PacketConn:     pc,
			HTTPListener:   ln,
			TrackerURL:     d.tracker.URL(),
			MaxUploadBps:   cfg.PeerUploadBps,
			TargetDuration: cfg.Segment,
			Logger:         cfg.Logger.With("peer", i),
		})
		if err != nil {
			return nil, fmt.Errorf("peer %d: %w", i, err)
		}
		d.peers = append(d.peers, n)
	}
	return d, nil
}

func randomSecret() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *Demo) close() {
	for _, c := range d.closers {
		c()
	}
}

// Origin is the demo's origin.
func (d *Demo) Origin() *origin.Origin { return d.origin }

// Tracker is the demo's tracker.
func (d *Demo) Tracker() *tracker.Tracker { return d.tracker }

// Peers are the demo's peers, in order.
func (d *Demo) Peers() []*peer.Node { return d.peers }

// PublicKey is the key every chunk is signed with.
func (d *Demo) PublicKey() ed25519.PublicKey { return d.key.Public().(ed25519.PublicKey) }

// OriginPlaylist is the origin's own HLS URL for the test card (the CDN path).
func (d *Demo) OriginPlaylist() string {
	return "http://" + d.origin.HTTPAddr().String() + segwindow.PlaylistPath(Stream)
}

// WatchLink is what a viewer gives `crowdsurf peer`.
func (d *Demo) WatchLink() string {
	return proto.WatchLink{Tracker: d.tracker.URL(), Stream: Stream, OriginKey: d.PublicKey()}.String()
}

// Run starts everything and returns when ctx ends and everything has stopped. The first error
// of a component stops the others.
func (d *Demo) Run(ctx context.Context) error {
	defer d.close()
	// The first component to fail ends the others (errgroup cancels ctx); a component that
	// merely stopped because ctx ended is no failure.
	g, ctx := errgroup.WithContext(ctx)
	start := func(name string, run func(context.Context) error) {
		g.Go(func() error {
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	start("tracker", d.tracker.Run)
	start("origin", d.origin.Run)
	start("test card", d.publisher.Run)
	// Peers join once the origin has registered the stream, as viewers of a live show do; a
	// peer started earlier would only retry its announces until then.
	d.waitForStream(ctx)
	for i, p := range d.peers {
		start(fmt.Sprintf("peer %d", i), p.Run)
	}
	return g.Wait()
}

// waitForStream waits (at most 15 s) until the tracker knows the test card's stream.
func (d *Demo) waitForStream(ctx context.Context) {
	client := &trackerclient.Client{BaseURL: d.tracker.URL()}
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := client.Stream(ctx, Stream, proto.FormatPublicKey(d.PublicKey())); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			d.cfg.Logger.Warn("the origin has not registered the test card yet; starting the peers anyway")
			return
		case <-tick.C:
		}
	}
}
