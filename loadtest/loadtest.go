package loadtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdsurf/crowdsurf/internal/pace"
	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
)

// streamName is the one stream a load test broadcasts.
const streamName = "loadtest"

// infraStopWait bounds the wait for the source, the origin and the tracker to stop.
const infraStopWait = 10 * time.Second

// LoadTest is one run. Create it with New, call Run once, then read Report.
type LoadTest struct {
	cfg Config
	key ed25519.PrivateKey
	pub ed25519.PublicKey
	src source
	// bc is the real origin (and in p2p mode the tracker); set by Run before anything reads it.
	bc *Broadcast
	// originMetrics is the origin's Prometheus registry (crowdsurf_origin_*).
	originMetrics *prometheus.Registry

	// p2p mode only
	mesh meshNet
	// verifyCache is shared by every viewer: each chunk's signature is checked once per
	// process (see peer.VerifyCache), a cost each real viewer pays on its own CPU.
	verifyCache *peer.VerifyCache

	fallbackClient  *http.Client
	playerTransport *http.Transport

	emits    *emitBook
	delivery samples
	// deliveryLate holds the delivery latencies of chunks emitted in the second half of the
	// run; secondHalf (unix ns) is when it starts, zero before the run.
	deliveryLate samples
	// deliveryLatePulled is the part of deliveryLate that did not come down the stripe's tree
	// (repaired from a neighbour, fetched from the CDN, or pushed by a parent just left).
	deliveryLatePulled samples
	secondHalf         atomic.Int64
	liveLatency        samples
	nat                natBook

	mu      sync.Mutex
	viewers []*viewer // every viewer ever started, in join order
	report  *Report
}

// New checks cfg and prepares the source; Run starts everything.
func New(cfg Config) (*LoadTest, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("loadtest: origin key: %w", err)
	}
	lt := &LoadTest{
		cfg:             cfg,
		key:             key,
		pub:             key.Public().(ed25519.PublicKey),
		originMetrics:   prometheus.NewRegistry(),
		emits:           newEmitBook(),
		playerTransport: cfg.sharedTransport(),
	}
	fallbackTr := cfg.sharedTransport()
	fallbackTr.MaxIdleConnsPerHost = 1024 // every peer falls back to the same origin
	lt.fallbackClient = &http.Client{Transport: fallbackTr, Timeout: 5 * time.Second}

	switch cfg.Source {
	case SourceSynthetic:
		lt.src, err = newSyntheticSource(syntheticConfig{
			BitrateBps: cfg.BitrateBps,
			Segment:    cfg.Segment,
			// Run sets lt.bc before the source runs.
			Produced: func() int64 { return int64(lt.bc.Origin.Stats().BytesProduced) },
		})
	case SourceTestcard:
		lt.src, err = newTestcardSource()
	}
	if err != nil {
		return nil, err
	}
	return lt, nil
}

// onOriginChunk runs on the origin's ingest path for every chunk it emits: the emit time of
// each chunk is where its delivery latency starts.
func (lt *LoadTest) onOriginChunk(c *proto.Chunk) {
	if c.ID.Stream == streamName {
		lt.emits.record(c.ID.Seq, c.ID.Index, time.Now())
	}
}

// Report is the outcome; nil until Run has finished the measurement (it may still return an
// error about a component that failed on the way, which the report's figures then reflect).
func (lt *LoadTest) Report() *Report {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return lt.report
}

