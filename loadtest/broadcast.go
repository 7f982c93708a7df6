package loadtest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/tracker"
)

// BroadcastNet is everything the broadcast side of a load test listens on. The caller makes it:
// loopback sockets, hosts on a simulated network, in-memory listeners inside a synctest bubble.
// Nothing in the broadcast opens a socket of its own except the tracker's embedded NATS, and
// that one neither with TrackerNATSInProcess.
// The broadcast closes what it is given when it stops (or when NewBroadcast fails).
type BroadcastNet struct {
	// OriginMesh is the origin's QUIC mesh socket; nil runs the origin without a mesh (the
	// CDN baseline).
	OriginMesh net.PacketConn
	// OriginHTTP serves the origin's HLS and chunks: the CDN path. Required.
	OriginHTTP net.Listener
	// TrackerHTTP serves the tracker's API; nil runs no tracker (the CDN baseline).
	TrackerHTTP net.Listener
	// Observers are the tracker's two NAT observer sockets; nil runs none.
	Observers []net.PacketConn
	// TrackerClient carries the origin's registrations to TrackerHTTP; nil = http.DefaultClient.
	TrackerClient *http.Client
	// TrackerNATSInProcess runs the tracker's NATS server without a port (the scale lab:
	// nothing in a synctest bubble may open a socket).
	TrackerNATSInProcess bool
}

func (bn BroadcastNet) close() {
	if bn.OriginMesh != nil {
		_ = bn.OriginMesh.Close()
	}
	if bn.OriginHTTP != nil {
		_ = bn.OriginHTTP.Close()
	}
	if bn.TrackerHTTP != nil {
		_ = bn.TrackerHTTP.Close()
	}
	for _, pc := range bn.Observers {
		_ = pc.Close()
	}
}

// BroadcastConfig is the stream's side of a broadcast.
type BroadcastConfig struct {
	Key        ed25519.PrivateKey
	Segment    time.Duration
	SeedCopies int
	Stripes    int
	// ChunkDuration is the origin's origin.Config.ChunkDuration (0: its default).
	ChunkDuration time.Duration
	Logger        *slog.Logger
	// Registry takes the origin's metrics (crowdsurf_origin_*); nil = a private one.
	Registry *prometheus.Registry
}

// Broadcast is the origin side of a load test: the real origin, with its mesh root seeding the
// swarm, its registration at the tracker and its CDN endpoint, and an in-process tracker. A
// source feeds the origin through Origin.Feed.
type Broadcast struct {
	Origin  *origin.Origin
	Tracker *tracker.Tracker // nil without BroadcastNet.TrackerHTTP
	net     BroadcastNet
	started chan struct{}
}

// Started is closed once the origin runs (after the tracker answers): a source feeds it then.
func (b *Broadcast) Started() <-chan struct{} { return b.started }

// NewBroadcast prepares the tracker and the origin on bn; Run starts them.
func NewBroadcast(cfg BroadcastConfig, bn BroadcastNet) (*Broadcast, error) {
	if bn.OriginHTTP == nil {
		bn.close()
		return nil, fmt.Errorf("%w: the broadcast needs an HTTP listener for the origin", ErrConfig)
	}
	b := &Broadcast{net: bn, started: make(chan struct{})}
	ocfg := origin.Config{
		RTSPAddr:          "-", // sources feed the origin in-process
		UDPRTPAddr:        "-",
		HTTPListener:      bn.OriginHTTP,
		MeshAddr:          "-",
		MeshConn:          bn.OriginMesh,
		SeedCopies:        cfg.SeedCopies,
		Stripes:           cfg.Stripes,
		Key:               cfg.Key,
		SegmentDuration:   cfg.Segment,
		ChunkDuration:     cfg.ChunkDuration,
		TrackerHTTPClient: bn.TrackerClient,
		Logger:            cfg.Logger,
		Registry:          cfg.Registry,
	}
	if bn.TrackerHTTP != nil {
		tr, err := tracker.New(tracker.Config{
			ObserverConns: bn.Observers,
			HTTPListener:  bn.TrackerHTTP,
			Logger:        cfg.Logger,
			// A whole swarm announces from one host: no per-address limit, and the QUIC
			// addresses peers announce may be on a simulated network, not the HTTP source's
			// host. Each simulated peer has its own address, so the per-host bounds still hold.
			RateLimit:        rate.Inf,
			RateBurst:        1,
			AllowForeignAddr: true,
			NATSInProcess:    bn.TrackerNATSInProcess,
		})
		if err != nil {
			bn.close()
			return nil, fmt.Errorf("loadtest: tracker: %w", err)
		}
		b.Tracker = tr
		ocfg.TrackerURL = tr.URL()
	}
	o, err := origin.New(ocfg)
	if err != nil {
		bn.close()
		return nil, fmt.Errorf("loadtest: origin: %w", err)
	}
	b.Origin = o
	return b, nil
}

// trackerReadyWait bounds the tracker's start (its embedded NATS and buckets).
const trackerReadyWait = 15 * time.Second

// Run runs the tracker, then (once it answers) the origin, until ctx ends, and returns when
// both have stopped.
func (b *Broadcast) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var trErr, oErr error
	if b.Tracker != nil {
		wg.Go(func() {
			// Labelled so that a CPU profile splits by component (go tool pprof -tags).
			pprof.Do(ctx, pprof.Labels("component", "tracker"), func(ctx context.Context) { trErr = b.Tracker.Run(ctx) })
			cancel()
		})
		t := time.NewTimer(trackerReadyWait)
		defer t.Stop()
		select {
		case <-b.Tracker.Ready():
		case <-ctx.Done():
		case <-t.C:
			trErr = fmt.Errorf("loadtest: the tracker did not become ready within %v", trackerReadyWait)
			cancel()
		}
	}
	if ctx.Err() == nil {
		wg.Go(func() {
			pprof.Do(ctx, pprof.Labels("component", "origin"), func(ctx context.Context) { oErr = b.Origin.Run(ctx) })
			cancel()
		})
		close(b.started)
	}
	wg.Wait()
	b.net.close() // the origin leaves a given mesh socket open, and it may never have run
	err := errors.Join(trErr, oErr)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// HTTPURL is the origin's CDN endpoint.
func (b *Broadcast) HTTPURL() string { return "http://" + b.Origin.HTTPAddr().String() }
