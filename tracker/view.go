package tracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crowdsurf/crowdsurf/proto"
)

// errViewStopped means the view loop has ended (the tracker is shutting down).
var errViewStopped = errors.New("tracker: shutting down")

// view is this replica's picture of the buckets. One goroutine (run) owns every field below
// calls; handlers reach it only through do, so the maps need no lock and a neighbour choice
// sees one consistent swarm. A snapshot behind a lock would let handlers run in parallel, but
// every announce also changes the swarm, so a copy-on-write snapshot would be rebuilt on nearly
// every request; a single owner is simpler and fast enough (a choice looks at no more than
// candidateSample peers).
type view struct {
	peersKV, streamsKV jetstream.KeyValue
	peerTTL, streamTTL time.Duration
	log                *slog.Logger
	metrics            *metrics

	calls   chan func()
	ready   chan struct{} // closed once the buckets' current contents are loaded
	stopped chan struct{} // closed when run returns

	// Owned by run.
	rng     *rand.Rand
	streams map[string]*streamEntry
	swarms  map[string]*swarm
}

type streamEntry struct {
	reg     proto.StreamRegistration
	rev     uint64
	created time.Time
}

// swarm holds one stream's peers in a slice (cheap random sampling) with an index by peer id
// (cheap update and swap-delete).
type swarm struct {
	infos []proto.PeerInfo
	meta  []peerMeta
	index map[string]int
}

type peerMeta struct {
	uploadBps int64
	rev       uint64
	created   time.Time
}

func newView(peersKV, streamsKV jetstream.KeyValue, cfg Config, m *metrics) *view {
	return &view{
		peersKV: peersKV, streamsKV: streamsKV,
		peerTTL: cfg.PeerTTL, streamTTL: cfg.StreamTTL,
		log: cfg.Logger, metrics: m,
		calls:   make(chan func()),
		ready:   make(chan struct{}),
		stopped: make(chan struct{}),
		rng:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		streams: map[string]*streamEntry{},
		swarms:  map[string]*swarm{},
	}
}

// do runs f on the view's goroutine and waits for it. f must not block.
func (v *view) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case v.calls <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-v.stopped:
		return errViewStopped
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-v.stopped:
		return errViewStopped
	}
}

// run watches both buckets and serves calls until ctx ends. Calls wait until the buckets'
// current contents are loaded, so a restarted tracker never answers from an empty view.
func (v *view) run(ctx context.Context) error {
	defer close(v.stopped)
	peersW, err := v.peersKV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("tracker: watch %s: %w", proto.TrackerPeersBucket, err)
	}
	defer func() { _ = peersW.Stop() }()
	streamsW, err := v.streamsKV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("tracker: watch %s: %w", proto.TrackerStreamsBucket, err)
	}
	defer func() { _ = streamsW.Stop() }()

	sweep := time.NewTicker(v.sweepInterval())
	defer sweep.Stop()
	peersLoaded, streamsLoaded := false, false
	var pending chan func() // nil, so calls wait, until both buckets are loaded
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-peersW.Updates():
			if !ok {
				return watcherClosed(ctx, proto.TrackerPeersBucket)
			}
			if e == nil {
				peersLoaded = true
			} else {
				v.applyPeerEntry(e)
			}
		case e, ok := <-streamsW.Updates():
			if !ok {
				return watcherClosed(ctx, proto.TrackerStreamsBucket)
			}
			if e == nil {
				streamsLoaded = true
			} else {
				v.applyStreamEntry(e)
			}
		case f := <-pending:
			f()
		case now := <-sweep.C:
			v.expire(now)
		}
		if pending == nil && peersLoaded && streamsLoaded {
			pending = v.calls
			close(v.ready)
			v.log.Info("swarm state loaded", "streams", len(v.streams), "peers", v.peerCount())
		}
	}
}

// watcherClosed tells a shutdown (the watcher closes its channel when ctx ends, which the
// select may notice before ctx.Done) from a real failure.
func watcherClosed(ctx context.Context, bucket string) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("tracker: watcher of %s closed", bucket)
}

func (v *view) sweepInterval() time.Duration {
	return min(v.peerTTL, v.streamTTL, time.Second) / 4
}

func (v *view) applyPeerEntry(e jetstream.KeyValueEntry) {
	v.metrics.kvUpdates.WithLabelValues(proto.TrackerPeersBucket).Inc()
	if e.Operation() != jetstream.KeyValuePut {
		stream, peerID, ok := splitPeerKey(e.Key())
		if ok {
			v.removePeer(stream, peerID)
		}
		return
	}
	var rec proto.PeerRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		v.log.Warn("ignoring undecodable peer entry", "key", e.Key(), "error", err)
		return
	}
	v.putPeer(rec, e.Revision(), e.Created())
}