// Run runs the whole broadcast for the configured duration (or until ctx ends, which cuts the
// measured interval short), then stops everything it started and builds the report.
func (lt *LoadTest) Run(ctx context.Context) error {
	cfg := lt.cfg
	usage0 := processUsage()
	startedAt := time.Now()
	infraCtx, stopInfra := context.WithCancel(context.Background())
	var infra sync.WaitGroup
	var infraErrMu sync.Mutex
	var infraErr error
	runInfra := func(name string, run func(context.Context) error) {
		infra.Go(func() {
			// Labelled so that a CPU profile (--cpuprofile) splits by component:
			// go tool pprof -tags, or -tagfocus component=origin.
			var err error
			pprof.Do(infraCtx, pprof.Labels("component", name), func(ctx context.Context) { err = run(ctx) })
			if err != nil && !errors.Is(err, context.Canceled) {
				infraErrMu.Lock()
				infraErr = errors.Join(infraErr, fmt.Errorf("%s: %w", name, err))
				infraErrMu.Unlock()
				cfg.Logger.Error("load test component failed", "component", name, "error", err)
			}
		})
	}
	defer func() {
		stopInfra()
		if !waitTimeout(&infra, infraStopWait) {
			cfg.Logger.Error("load test components did not stop in time", "waited", infraStopWait)
		}
		if lt.mesh != nil {
			lt.mesh.close()
		}
	}()

	if err := lt.startBroadcast(runInfra); err != nil {
		return err
	}
	runInfra("source", lt.feedOrigin)
	if err := lt.awaitStream(ctx); err != nil {
		return err
	}

	// The measured interval starts now: every viewer joins inside it.
	t0 := time.Now()
	base := lt.totals(t0)
	viewCtx, stopViewers := context.WithCancel(context.Background())
	defer stopViewers()
	end := t0.Add(cfg.Duration)
	lt.secondHalf.Store(t0.Add(cfg.Duration / 2).UnixNano())

	var joiners sync.WaitGroup
	joiners.Go(func() { lt.joinAll(ctx, viewCtx, t0, end) })
	if cfg.ChurnPct > 0 {
		joiners.Go(func() { lt.churn(ctx, viewCtx, t0, end) })
	}

	series, mid := lt.sample(ctx, t0, end, base)
	last := lt.totals(time.Now())
	depths := lt.depthHistogram()
	links := lt.linksNow()
	joiners.Wait()
	if cfg.AtEnd != nil && ctx.Err() == nil {
		cfg.AtEnd()
	}

	// Everyone leaves at once, as at the end of a broadcast.
	lt.mu.Lock()
	all := append([]*viewer(nil), lt.viewers...)
	lt.mu.Unlock()
	var leaving sync.WaitGroup
	for _, v := range all {
		leaving.Go(func() { v.stop() })
	}
	leaving.Wait()
	stopViewers()

	r := lt.buildReport(base, mid, last, series, depths, all)
	r.NAT = lt.natReport(all, links)
	r.StartedAt = startedAt.UTC()
	usage := processUsage()
	r.CPUSeconds = (usage.CPU - usage0.CPU).Seconds()
	r.MaxRSSBytes = usage.MaxRSS
	r.GCCycles = usage.GCCycles - usage0.GCCycles
	r.GCCPUSeconds = (usage.GCCPU - usage0.GCCPU).Seconds()
	r.GCIdleCPUSeconds = (usage.GCIdleCPU - usage0.GCIdleCPU).Seconds()
	if lt.verifyCache != nil {
		r.Notes = append(r.Notes, "chunk signatures were checked once per process, not once per peer: the in-process peers share a cache of verified chunks and compare each copy with it byte for byte, so cpu_seconds leave out most of the Ed25519 work each real viewer does on its own CPU (about 0.25 ms per chunk here)")
	}
	if ls, ok := lt.src.(*syntheticSource); ok {
		r.Detail.SourceLagMaxMs = float64(ls.maxLag()) / float64(time.Millisecond)
		if ls.maxLag() > 500*time.Millisecond {
			r.Notes = append(r.Notes, fmt.Sprintf("the source fell up to %.1f s behind real time: the machine was overloaded, so stalls and latencies are worse than the system's own", ls.maxLag().Seconds()))
		}
	}
	if ctx.Err() != nil {
		r.Notes = append(r.Notes, "interrupted: the measured interval was cut short")
	}

	stuck := 0
	for _, v := range all {
		v.mu.Lock()
		if v.stuck {
			stuck++
		}
		v.mu.Unlock()
	}
	if stuck > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d peers did not stop within %v of leaving (peer.Node.Run did not return): a shutdown bug in the peer", stuck, 2*viewerStopWait))
	}
	stopInfra()
	if !waitTimeout(&infra, infraStopWait) {
		r.Notes = append(r.Notes, fmt.Sprintf("the origin, tracker or source did not stop within %v", infraStopWait))
	}
	if cfg.Floor && ctx.Err() == nil {
		if cfg.OnProgress != nil {
			cfg.OnProgress(fmt.Sprintf("floor: relaying %d bit/s through a bare quic-go tree of %d nodes for %v", cfg.BitrateBps, cfg.Peers, cfg.Duration))
		}
		// The floor relays frames of the size the origin cut at this bit rate.
		fr, err := RunFloor(ctx, FloorConfig{Peers: cfg.Peers, BitrateBps: cfg.BitrateBps, Duration: cfg.Duration,
			ChunkSize: cfg.chunkSize() + proto.MaxChunkHeader})
		if err != nil {
			return err
		}
		r.Floor = &fr
		if fr.Cores > 0 {
			r.FloorRatio = r.SecondHalf.Cores / fr.Cores
		}
		r.Notes = append(r.Notes, "floor: the mesh's second-half cores include the players and the source; the floor has neither, nor signatures, HAVEs, repair or HLS")
	}
	lt.mu.Lock()
	lt.report = r
	lt.mu.Unlock()
	infraErrMu.Lock()
	defer infraErrMu.Unlock()
	return infraErr
}

