package origin

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"

	"github.com/crowdsurf/crowdsurf/internal/runonce"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// Origin ingests RTSP, produces signed chunks and serves them over HTTP.
type Origin struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	pub     ed25519.PublicKey

	rtsp   *gortsplib.Server
	httpLn net.Listener
	http   *http.Server

	mu sync.Mutex
	// windows maps each stream's name to its window, readable without mu: the mesh root of a
	// stream shares it (meshConfig.windowOf), asked on the ingest path where mu must not be taken.
	windows sync.Map
	streams map[string]*stream
	feeds   map[*Feed]struct{} // in-process publishers, ended by Run on its way out

	subMu   sync.RWMutex
	subs    map[uint64]func(*proto.Chunk)
	nextSub uint64

	bytesProduced atomic.Uint64
	bytesHTTP     atomic.Uint64
	// the HTTP bytes by kind of response (segwindow.KindPlaylist, KindSegment, KindChunk)
	bytesHTTPPlaylist, bytesHTTPSegment, bytesHTTPChunk atomic.Uint64
	bytesSeeded                                         atomic.Uint64

	runOnce atomic.Bool

	meshConn    net.PacketConn // nil with MeshAddr "-"
	ownMeshConn bool
	mesh        atomic.Pointer[meshSeeder] // set by Run; tests look at its roots
}

// MeshAddr is the local address of the mesh socket (the first stream's root), or nil without a mesh.
func (o *Origin) MeshAddr() net.Addr {
	if o.meshConn == nil {
		return nil
	}
	return o.meshConn.LocalAddr()
}