func (v *view) applyStreamEntry(e jetstream.KeyValueEntry) {
	v.metrics.kvUpdates.WithLabelValues(proto.TrackerStreamsBucket).Inc()
	if e.Operation() != jetstream.KeyValuePut {
		v.removeStream(strings.ReplaceAll(e.Key(), "=", "."))
		return
	}
	reg, err := proto.ParseStreamRegistration(e.Value())
	if err != nil {
		v.log.Warn("ignoring invalid stream entry", "key", e.Key(), "error", err)
		return
	}
	v.putStream(reg, e.Revision(), e.Created())
}

// putPeer inserts or replaces a peer. rev orders writes: a handler applies its own write at
// once, and the watcher delivers the same revision again later.
func (v *view) putPeer(rec proto.PeerRecord, rev uint64, created time.Time) {
	s := v.swarms[rec.Stream]
	if s == nil {
		s = &swarm{index: map[string]int{}}
		v.swarms[rec.Stream] = s
	}
	info := proto.PeerInfo{PeerID: rec.PeerID, Addr: rec.Addr, Depths: rec.Depths, FreeSlots: rec.FreeSlots}
	meta := peerMeta{uploadBps: rec.UploadBps, rev: rev, created: created}
	if i, ok := s.index[rec.PeerID]; ok {
		if s.meta[i].rev >= rev {
			return
		}
		s.infos[i], s.meta[i] = info, meta
		return
	}
	s.index[rec.PeerID] = len(s.infos)
	s.infos = append(s.infos, info)
	s.meta = append(s.meta, meta)
	v.metrics.peers.Inc()
}

func (v *view) removePeer(stream, peerID string) {
	s := v.swarms[stream]
	if s == nil {
		return
	}
	i, ok := s.index[peerID]
	if !ok {
		return
	}
	last := len(s.infos) - 1
	s.infos[i], s.meta[i] = s.infos[last], s.meta[last]
	s.index[s.infos[i].PeerID] = i
	s.infos, s.meta = s.infos[:last], s.meta[:last]
	delete(s.index, peerID)
	if len(s.infos) == 0 {
		delete(v.swarms, stream)
	}
	v.metrics.peers.Dec()
}

func (v *view) putStream(reg proto.StreamRegistration, rev uint64, created time.Time) {
	if old, ok := v.streams[reg.Name]; ok {
		if old.rev >= rev {
			return
		}
	} else {
		v.metrics.streams.Inc()
		v.log.Info("stream registered", "stream", reg.Name, "origin", reg.QUICAddr)
	}
	v.streams[reg.Name] = &streamEntry{reg: reg, rev: rev, created: created}
}

func (v *view) removeStream(name string) {
	if _, ok := v.streams[name]; ok {
		delete(v.streams, name)
		v.metrics.streams.Dec()
		v.log.Info("stream gone", "stream", name)
	}
}

// expire drops what the buckets' TTL has dropped. JetStream removes aged-out entries without
// telling watchers, so every replica ages its own view by the entries' server timestamps.
func (v *view) expire(now time.Time) {
	for name, s := range v.streams {
		if now.Sub(s.created) > v.streamTTL {
			v.removeStream(name)
		}
	}
	for stream, s := range v.swarms {
		for i := len(s.meta) - 1; i >= 0; i-- {
			if now.Sub(s.meta[i].created) > v.peerTTL {
				v.removePeer(stream, s.infos[i].PeerID)
			}
		}
	}
}

func (v *view) peerCount() int {
	n := 0
	for _, s := range v.swarms {
		n += len(s.infos)
	}
	return n
}

// status summarises a stream and its swarm. Call on the view's goroutine.
func (v *view) status(e *streamEntry) proto.StreamStatus {
	st := proto.StreamStatus{StreamRegistration: e.reg}
	hist := make([]proto.StripeDepths, e.reg.Stripes)
	for i := range hist {
		hist[i].Stripe = i
	}
	if s := v.swarms[e.reg.Name]; s != nil {
		st.SwarmSize = len(s.infos)
		for i, p := range s.infos {
			st.UploadBps += s.meta[i].uploadBps
			for stripe := range hist {
				d := -1
				if stripe < len(p.Depths) {
					d = p.Depths[stripe]
				}
				if d < 0 {
					hist[stripe].Unattached++
					continue
				}
				for len(hist[stripe].Peers) <= d {
					hist[stripe].Peers = append(hist[stripe].Peers, 0)
				}
				hist[stripe].Peers[d]++
			}
		}
	}
	st.DepthHistogram = hist
	return st
}

// splitPeerKey reverses proto.TrackerPeerKey: stream keys hold no dot, so the first dot separates.
func splitPeerKey(key string) (stream, peerID string, ok bool) {
	streamKey, peerID, ok := strings.Cut(key, ".")
	return strings.ReplaceAll(streamKey, "=", "."), peerID, ok
}