// verifyCacheSize holds a minute of chunks at 8 Mbit/s.
const verifyCacheSize = 4096

// startBroadcast makes the broadcast's network (the mesh and, in p2p mode, the tracker with
// its NAT observer) and runs the real origin and the tracker on it.
func (lt *LoadTest) startBroadcast(runInfra func(string, func(context.Context) error)) error {
	cfg := lt.cfg
	bn, err := lt.broadcastNet()
	if err != nil {
		return err
	}
	bc, err := NewBroadcast(BroadcastConfig{
		Key:           lt.key,
		Segment:       cfg.Segment,
		SeedCopies:    cfg.SeedCopies,
		Stripes:       cfg.Stripes,
		Logger:        cfg.Logger,
		Registry:      lt.originMetrics,
		ChunkDuration: cfg.ChunkDuration,
	}, bn)
	if err != nil {
		return err
	}
	lt.bc = bc
	bc.Origin.Subscribe(lt.onOriginChunk)
	if cfg.Mode == ModeP2P {
		lt.verifyCache = peer.NewVerifyCache(lt.pub, verifyCacheSize)
	}
	runInfra("broadcast", bc.Run)
	return nil
}

// broadcastNet opens the origin's and the tracker's sockets: the mesh socket and the NAT
// observers on the load test's network (simulated or loopback UDP), HTTP on loopback (in memory
// in the scale lab). In cdn mode there is neither mesh nor tracker.
func (lt *LoadTest) broadcastNet() (BroadcastNet, error) {
	bn := BroadcastNet{
		// The players' and peers' transport, so the scale lab's in-memory network carries
		// the registrations too.
		TrackerClient:        &http.Client{Transport: lt.fallbackClient.Transport, Timeout: 5 * time.Second},
		TrackerNATSInProcess: lt.cfg.inMemory != nil,
	}
	var err error
	if bn.OriginHTTP, err = lt.cfg.listenHTTP(); err != nil {
		return bn, fmt.Errorf("loadtest: origin HTTP listener: %w", err)
	}
	if lt.cfg.Mode != ModeP2P {
		return bn, nil
	}
	if lt.cfg.Net == NetSim {
		lt.mesh = newSimNet(lt.cfg)
	} else {
		lt.mesh = udpNet{}
	}
	if bn.OriginMesh, err = lt.mesh.originConn(); err != nil {
		bn.close()
		return bn, fmt.Errorf("loadtest: origin mesh socket: %w", err)
	}
	if bn.TrackerHTTP, err = lt.cfg.listenHTTP(); err != nil {
		bn.close()
		return bn, fmt.Errorf("loadtest: tracker listener: %w", err)
	}
	if sim, ok := lt.mesh.(*simNet); ok && len(lt.cfg.NAT) > 0 {
		if bn.Observers, err = sim.observerConns(); err != nil {
			bn.close()
			return bn, err
		}
	}
	return bn, nil
}

// feedOrigin runs the source into the origin's feed of the stream, once the origin runs.
func (lt *LoadTest) feedOrigin(ctx context.Context) error {
	select {
	case <-lt.bc.Started():
	case <-ctx.Done():
		return nil
	}
	feed, err := lt.bc.Origin.Feed(streamName, lt.src.tracks())
	if err != nil {
		return err
	}
	defer feed.Close() // the stream ends: the playlist gets its ENDLIST
	return lt.src.run(ctx, feed)
}

