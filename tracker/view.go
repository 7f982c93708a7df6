package tracker

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker/registrar"
)

var (
	// errViewStopped means the view loop has ended (the tracker is shutting down).
	errViewStopped = errors.New("tracker: shutting down")
	// errStaleRegistration means a registration is not newer than the one held for its swarm
	// (a replay) or was signed too far from the tracker's clock.
	errStaleRegistration = errors.New("stale registration")
	// errSwarmFull means a swarm holds Config.MaxPeersPerSwarm peers.
	errSwarmFull = errors.New("swarm full")
	// errHostFull means a host already runs Config.MaxPeersPerHost peers in the swarm.
	errHostFull = errors.New("too many peers from one host")
)

// view is this replica's picture of the buckets. One goroutine (run) owns every field below
// calls; handlers reach it only through do, so the maps need no lock and a neighbour choice
// sees one consistent swarm. A snapshot behind a lock would let handlers run in parallel, but
// every announce also changes the swarm, so a copy-on-write snapshot would be rebuilt on nearly
// every request; a single owner is simpler and fast enough (a choice looks at no more than
// candidateSample peers).
type view struct {
	peersKV, streamsKV jetstream.KeyValue
	cfg                Config
	peerTTL, streamTTL time.Duration
	log                *slog.Logger
	metrics            *metrics

	calls   chan func()
	ready   chan struct{} // closed once the buckets' current contents are loaded
	stopped chan struct{} // closed when run returns

	// Owned by run.
	rng     *rand.Rand
	streams map[swarmID]*streamEntry
	swarms  map[swarmID]*swarm
}

type streamEntry struct {
	id      swarmID
	reg     proto.StreamRegistration
	rev     uint64
	created time.Time
}

func newView(peersKV, streamsKV jetstream.KeyValue, cfg Config, m *metrics) *view {
	return &view{
		peersKV: peersKV, streamsKV: streamsKV, cfg: cfg,
		peerTTL: cfg.PeerTTL, streamTTL: cfg.StreamTTL,
		log: cfg.Logger, metrics: m,
		calls:   make(chan func()),
		ready:   make(chan struct{}),
		stopped: make(chan struct{}),
		rng:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		streams: map[swarmID]*streamEntry{},
		swarms:  map[swarmID]*swarm{},
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
		return fmt.Errorf("tracker: watch %s: %w", peersBucket, err)
	}
	defer func() { _ = peersW.Stop() }()
	streamsW, err := v.streamsKV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("tracker: watch %s: %w", registrar.StreamsBucket, err)
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
				return watcherClosed(ctx, peersBucket)
			}
			if e == nil {
				peersLoaded = true
			} else {
				v.applyPeerEntry(e)
			}
		case e, ok := <-streamsW.Updates():
			if !ok {
				return watcherClosed(ctx, registrar.StreamsBucket)
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
	v.metrics.kvUpdates.WithLabelValues(peersBucket).Inc()
	if e.Operation() != jetstream.KeyValuePut {
		id, peerID, ok := splitPeerKey(e.Key())
		if ok {
			v.removePeer(id, peerID)
		}
		return
	}
	var rec proto.PeerRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		v.log.Warn("ignoring undecodable peer entry", "key", e.Key(), "error", err)
		return
	}
	id, err := swarmOf(rec.Stream, rec.StreamKey)
	if err != nil || peerKey(id, rec.PeerID) != e.Key() {
		v.log.Warn("ignoring peer entry under a key that is not its own", "key", e.Key())
		return
	}
	if !v.admits(id, rec) {
		return // another replica's write this one's bounds refuse
	}
	v.putPeer(id, rec, e.Revision(), e.Created())
}

// applyStreamEntry takes a registration from the bucket only if its own key signed it, it sits
// under that (name, key), it was signed near the time NATS stored it and it is newer than the
// one in the view: whoever can write NATS still cannot hijack someone else's swarm.
func (v *view) applyStreamEntry(e jetstream.KeyValueEntry) {
	v.metrics.kvUpdates.WithLabelValues(registrar.StreamsBucket).Inc()
	if e.Operation() != jetstream.KeyValuePut {
		if name, pub, err := registrar.ParseStreamKey(e.Key()); err == nil {
			v.removeStream(swarmID{name, proto.FormatPublicKey(pub)})
		}
		return
	}
	reg, err := proto.ParseStreamRegistration(e.Value())
	if err != nil {
		v.log.Warn("ignoring invalid stream entry", "key", e.Key(), "error", err)
		return
	}
	id, err := swarmOf(reg.Name, reg.PublicKey)
	if err != nil || e.Key() != registrar.StreamKey(reg.Name, mustKey(reg.PublicKey)) {
		v.log.Warn("ignoring stream entry under a key that is not its own", "key", e.Key())
		return
	}
	if old := v.streams[id]; old != nil && old.rev >= e.Revision() {
		return // our own write, applied when it was made
	}
	if err := v.fresh(id, reg, e.Created()); err != nil {
		v.log.Warn("ignoring stream entry", "key", e.Key(), "error", err)
		return
	}
	v.putStream(id, reg, e.Revision(), e.Created())
}

// fresh reports why reg, signed at reg.IssuedAt and seen at now, must not replace the view's
// registration of id: it is not newer than that one (a replay) or too far from now.
func (v *view) fresh(id swarmID, reg proto.StreamRegistration, now time.Time) error {
	if d := reg.IssuedAt().Sub(now); d > v.cfg.RegistrationSkew || -d > v.cfg.RegistrationSkew {
		return fmt.Errorf("%w: signed at %s, %v from the tracker's clock (at most %v)", errStaleRegistration, reg.IssuedAt().UTC().Format(time.RFC3339), d.Round(time.Millisecond), v.cfg.RegistrationSkew)
	}
	if old := v.streams[id]; old != nil && reg.IssuedAtMs <= old.reg.IssuedAtMs {
		return fmt.Errorf("%w: signed at %d ms, not after the registration the tracker holds (%d ms)", errStaleRegistration, reg.IssuedAtMs, old.reg.IssuedAtMs)
	}
	return nil
}