// New checks cfg and opens the RTSP and HTTP listeners (so RTSPAddr and HTTPAddr are known at
// once); Run serves them and closes them when its context ends.
func New(cfg Config) (*Origin, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	o := &Origin{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "origin"),
		metrics: newMetrics(cfg.Registry),
		pub:     cfg.Key.Public().(ed25519.PublicKey),
		streams: make(map[string]*stream),
		feeds:   make(map[*Feed]struct{}),
		subs:    make(map[uint64]func(*proto.Chunk)),
	}

	if cfg.RTSPAddr == "-" && cfg.RTSPListener == nil {
		if err := o.listen(nil); err != nil {
			return nil, err
		}
		return o, nil
	}
	o.rtsp = &gortsplib.Server{
		Handler:     &rtspHandler{o: o},
		RTSPAddress: cfg.RTSPAddr,
	}
	if cfg.RTSPListener != nil {
		ln := cfg.RTSPListener
		o.rtsp.RTSPAddress = ln.Addr().String()
		o.rtsp.Listen = func(string, string) (net.Listener, error) { return ln, nil }
	}
	switch {
	case cfg.UDPRTPConn != nil && cfg.UDPRTCPConn != nil:
		rtpConn, rtcpConn := cfg.UDPRTPConn, cfg.UDPRTCPConn
		o.rtsp.UDPRTPAddress = rtpConn.LocalAddr().String()
		o.rtsp.UDPRTCPAddress = rtcpConn.LocalAddr().String()
		o.rtsp.ListenPacket = func(_, addr string) (net.PacketConn, error) {
			switch addr {
			case rtpConn.LocalAddr().String():
				return rtpConn, nil
			case rtcpConn.LocalAddr().String():
				return rtcpConn, nil
			}
			return nil, fmt.Errorf("origin: unexpected UDP listen on %s", addr)
		}
	case cfg.UDPRTPAddr != "-":
		host, port, err := net.SplitHostPort(cfg.UDPRTPAddr)
		if err != nil {
			return nil, fmt.Errorf("origin: UDP RTP address %q: %w", cfg.UDPRTPAddr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p%2 != 0 || p <= 0 || p >= 65535 {
			return nil, fmt.Errorf("origin: UDP RTP address %q: the port must be even (RTCP uses the next one)", cfg.UDPRTPAddr)
		}
		o.rtsp.UDPRTPAddress = cfg.UDPRTPAddr
		o.rtsp.UDPRTCPAddress = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	if err := o.listen(o.rtsp); err != nil {
		return nil, err
	}
	return o, nil
}

// listen opens the HTTP listener and the mesh socket unless the caller gave them, then starts
// the RTSP server, if any; on an error it closes what it opened.
func (o *Origin) listen(rtsp *gortsplib.Server) error {
	cfg := o.cfg
	httpLn := cfg.HTTPListener
	if httpLn == nil {
		var err error
		httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("origin: listen HTTP: %w", err)
		}
	}
	o.httpLn = httpLn
	handler, hls := o.newEcho()
	o.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	o.http.RegisterOnShutdown(hls.Shutdown) // blocked LL-HLS requests must not hold the shutdown

	o.meshConn = cfg.MeshConn
	if o.meshConn == nil && cfg.MeshAddr != "-" {
		var err error
		if o.meshConn, err = net.ListenPacket("udp", cfg.MeshAddr); err != nil {
			httpLn.Close()
			return fmt.Errorf("origin: mesh socket %s: %w (pick another with --mesh, or - for none)", cfg.MeshAddr, err)
		}
		o.ownMeshConn = true
	}
	if rtsp == nil {
		return nil
	}
	if err := rtsp.Start(); err != nil {
		httpLn.Close()
		if o.ownMeshConn {
			o.meshConn.Close()
		}
		return fmt.Errorf("origin: start RTSP server: %w", err)
	}
	return nil
}

// RTSPAddr is the address publishers connect to; nil with RTSPAddr "-" (in-process feeds only).
func (o *Origin) RTSPAddr() net.Addr {
	if o.rtsp == nil {
		return nil
	}
	return o.rtsp.NetListener().Addr()
}

// HTTPAddr is the address of the HLS/chunk/API server.
func (o *Origin) HTTPAddr() net.Addr { return o.httpLn.Addr() }

// PublicKey is the key every chunk verifies against.
func (o *Origin) PublicKey() ed25519.PublicKey { return o.pub }

// Config returns the configuration with defaults filled in (the mesh root reads MeshAddr and
// SeedCopies from it).
func (o *Origin) Config() Config { return o.cfg }

// Run serves until ctx ends, then stops ingest (finishing open segments), pulls and HTTP, and
// returns once all of them have stopped.
func (o *Origin) Run(ctx context.Context) error {
	if !o.runOnce.CompareAndSwap(false, true) {
		return fmt.Errorf("origin: %w", runonce.ErrRunTwice)
	}
	if o.rtsp != nil {
		o.log.Info("origin running", "rtsp", o.RTSPAddr().String(), "http", o.HTTPAddr().String(),
			"udp_rtp", o.rtsp.UDPRTPAddress, "public_key", proto.FormatPublicKey(o.pub))
	} else {
		o.log.Info("origin running without RTSP (in-process feeds only)", "http", o.HTTPAddr().String(),
			"public_key", proto.FormatPublicKey(o.pub))
	}
	if o.cfg.PublishKey == "" {
		limit := "any number of streams"
		if o.cfg.MaxStreams > 0 {
			limit = fmt.Sprintf("at most %d streams", o.cfg.MaxStreams)
		}
		o.log.Warn("no --publish-key: anyone who can reach RTSP can publish; "+limit, "max_streams", o.cfg.MaxStreams)
	}

	// The mesh roots outlive ingest by a moment, so the segments that ingest finishes on the way
	// out still reach the children; they stop with meshCtx after ingest has closed.
	meshCtx, stopMesh := context.WithCancel(context.WithoutCancel(ctx))
	defer stopMesh()
	var mesh *meshSeeder
	if o.meshConn != nil {
		var err error
		if mesh, err = newMeshSeeder(meshCtx, meshConfig{
			conn: o.meshConn, key: o.cfg.Key, registry: o.cfg.Registry, logger: o.cfg.Logger,
			seedCopies: o.cfg.SeedCopies, stripes: o.cfg.Stripes, window: o.cfg.Window, segment: o.cfg.SegmentDuration,
			onSeeded: o.AddSeeded,
			windowOf: func(name string) *segwindow.Window {
				// Not o.lookup: this runs on the ingest path under the stream's and the
				// seeder's locks, and o.mu is taken before those (removeIdle).
				if w, ok := o.windows.Load(name); ok {
					return w.(*segwindow.Window)
				}
				return nil
			},
		}); err != nil {
			o.closeRTSP()
			_ = o.httpLn.Close()
			if o.ownMeshConn {
				o.meshConn.Close()
			}
			return err
		}
		o.mesh.Store(mesh)
	}

	var wg sync.WaitGroup
	httpErr := make(chan error, 1)
	wg.Go(func() {
		if err := o.http.Serve(o.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			httpErr <- err
		}
	})

	pullCtx, stopPulls := context.WithCancel(ctx)
	defer stopPulls()
	names := make([]string, 0, len(o.cfg.Pulls))
	for name := range o.cfg.Pulls {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := &puller{o: o, name: name, url: o.cfg.Pulls[name]}
		wg.Go(func() { p.run(pullCtx) })
	}

	wg.Go(func() { o.tickChunks(pullCtx) })
	wg.Go(func() { o.removeStreams(pullCtx, mesh) })

	if mesh != nil {
		unsubscribe := o.Subscribe(mesh.publish)
		defer unsubscribe()
		wg.Go(func() { mesh.countSeeded(pullCtx) })
		if o.cfg.TrackerURL != "" || o.cfg.NATSURL != "" {
			wg.Go(func() { o.registerStreams(pullCtx, mesh) })
		}
	}

	rtspErr := make(chan error, 1)
	if o.rtsp != nil {
		go func() { rtspErr <- o.rtsp.Wait() }()
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-httpErr:
		err = fmt.Errorf("origin: HTTP server: %w", err)
	case err = <-rtspErr:
		err = fmt.Errorf("origin: RTSP server: %w", err)
	}
	o.closeRTSP() // closes sessions: each finishes its open segment
	stopPulls()
	o.closeFeeds()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.http.Shutdown(shutdownCtx)
	wg.Wait()
	if mesh != nil {
		stopMesh()
		mesh.stop()
	}
	if o.ownMeshConn {
		o.meshConn.Close()
	}
	return err
}

func (o *Origin) closeRTSP() {
	if o.rtsp != nil {
		o.rtsp.Close()
	}
}

// tickChunks closes chunks on time when a stream's media pauses between writes.
func (o *Origin) tickChunks(ctx context.Context) {
	t := time.NewTicker(max(o.cfg.ChunkInterval/4, 5*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := o.cfg.now()
			for _, st := range o.allStreams() {
				st.tick(now)
			}
		}
	}
}

// claimStream makes owner the publisher of the named stream, creating the stream on first use.
// capped applies MaxStreams to a new stream (anonymous publishers). Creating, claiming and
// removing happen under o.mu, so a stream being removed is never handed to a publisher.
func (o *Origin) claimStream(name string, owner any, capped bool) (*stream, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.streams[name]
	if !ok {
		if capped && o.cfg.MaxStreams > 0 && len(o.streams) >= o.cfg.MaxStreams {
			return nil, fmt.Errorf("%w: %d streams, at most %d", ErrTooManyStreams, len(o.streams), o.cfg.MaxStreams)
		}
		st = newStream(o.streamEnv(), name)
		o.streams[name] = st
		o.windows.Store(name, st.window)
	}
	if err := st.claim(owner); err != nil {
		return nil, err
	}
	return st, nil
}

// removeStreams runs until ctx ends, removing streams whose publisher left StreamGrace ago.
func (o *Origin) removeStreams(ctx context.Context, mesh *meshSeeder) {
	t := time.NewTicker(min(max(o.cfg.StreamGrace/4, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.removeIdle(o.cfg.now(), mesh)
		}
	}
}

// removeIdle drops every removable stream: its window and segments, its mesh root (peers of it
// keep waiting for a publisher), and with it its registration, which is no longer renewed and
// expires at the tracker.
func (o *Origin) removeIdle(now time.Time, mesh *meshSeeder) {
	var removed []string
	o.mu.Lock()
	for name, st := range o.streams {
		if !st.removable(now, o.cfg.StreamGrace) {
			continue
		}
		delete(o.streams, name)
		o.windows.Delete(name)
		// Still under o.mu: a publisher of the same name that comes now gets a new stream and,
		// with its first chunk, a new root.
		if mesh != nil {
			mesh.remove(name)
		}
		removed = append(removed, name)
	}
	o.mu.Unlock()
	o.metrics.removed.Add(float64(len(removed)))
	for _, name := range removed {
		o.log.Info("stream removed: its publisher left and did not come back", "stream", name, "grace", o.cfg.StreamGrace)
		if cb := o.cfg.OnStreamRemoved; cb != nil {
			cb(name)
		}
	}
}

func (o *Origin) lookup(name string) (*stream, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.streams[name]
	return st, ok
}

func (o *Origin) allStreams() []*stream {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]*stream, 0, len(o.streams))
	for _, st := range o.streams {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Streams describes every stream the origin has seen, live or not, by name.
func (o *Origin) Streams() []StreamInfo {
	sts := o.allStreams()
	out := make([]StreamInfo, 0, len(sts))
	for _, st := range sts {
		out = append(out, st.info())
	}
	return out
}

// Subscribe hands every chunk the origin emits, of every stream and in order per stream, to fn.
// fn runs on the ingest path and must not block (the mesh root enqueues). cancel stops delivery.
func (o *Origin) Subscribe(fn func(*proto.Chunk)) (cancel func()) {
	o.subMu.Lock()
	id := o.nextSub
	o.nextSub++
	o.subs[id] = fn
	o.subMu.Unlock()
	return func() {
		o.subMu.Lock()
		delete(o.subs, id)
		o.subMu.Unlock()
	}
}

func (o *Origin) fanout(c *proto.Chunk) {
	o.subMu.RLock()
	defer o.subMu.RUnlock()
	for _, fn := range o.subs {
		fn(c)
	}
}

// streamEnv is what every stream gets of the origin.
func (o *Origin) streamEnv() streamEnv {
	return streamEnv{
		cfg: &o.cfg, pub: o.pub, log: o.log, metrics: o.metrics, fanout: o.fanout,
		produced: func(n int) { o.bytesProduced.Add(uint64(n)) },
	}
}

// AddSeeded counts chunk bytes the mesh root sent to its children (for /stats and metrics).
func (o *Origin) AddSeeded(n int) {
	o.bytesSeeded.Add(uint64(n))
	o.metrics.bytesSeeded.Add(float64(n))
}

// Stats is the body of GET /stats.
type Stats struct {
	BytesProduced uint64 `json:"bytes_produced"`
	BytesHTTP     uint64 `json:"bytes_http"`
	// BytesHTTP by kind of response: playlists, whole segments, single chunks (the peers'
	// CDN fallback).
	BytesHTTPPlaylist uint64 `json:"bytes_http_playlist"`
	BytesHTTPSegment  uint64 `json:"bytes_http_segment"`
	BytesHTTPChunk    uint64 `json:"bytes_http_chunk"`
	BytesSeeded       uint64 `json:"bytes_seeded"`
	Streams           int    `json:"streams"`
	Live              int    `json:"live"`
}

// RootStats are the counters of a stream's mesh root (its seeding, repair answers, loop lags),
// if the root runs.
func (o *Origin) RootStats(stream string) (peer.Stats, bool) {
	mesh := o.mesh.Load()
	if mesh == nil {
		return peer.Stats{}, false
	}
	return mesh.rootStats(stream)
}

// Stats reports the byte counters behind the origin-copies measure. BytesSeeded is up to the
// moment: the roots' counters are collected first.
func (o *Origin) Stats() Stats {
	if mesh := o.mesh.Load(); mesh != nil {
		mesh.collectSeeded()
	}
	s := Stats{
		BytesProduced:     o.bytesProduced.Load(),
		BytesHTTP:         o.bytesHTTP.Load(),
		BytesHTTPPlaylist: o.bytesHTTPPlaylist.Load(),
		BytesHTTPSegment:  o.bytesHTTPSegment.Load(),
		BytesHTTPChunk:    o.bytesHTTPChunk.Load(),
		BytesSeeded:       o.bytesSeeded.Load(),
	}
	for _, si := range o.Streams() {
		s.Streams++
		if si.Live {
			s.Live++
		}
	}
	return s
}
