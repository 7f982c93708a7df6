package origin

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// meshSeeder runs one root mesh node per stream: the top of every stripe tree, accepting at most
// SeedCopies children per stripe, so the origin's mesh egress is a few copies of each stream
// whatever the audience size.
//
// Every root listens on the one --mesh socket through a peer.Mux, which hands each connection to
// the root of the stream its client named (the TLS server name), so an origin needs one UDP port
// however many streams it carries.
type meshSeeder struct {
	cfg meshConfig
	ctx context.Context
	log *slog.Logger
	wg  sync.WaitGroup
	mux *peer.Mux

	mu     sync.Mutex
	roots  map[string]*rootNode
	closed bool

	// started wakes the tracker registration as soon as a new root runs, so peers can find a
	// new stream at once instead of at the next registration tick.
	started chan struct{}
}

type rootNode struct {
	node       *peer.Node
	ln         *peer.MuxListener
	stop       context.CancelFunc
	lastSeeded int64
}

// meshConfig is what the seeder needs of the origin: its mesh socket and key, the roots'
// parameters, and where to count the bytes they seed.
type meshConfig struct {
	conn       net.PacketConn
	key        ed25519.PrivateKey
	registry   *prometheus.Registry
	logger     *slog.Logger
	seedCopies int
	stripes    int
	window     int
	segment    time.Duration
	onSeeded   func(bytes int)
	// windowOf is the stream's window of verified chunks (the one the origin serves over HTTP),
	// which its root shares instead of keeping every segment twice.
	windowOf func(stream string) *segwindow.Window
}

func newMeshSeeder(ctx context.Context, cfg meshConfig) (*meshSeeder, error) {
	mux, err := peer.NewMux(peer.MuxConfig{PacketConn: cfg.conn, Identity: cfg.key, Registry: cfg.registry})
	if err != nil {
		return nil, fmt.Errorf("origin: mesh: %w", err)
	}
	m := &meshSeeder{
		cfg:     cfg,
		ctx:     ctx,
		log:     cfg.logger.With("component", "origin-mesh"),
		mux:     mux,
		roots:   make(map[string]*rootNode),
		started: make(chan struct{}, 1),
	}
	m.wg.Go(func() { mux.Run(ctx) })
	return m, nil
}

// publish hands a chunk to its stream's root, starting the root on the stream's first chunk. It
// runs on the ingest path, so it never blocks: peer.Node.Publish only enqueues.
func (m *meshSeeder) publish(c *proto.Chunk) {
	m.mu.Lock()
	r, ok := m.roots[c.ID.Stream]
	if !ok && !m.closed {
		var err error
		if r, err = m.startRoot(c.ID.Stream); err != nil {
			m.log.Error("mesh root not started; peers of this stream fall back to HTTP",
				"stream", c.ID.Stream, "err", err)
		}
		m.roots[c.ID.Stream] = r // nil after an error: do not retry on every chunk
	}
	m.mu.Unlock()
	if r != nil {
		r.node.Publish(c)
	}
}

// startRoot is called with m.mu held.
func (m *meshSeeder) startRoot(stream string) (*rootNode, error) {
	ln, err := m.mux.Listen(stream)
	if err != nil {
		return nil, fmt.Errorf("mesh root for stream %s: %w", stream, err)
	}
	node, err := peer.New(peer.Config{
		Stream:         stream,
		Listener:       ln,
		Root:           true,
		Identity:       m.cfg.key,
		Window:         m.cfg.windowOf(stream),
		SeedCopies:     m.cfg.seedCopies,
		Stripes:        m.cfg.stripes,
		PlaylistLength: m.cfg.window,
		TargetDuration: m.cfg.segment,
		Logger:         m.cfg.logger,
	})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("mesh root for stream %s: %w", stream, err)
	}
	ctx, stop := context.WithCancel(m.ctx)
	r := &rootNode{node: node, ln: ln, stop: stop}
	m.wg.Go(func() {
		defer stop()
		if err := node.Run(ctx); err != nil {
			m.log.Error("mesh root stopped", "stream", stream, "err", err)
		}
	})
	select {
	case m.started <- struct{}{}:
	default:
	}
	m.log.Info("mesh root seeding", "stream", stream, "mesh", node.Addr().String(),
		"seed_copies", m.cfg.seedCopies, "stripes", m.cfg.stripes)
	return r, nil
}

// remove stops a stream's root (it ends its children's connections; they wait for the stream to
// come back) and frees the stream's name on the mux at once, so a new publisher of it gets a new
// root. It does not wait for the root to finish: stop does.
func (m *meshSeeder) remove(stream string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.roots[stream]
	delete(m.roots, stream)
	if !ok || r == nil {
		return
	}
	if d := r.node.Stats().BytesToPeers - r.lastSeeded; d > 0 {
		m.cfg.onSeeded(int(d))
	}
	r.stop()
	_ = r.ln.Close()
}

// meshAddr is the local address of a stream's root, if it runs.
func (m *meshSeeder) meshAddr(stream string) (net.Addr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.roots[stream]
	if r == nil {
		return nil, false
	}
	return r.node.Addr(), true
}

// rootStats are the counters of a stream's root, if it runs.
func (m *meshSeeder) rootStats(stream string) (peer.Stats, bool) {
	m.mu.Lock()
	r := m.roots[stream]
	m.mu.Unlock()
	if r == nil {
		return peer.Stats{}, false
	}
	return r.node.Stats(), true
}

// countSeeded moves the roots' upload counters into the origin's bytes_seeded once a second.
func (m *meshSeeder) countSeeded(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.collectSeeded()
			return
		case <-t.C:
			m.collectSeeded()
		}
	}
}

func (m *meshSeeder) collectSeeded() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.roots {
		if r == nil {
			continue
		}
		sent := r.node.Stats().BytesToPeers
		if d := sent - r.lastSeeded; d > 0 {
			m.cfg.onSeeded(int(d))
			r.lastSeeded = sent
		}
	}
}

// stop refuses new roots and waits for the running ones, which end with ctx.
func (m *meshSeeder) stop() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait() // the roots and the mux end with ctx
	_ = m.mux.Close()
	m.collectSeeded()
}
