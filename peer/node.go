package peer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/crowdsurf/crowdsurf/internal/runonce"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// chunkKey names a chunk inside the node's one stream.
type chunkKey struct {
	seq   uint64
	index uint32
}

// Node is one member of a stream's mesh: a viewer, or the origin's root in root mode.
//
// One goroutine, the loop (loop.go), owns the node's state: neighbours, stripe parents and
// children, pending requests, what is known about the swarm. Connection goroutines read and
// verify, then hand events to the loop; the loop answers through each connection's queues.
type Node struct {
	cfg     Config
	log     *slog.Logger
	id      [16]byte
	secret  [proto.PeerSecretLen]byte
	tr      *quic.Transport // nil when the node takes its connections from a Mux
	ln      connAcceptor
	window  *segwindow.Window
	metrics *metrics
	stats   counters

	tlsServer, tlsClient *tls.Config
	quicConf             *quic.Config
	guard                *admission // per-IP rules of the socket: the node's own, or its Mux's

	nextConnID   atomic.Uint64
	events       chan event
	publishCh    chan *proto.Chunk
	hello        atomic.Pointer[proto.Hello] // what we say in HELLO now; the loop updates it
	topology     atomic.Pointer[topology]    // the loop's view for Stats and the tracker
	playback     playback                    // the local player's buffer, as its segment requests tell
	partWaits    partWaits                   // what the local LL-HLS player waits for (llfallback.go)
	wantPlaylist atomic.Bool                 // the loop wants the origin playlist polled
	originHTTP   atomic.Pointer[string]      // base URL of the CDN path, once known
	// originLearnt wakes the playlist poller when the tracker's answer names the origin: a
	// joiner polls at once instead of at its next tick (up to a quarter segment later).
	originLearnt chan struct{}
	reflexive    atomic.Pointer[Reflexive] // what the observers last saw; reachability.go
	diag         diagnosis                 // why nothing plays yet, or why Run stopped (diagnose.go)
	nat          *natState                 // observers, punch orders; nat.go

	wg      sync.WaitGroup
	running atomic.Bool
	done    chan struct{}
}

// New sets a node up: its mesh socket starts listening at once, so Addr is known before Run.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		events:    make(chan event, 256),
		publishCh: make(chan *proto.Chunk, 1024),
		done:      make(chan struct{}),
		nat:       newNATState(cfg.Observers),
		// One pending wake is enough: the poller reads the newest URL when it wakes.
		originLearnt: make(chan struct{}, 1),
	}
	// The id derives from a per-run secret that only announces to the tracker carry, so nobody
	// else can announce under it (proto.PeerIDFromSecret).
	if n.secret, n.id, err = proto.NewPeerSecret(rand.Read); err != nil {
		return nil, err
	}
	n.log = cfg.Logger.With("component", "peer", "stream", cfg.Stream, "peer_id", hex.EncodeToString(n.id[:4]))
	n.window = cfg.Window
	if n.window == nil {
		n.window = segwindow.New(segwindow.Config{
			Stream:         cfg.Stream,
			PlaylistLength: cfg.PlaylistLength,
			Keep:           cfg.Keep,
			TargetDuration: cfg.TargetDuration,
		})
	}
	if n.metrics, err = newMetrics(cfg.Registry, &n.stats); err != nil {
		return nil, err
	}
	if n.tlsServer, n.tlsClient, err = meshTLS(cfg.Stream, cfg.Identity); err != nil {
		return nil, err
	}
	n.quicConf = meshQUICConfig()
	if cfg.OriginHTTP != "" {
		u := cfg.OriginHTTP
		n.originHTTP.Store(&u)
	}
	if cfg.Listener != nil {
		n.ln = cfg.Listener
		n.guard = cfg.Listener.m.guard
	} else {
		n.guard = newAdmission(cfg.Limits)
		if err := n.guard.register(cfg.Registry); err != nil {
			return nil, err
		}
		n.tr = &quic.Transport{Conn: cfg.PacketConn}
		n.guard.guardTransport(n.tr)
		ln, err := n.tr.Listen(n.tlsServer, n.quicConf)
		if err != nil {
			_ = n.tr.Close()
			return nil, fmt.Errorf("peer: listen on %s: %w", cfg.PacketConn.LocalAddr(), err)
		}
		n.ln = ln
	}
	depths := make([]uint8, cfg.Stripes)
	for i := range depths {
		depths[i] = proto.NoDepth
		if cfg.Root {
			depths[i] = 0
		}
	}
	n.setHello(depths, n.initialFreeSlots())
	n.topology.Store(&topology{Depths: depthsInt(depths)})
	return n, nil
}

func (n *Node) initialFreeSlots() int {
	if n.cfg.Root {
		return n.cfg.SeedCopies * n.cfg.Stripes
	}
	return childSlots(n.cfg.MaxUploadBps, 0, n.cfg.Stripes)
}

