package loadtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/player"
	"github.com/crowdsurf/crowdsurf/proto"
)

// viewer is one member of the audience: a peer node (p2p mode) and a headless player on its
// local HLS URL, or in cdn mode a player on the origin's URL.
type viewer struct {
	id       int
	uplink   int64
	nat      simnet.NATKind
	node     *peer.Node // nil in cdn mode
	pc       net.PacketConn
	player   *player.Player
	segments *segmentLog
	joined   time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	left  time.Time // zero while in the swarm
	stuck bool      // stop timed out: its node's Run never returned
}

// sharedTransport carries every player's requests: one idle connection per local peer survives.
func newSharedTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0
	tr.MaxIdleConnsPerHost = 64
	tr.IdleConnTimeout = 30 * time.Second
	return tr
}

// startViewer creates viewer id and starts it; the viewer runs until stop or ctx ends.
func (lt *LoadTest) startViewer(ctx context.Context, id int) (*viewer, error) {
	cfg := lt.cfg
	v := &viewer{id: id, uplink: cfg.Uplink.Assign(id), nat: cfg.natKindOf(id), segments: newSegmentLog(), joined: time.Now()}
	playlistURL := lt.bc.HTTPURL() + cfg.playlistPath(streamName)

	if cfg.Mode == ModeP2P {
		pc, err := lt.mesh.peerConn(v.uplink, v.nat)
		if err != nil {
			return nil, err
		}
		ln, err := cfg.listenHTTP()
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("loadtest: viewer %d: local HLS listener: %w", id, err)
		}
		node, err := peer.New(peer.Config{
			Stream:       streamName,
			OriginKey:    lt.pub,
			VerifyCache:  lt.verifyCache,
			PacketConn:   pc,
			HTTPListener: ln,
			// Like a real viewer's watch link: the tracker and the key. The origin's QUIC
			// and HTTP addresses come from its signed registration at the tracker.
			TrackerURL:         lt.bc.Tracker.URL(),
			HTTPClient:         lt.fallbackClient,
			Stripes:            cfg.Stripes,
			MaxUploadBps:       uploadBudget(v.uplink),
			TargetDuration:     cfg.Segment,
			StartNeighbourWait: cfg.StartNeighbourWait,
			OnChunk:            lt.deliveryHook(v),
			OnPunch:            lt.nat.onPunch,
			Logger:             cfg.Logger.With("viewer", id),
			Registry:           prometheus.NewRegistry(),
		})
		if err != nil {
			_ = pc.Close()
			_ = ln.Close()
			return nil, fmt.Errorf("loadtest: viewer %d: %w", id, err)
		}
		v.node, v.pc = node, pc
		playlistURL = "http://" + ln.Addr().String() + cfg.playlistPath(streamName)
	}

	p, err := player.New(player.Config{
		URL:            playlistURL,
		Logger:         cfg.Logger.With("viewer", id),
		HTTPClient:     &http.Client{Transport: &loggingTransport{base: lt.playerTransport, log: v.segments}},
		SkipMediaCheck: !cfg.MediaCheck,
	})
	if err != nil {
		if v.pc != nil {
			_ = v.pc.Close()
		}
		return nil, fmt.Errorf("loadtest: viewer %d: %w", id, err)
	}
	v.player = p

	vctx, cancel := context.WithCancel(ctx)
	v.cancel = cancel
	if v.node != nil {
		v.wg.Go(func() {
			if err := v.node.Run(vctx); err != nil {
				cfg.Logger.Warn("peer stopped with an error", "viewer", id, "error", err)
			}
		})
	}
	v.wg.Go(func() {
		pprof.Do(vctx, pprof.Labels("component", "player"), func(ctx context.Context) { _ = p.Run(ctx) })
	})
	return v, nil
}

// uploadBudget is the upload a peer offers the mesh: 80 % of its uplink, so acknowledgements,
// control messages and repair still fit. A free rider (0) offers nothing; the node takes any
// budget below one stripe's share as "no children".
func uploadBudget(uplink int64) int64 {
	if uplink <= 0 {
		return 1
	}
	return uplink * 8 / 10
}

// viewerStopWait bounds how long a leaving viewer may take to say GOODBYE and stop; a node that
// takes longer has its socket closed under it, and one that still hangs is reported, not waited
// for, so one stuck node cannot hold the whole report back.
const viewerStopWait = 5 * time.Second

// stop makes the viewer leave (the node says GOODBYE) and waits until it has. It reports false
// when the viewer did not stop in time.
func (v *viewer) stop() bool {
	v.mu.Lock()
	if v.left.IsZero() {
		v.left = time.Now()
	}
	v.mu.Unlock()
	v.cancel()
	stopped := waitTimeout(&v.wg, viewerStopWait)
	if v.pc != nil {
		_ = v.pc.Close()
	}
	if !stopped {
		stopped = waitTimeout(&v.wg, viewerStopWait)
	}
	v.mu.Lock()
	v.stuck = !stopped
	v.mu.Unlock()
	return stopped
}

// waitTimeout waits for wg, at most d; false when d ran out first.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func (v *viewer) gone() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return !v.left.IsZero()
}

// deliveryHook records, for every chunk a viewer's node verifies, how long after the origin
// emitted it the chunk arrived. Chunks emitted before the viewer joined are left out: fetching
// history on joining is startup, not delivery.
func (lt *LoadTest) deliveryHook(v *viewer) func(proto.ChunkID, peer.Source, bool, time.Time) {
	return func(id proto.ChunkID, _ peer.Source, pushed bool, at time.Time) {
		emitted, ok := lt.emits.lookup(id.Seq, id.Index)
		if !ok || emitted.Before(v.joined) {
			return
		}
		ms := float64(at.Sub(emitted)) / float64(time.Millisecond)
		lt.delivery.add(ms)
		if half := lt.secondHalf.Load(); half != 0 && emitted.UnixNano() >= half {
			lt.deliveryLate.add(ms)
			if !pushed {
				lt.deliveryLatePulled.add(ms)
			}
		}
	}
}