// admits reports whether rec may enter (or stay in) swarm id within the bounds: a new peer
// needs room in the swarm and on its host. Call on the view's goroutine.
func (v *view) admits(id swarmID, rec proto.PeerRecord) bool {
	return v.admitErr(id, rec) == nil
}

func (v *view) admitErr(id swarmID, rec proto.PeerRecord) error {
	s := v.swarms[id]
	if s == nil {
		return nil
	}
	host := addrHost(rec.Addr)
	if i, ok := s.index[rec.PeerID]; ok && s.meta[i].host == host {
		return nil // a known peer on its known host takes no new room
	}
	if !s.has(rec.PeerID) && s.len() >= v.cfg.MaxPeersPerSwarm {
		return fmt.Errorf("%w: swarm %q has %d peers", errSwarmFull, id.name, s.len())
	}
	if v.cfg.MaxPeersPerHost >= 0 && !host.IsLoopback() && s.perHost[host] >= v.cfg.MaxPeersPerHost {
		return fmt.Errorf("%w: %s already runs %d peers in swarm %q", errHostFull, host, s.perHost[host], id.name)
	}
	return nil
}

// putPeer inserts or replaces a peer. rev orders writes: a handler applies its own write at
// once, and the watcher delivers the same revision again later.
func (v *view) putPeer(id swarmID, rec proto.PeerRecord, rev uint64, created time.Time) {
	s := v.swarms[id]
	if s == nil {
		s = newSwarm()
		v.swarms[id] = s
	}
	if i, ok := s.index[rec.PeerID]; ok && s.meta[i].rev >= rev {
		return
	}
	info := candidateInfo(rec) // nat.go
	meta := peerMeta{uploadBps: rec.UploadBps, rev: rev, created: created, host: addrHost(rec.Addr), parents: distinctParents(rec.PeerID, rec.Parents)}
	if s.put(info, meta) {
		v.metrics.peers.Inc()
	}
}

func (v *view) removePeer(id swarmID, peerID string) {
	s := v.swarms[id]
	if s == nil || !s.remove(peerID) {
		return
	}
	if s.len() == 0 {
		delete(v.swarms, id)
	}
	v.metrics.peers.Dec()
}

func (v *view) putStream(id swarmID, reg proto.StreamRegistration, rev uint64, created time.Time) {
	if old, ok := v.streams[id]; ok {
		if old.rev >= rev {
			return
		}
	} else {
		if len(v.streams) >= v.cfg.MaxStreams {
			v.log.Warn("stream refused: the tracker holds its maximum of streams", "stream", reg.Name, "max", v.cfg.MaxStreams)
			return
		}
		v.metrics.streams.Inc()
		v.log.Info("stream registered", "stream", reg.Name, "key", id.key, "origin", reg.QUICAddr)
	}
	v.streams[id] = &streamEntry{id: id, reg: reg, rev: rev, created: created}
}

func (v *view) removeStream(id swarmID) {
	if _, ok := v.streams[id]; ok {
		delete(v.streams, id)
		v.metrics.streams.Dec()
		v.log.Info("stream gone", "stream", id.name, "key", id.key)
	}
}

// expire drops what the buckets' TTL has dropped. JetStream removes aged-out entries without
// telling watchers, so every replica ages its own view by the entries' server timestamps.
func (v *view) expire(now time.Time) {
	for id, s := range v.streams {
		if now.Sub(s.created) > v.streamTTL {
			v.removeStream(id)
		}
	}
	for id, s := range v.swarms {
		for i := len(s.meta) - 1; i >= 0; i-- {
			if now.Sub(s.meta[i].created) > v.peerTTL {
				v.removePeer(id, s.infos[i].PeerID)
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
	if s := v.swarms[e.id]; s != nil {
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

// swarmOf names the swarm of a stream and a key in any spelling ParsePublicKey reads.
func swarmOf(name, key string) (swarmID, error) {
	pub, err := proto.ParsePublicKey(key)
	if err != nil {
		return swarmID{}, err
	}
	return swarmID{name: name, key: proto.FormatPublicKey(pub)}, nil
}

// mustKey parses a key that validation has already accepted.
func mustKey(key string) ed25519.PublicKey {
	pub, _ := proto.ParsePublicKey(key)
	return pub
}

// addrHost is the IP of a host:port; the zero Addr when there is none.
func addrHost(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// peersBucket maps peerKey(swarm, peer) to a proto.PeerRecord; its TTL forgets silent peers. Only
// trackers write it.
const peersBucket = "crowdsurf_peers"

// peerKey is the key of a peer in peersBucket: "<name>.<key>.<peer id>" (registrar.StreamKey
// and the peer id, neither of which holds a dot).
func peerKey(id swarmID, peerID string) string {
	return registrar.NameToken(id.name) + "." + id.key + "." + peerID
}

// splitPeerKey reverses peerKey.
func splitPeerKey(key string) (swarmID, string, bool) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 {
		return swarmID{}, "", false
	}
	name, pub, err := registrar.ParseStreamKey(parts[0] + "." + parts[1])
	if err != nil {
		return swarmID{}, "", false
	}
	return swarmID{name: name, key: proto.FormatPublicKey(pub)}, parts[2], true
}