// awaitStream waits for the warm-up: at least one complete segment at the CDN and, with a
// mesh, the origin's registration at the tracker (peers learn the origin's addresses from it).
func (lt *LoadTest) awaitStream(ctx context.Context) error {
	deadline := time.Now().Add(lt.cfg.Warmup)
	timeout := time.Now().Add(lt.cfg.Warmup + 4*lt.cfg.Segment + 10*time.Second)
	for {
		if time.Now().After(deadline) && lt.streamReady(ctx) {
			return nil
		}
		if time.Now().After(timeout) {
			return errors.New("loadtest: the origin produced no complete segment or did not register it at the tracker; see the log (--log-level warn)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (lt *LoadTest) streamReady(ctx context.Context) bool {
	complete := false
	for _, si := range lt.bc.Origin.Streams() {
		complete = complete || (si.Name == streamName && si.NewestSeq != nil)
	}
	if !complete || lt.bc.Tracker == nil {
		return complete
	}
	c := trackerclient.Client{BaseURL: lt.bc.Tracker.URL(), HTTPClient: lt.fallbackClient}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := c.Stream(rctx, streamName, proto.FormatPublicKey(lt.pub))
	return err == nil
}

// joinAll starts the viewers, spread uniformly over cfg.Join.
func (lt *LoadTest) joinAll(ctx, viewCtx context.Context, t0, end time.Time) {
	n := lt.cfg.Peers
	for i := range n {
		at := t0.Add(time.Duration(float64(lt.cfg.Join) * float64(i) / float64(n)))
		if !pace.Sleep(ctx, time.Until(at)) || time.Now().After(end) {
			return
		}
		lt.join(viewCtx, i)
	}
}

func (lt *LoadTest) join(viewCtx context.Context, id int) {
	var v *viewer
	var err error
	// The peer's goroutines (its QUIC transport's among them) inherit the label.
	pprof.Do(viewCtx, pprof.Labels("component", "peer"), func(ctx context.Context) { v, err = lt.startViewer(ctx, id) })
	if err != nil {
		lt.cfg.Logger.Error("viewer could not join", "viewer", id, "error", err)
		return
	}
	lt.mu.Lock()
	lt.viewers = append(lt.viewers, v)
	lt.mu.Unlock()
}

// churn makes ChurnPct percent of the peers leave per minute, at random, each replaced at once
// by a new joiner, from the end of the join period on.
func (lt *LoadTest) churn(ctx, viewCtx context.Context, t0, end time.Time) {
	perMinute := float64(lt.cfg.Peers) * lt.cfg.ChurnPct / 100
	every := time.Duration(float64(time.Minute) / perMinute)
	next := t0.Add(lt.cfg.Join).Add(every)
	nextID := lt.cfg.Peers
	var leaving sync.WaitGroup
	defer leaving.Wait()
	for next.Before(end) {
		if !pace.Sleep(ctx, time.Until(next)) {
			return
		}
		next = next.Add(every)
		lt.mu.Lock()
		var live []*viewer
		for _, v := range lt.viewers {
			if !v.gone() {
				live = append(live, v)
			}
		}
		lt.mu.Unlock()
		if len(live) == 0 {
			continue
		}
		victim := live[mrand.IntN(len(live))]
		leaving.Go(func() { victim.stop() })
		lt.join(viewCtx, nextID)
		nextID++
	}
}

// totals is a snapshot of every counter the measures are built from.
type totals struct {
	at                              time.Time
	cpu                             time.Duration // the process's CPU time so far
	http, quic, stream              int64
	httpPlaylist, httpSegment       int64
	httpChunk                       int64
	fromPeers, fromOrigin, fromHTTP int64
	fromHTTPJoining                 int64
	stalls, stalled, playing, peers int
	unattached                      int // live peers' stripes without a parent
}

// totals also takes one live latency sample from every playing player: the pooled samples are
// the live latency distribution of the report.
func (lt *LoadTest) totals(at time.Time) totals {
	o := lt.bc.Origin.Stats() // the origin's own counters
	t := totals{
		at: at, cpu: processUsage().CPU,
		stream: int64(o.BytesProduced), quic: int64(o.BytesSeeded), http: int64(o.BytesHTTP),
		httpPlaylist: int64(o.BytesHTTPPlaylist), httpSegment: int64(o.BytesHTTPSegment), httpChunk: int64(o.BytesHTTPChunk),
	}
	lt.mu.Lock()
	vs := append([]*viewer(nil), lt.viewers...)
	lt.mu.Unlock()
	for _, v := range vs {
		var depths []int
		if v.node != nil {
			s := v.node.Stats()
			t.fromPeers += s.BytesFromPeers
			t.fromOrigin += s.BytesFromOrigin
			t.fromHTTP += s.BytesFromHTTP
			t.fromHTTPJoining += s.BytesFromHTTPJoining
			depths = s.Depths
		}
		st := v.player.Status()
		t.stalls += st.Stalls
		if v.gone() {
			continue
		}
		t.peers++
		for _, d := range depths {
			if d < 0 {
				t.unattached++
			}
		}
		switch st.State {
		case "stalled":
			t.stalled++
		case "playing":
			t.playing++
			if st.HasLatency {
				lt.liveLatency.add(st.LatencyMs)
			}
		}
	}
	return t
}

// sample takes one snapshot a second until end, drawing the progress line.
// sample takes the per-second series and returns it with the totals at half the interval.
func (lt *LoadTest) sample(ctx context.Context, t0, end time.Time, base totals) (series []SecondSample, mid totals) {
	series = []SecondSample{}
	half := t0.Add(end.Sub(t0) / 2)
	prev := base
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return series, mid
		case <-tick.C:
		}
		now := time.Now()
		cur := lt.totals(now)
		if mid.at.IsZero() && !now.Before(half) {
			mid = cur
		}
		dt := cur.at.Sub(prev.at).Seconds()
		s := SecondSample{
			T:               math.Round(now.Sub(t0).Seconds()*10) / 10,
			OriginEgressBps: float64(cur.http-prev.http+cur.quic-prev.quic) * 8 / dt,
			OriginCopies:    ratio(float64(cur.http-prev.http+cur.quic-prev.quic), float64(cur.stream-prev.stream)),
			Offload:         ratio(float64(cur.fromPeers-prev.fromPeers), float64(cur.fromPeers-prev.fromPeers+cur.fromOrigin-prev.fromOrigin)),
			Stalls:          cur.stalls - prev.stalls,
			Stalled:         cur.stalled,
			Peers:           cur.peers,
			Playing:         cur.playing,
			Unattached:      cur.unattached,
		}
		series = append(series, s)
		prev = cur
		if lt.cfg.OnProgress != nil {
			offload := ratio(float64(cur.fromPeers-base.fromPeers), float64(cur.fromPeers-base.fromPeers+cur.fromOrigin-base.fromOrigin))
			copies := ratio(float64(cur.http-base.http+cur.quic-base.quic), float64(cur.stream-base.stream))
			lt.cfg.OnProgress(fmt.Sprintf("[%3.0fs/%.0fs] peers %d, playing %d, offload %.1f%%, origin copies %.2f, stalls %d (%d stalled now)",
				now.Sub(t0).Seconds(), end.Sub(t0).Seconds(), cur.peers, cur.playing, 100*offload, copies, cur.stalls-base.stalls, cur.stalled))
		}
		if time.Until(end) < 100*time.Millisecond {
			return series, mid
		}
		if d := time.Until(end); d < time.Second {
			tick.Reset(d)
		}
	}
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// depthHistogram counts the live peers' (peer, stripe) pairs by depth.
func (lt *LoadTest) depthHistogram() []DepthBin {
	counts := map[int]int{}
	lt.mu.Lock()
	vs := append([]*viewer(nil), lt.viewers...)
	lt.mu.Unlock()
	maxDepth := -1
	for _, v := range vs {
		if v.node == nil || v.gone() {
			continue
		}
		for _, d := range v.node.Stats().Depths {
			counts[d]++
			maxDepth = max(maxDepth, d)
		}
	}
	bins := []DepthBin{}
	for d := -1; d <= maxDepth; d++ {
		if d <= 0 && counts[d] == 0 { // the origin alone is at depth 0
			continue
		}
		bins = append(bins, DepthBin{Depth: d, Count: counts[d]})
	}
	return bins
}