func (n *Node) setHello(depths []uint8, free int) {
	n.hello.Store(&proto.Hello{
		MinVersion: proto.MinVersion,
		MaxVersion: proto.MaxVersion,
		PeerID:     n.id,
		Stream:     n.cfg.Stream,
		Depths:     append([]uint8(nil), depths...),
		FreeSlots:  uint16(min(free, 0xffff)),
	})
}

func (n *Node) localHello() *proto.Hello { return n.hello.Load() }

// Addr is the node's mesh (QUIC/UDP) address.
func (n *Node) Addr() net.Addr {
	if n.cfg.Listener != nil {
		return n.cfg.Listener.Addr()
	}
	return n.cfg.PacketConn.LocalAddr()
}

// connAcceptor is where a node's inbound connections come from: its own quic.Listener, or a
// Mux shared with the roots of other streams.
type connAcceptor interface {
	Accept(ctx context.Context) (*quic.Conn, error)
	Close() error
}

// PeerID is the node's random identity in the mesh and at the tracker, hex.
func (n *Node) PeerID() string { return hex.EncodeToString(n.id[:]) }

// Window is the node's live window of verified chunks.
func (n *Node) Window() *segwindow.Window { return n.window }

// HLSURL is the playlist URL a player should open, or "" without an HTTP listener.
func (n *Node) HLSURL() string {
	if n.cfg.HTTPListener == nil {
		return ""
	}
	return "http://" + n.cfg.HTTPListener.Addr().String() + segwindow.PlaylistPath(n.cfg.Stream)
}

// Publish hands the root a chunk the origin signed. It never blocks: when the node cannot keep
// up the chunk is dropped (and counted); children then repair it from each other or fall back.
func (n *Node) Publish(c *proto.Chunk) {
	select {
	case n.publishCh <- c:
	default:
		n.stats.publishDropped.Add(1)
	}
}

// emit hands an event to the loop; false when the node is stopping.
func (n *Node) emit(ctx context.Context, ev event) bool {
	select {
	case n.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run runs the node until ctx ends, then says GOODBYE to every neighbour, closes everything and
// returns when every goroutine it started has ended. It closes the HTTPListener; the PacketConn
// stays open for the caller to close. A local HLS server that fails stops the node, and Run
// returns its error.
func (n *Node) Run(ctx context.Context) (err error) {
	if !n.running.CompareAndSwap(false, true) {
		return fmt.Errorf("peer: %w", runonce.ErrRunTwice)
	}
	defer close(n.done)
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	defer cancel()
	n.diag.mu.Lock()
	n.diag.abort = cancelCause // ErrWrongKey ends the node (diagnose.go)
	n.diag.mu.Unlock()

	var httpErr error
	var httpDone chan struct{}
	if n.cfg.HTTPListener != nil {
		httpDone = make(chan struct{})
		srv := n.httpServer()
		go func() {
			defer close(httpDone)
			if err := srv.Serve(n.cfg.HTTPListener); err != nil && !errors.Is(err, errServerClosed) {
				httpErr = fmt.Errorf("peer: local HLS server on %s: %w", n.cfg.HTTPListener.Addr(), err)
				cancel() // the player has lost its endpoint: stop, and say why
			}
		}()
		defer func() {
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
			<-httpDone // orders httpErr's write before this read
			if err == nil {
				err = httpErr
			}
		}()
	}

	n.wg.Go(func() { n.acceptLoop(ctx) })
	if n.tr != nil {
		// The observers come from Config or from the tracker's first answer.
		n.wg.Go(func() { n.bindingReader(ctx) })
		n.wg.Go(func() { n.reachabilityLoop(ctx) })
	}
	if a := n.announcer(); a != nil {
		n.wg.Go(func() { n.announceLoop(ctx, a) })
	}
	if !n.cfg.Root {
		// A joiner wants the live edge at once: the first poll goes out now, not after the
		// loop's first tick and a poll interval (half a second of startup).
		n.wantPlaylist.Store(true)
		n.wg.Go(func() { n.playlistPoller(ctx) })
	}

	l := newLoop(n)
	l.run(ctx)
	n.log.Debug("node stopped", "stats", n.Stats())

	// The loop has said goodbye and closed every connection it knew; now stop accepting and
	// wait. A connection whose handshake ended as the loop stopped may have queued its evConnUp
	// unseen: its writer would wait on the connection for ever (the remote's keep-alives hold it
	// open), so whatever still arrives is drained and closed until everything has stopped.
	cancel()
	_ = n.ln.Close()
	stopped := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(stopped)
	}()
	for {
		select {
		case ev := <-n.events:
			closeUnseen(ev)
			continue
		case <-stopped:
		}
		break
	}
	for {
		select {
		case ev := <-n.events:
			closeUnseen(ev)
			continue
		default:
		}
		break
	}
	if n.tr != nil {
		_ = n.tr.Close()
	}
	return n.diag.fatalError() // ErrWrongKey, or nil (then the deferred HTTP error, if any)
}

// closeUnseen closes the connection of an evConnUp the loop never took.
func closeUnseen(ev event) {
	if up, ok := ev.(evConnUp); ok {
		up.nb.gone = true
		_ = up.nb.conn.CloseWithError(codeGoodbye, "shutting down")
	}
}
