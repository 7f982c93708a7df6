package tracker

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
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

// view is this replica's picture of the buckets. Its state (below mu) is guarded by mu: the
// loop (run) applies the watchers' updates under it, and handlers run their calls (do) under
// it, so a neighbour choice sees one consistent swarm. A snapshot behind a lock would let
// handlers run in parallel, but every announce may also change the swarm, so a copy-on-write
// snapshot would be rebuilt on nearly every request. Calls used to be handed to the loop's
// goroutine; at tens of thousands of announces a second the two goroutine switches per call
// cost more than the call (a choice looks at no more than candidateSample peers).
type view struct {
	peersKV, streamsKV jetstream.KeyValue
	cfg                Config
	peerTTL, streamTTL time.Duration
	log                *slog.Logger
	metrics            *metrics

	ready   chan struct{} // closed once the buckets' current contents are loaded
	loaded  atomic.Bool   // ready is closed
	stopped chan struct{} // closed when run returns
	// reconnected tells run that the NATS connection came back (nil: never).
	reconnected <-chan struct{}

	mu     sync.Mutex
	closed bool // run has returned: calls are refused
	rng    *rand.Rand
	// streams and swarms are the buckets' contents.
	streams map[swarmID]*streamEntry
	swarms  map[swarmID]*swarm
	// The newest revision this replica wrote to the peers bucket, when the oldest write the
	// watcher has not brought back yet was made, the newest revision the watcher delivered and
	// when it last delivered anything. A write not brought back after watcherStall, while the
	// watcher delivers nothing at all, means its consumer is gone (it lived on a NATS node that
	// went down); a watcher that lags behind under load but still delivers is left alone.
	wroteRev, watchedRev uint64
	wroteAt, watchedAt   time.Time
}

type streamEntry struct {
	id      swarmID
	reg     proto.StreamRegistration
	rev     uint64
	created time.Time
	// middle is the encoded constant part of the stream's announce answers (answer.go).
	middle     []byte
	middleDone bool
}

func newView(peersKV, streamsKV jetstream.KeyValue, cfg Config, m *metrics) *view {
	return &view{
		peersKV: peersKV, streamsKV: streamsKV, cfg: cfg,
		peerTTL: cfg.PeerTTL, streamTTL: cfg.StreamTTL,
		log: cfg.Logger, metrics: m,
		ready:   make(chan struct{}),
		stopped: make(chan struct{}),
		rng:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		streams: map[swarmID]*streamEntry{},
		swarms:  map[swarmID]*swarm{},
	}
}

// do runs f with the view's state, once the buckets are loaded. f must not block.
func (v *view) do(ctx context.Context, f func()) error {
	if !v.loaded.Load() {
		select {
		case <-v.ready:
		case <-ctx.Done():
			return ctx.Err()
		case <-v.stopped:
			return errViewStopped
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return errViewStopped
	}
	f()
	return nil
}

// maxUpdateBatch bounds the watcher updates the loop applies in one turn of the lock, so calls
// wait at most that long behind a burst.
const maxUpdateBatch = 64

// run watches both buckets and applies their updates until ctx ends. Calls wait until the
// buckets' current contents are loaded, so a restarted tracker never answers from an empty view. After
// a NATS reconnect both buckets are watched afresh: the new watchers bring every current entry
// again (ignored where the view holds its revision already) and whatever the old ones missed.
// Peer entries are decoded by a feeder goroutine (decodePeers), so the loop's work per entry is
// a map update.
func (v *view) run(ctx context.Context) error {
	defer close(v.stopped)
	defer func() {
		v.mu.Lock()
		v.closed = true
		v.mu.Unlock()
	}()
	var (
		peersW, streamsW jetstream.KeyWatcher
		stopFeeder       context.CancelFunc
		generation       uint64
		feederDone       sync.WaitGroup
	)
	peerUpdates := make(chan peerUpdate, 256)
	stopWatchers := func() {
		if stopFeeder != nil {
			stopFeeder()
		}
		if peersW != nil {
			_ = peersW.Stop()
		}
		if streamsW != nil {
			_ = streamsW.Stop()
		}
	}
	defer func() { stopWatchers(); feederDone.Wait() }()
	watch := func() error {
		stopWatchers()
		var err error
		if peersW, err = v.peersKV.WatchAll(ctx); err != nil {
			return fmt.Errorf("tracker: watch %s: %w", peersBucket, err)
		}
		if streamsW, err = v.streamsKV.WatchAll(ctx); err != nil {
			return fmt.Errorf("tracker: watch %s: %w", registrar.StreamsBucket, err)
		}
		generation++
		v.mu.Lock()
		v.watchedAt = time.Now()
		v.mu.Unlock()
		var feedCtx context.Context
		feedCtx, stopFeeder = context.WithCancel(ctx)
		w, gen := peersW, generation
		feederDone.Go(func() { decodePeers(feedCtx, w, gen, peerUpdates) })
		return nil
	}
	if err := watch(); err != nil {
		return err
	}

	sweep := time.NewTicker(v.sweepInterval())
	defer sweep.Stop()
	peersLoaded, streamsLoaded := false, false
	// applyPeer applies u and reports whether the watcher closed.
	applyPeer := func(u peerUpdate) bool {
		switch {
		case u.generation != generation: // from a watcher replaced since
		case u.closed:
			return true
		case u.entry == nil:
			peersLoaded = true
		default:
			v.applyPeerUpdate(u)
		}
		return false
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-peerUpdates:
			v.mu.Lock()
			closed := applyPeer(u)
			for n := 1; n < maxUpdateBatch && !closed; n++ {
				select {
				case u := <-peerUpdates:
					closed = applyPeer(u)
					continue
				default:
				}
				break
			}
			v.mu.Unlock()
			if closed {
				return watcherClosed(ctx, peersBucket)
			}
		case e, ok := <-streamsW.Updates():
			if !ok {
				return watcherClosed(ctx, registrar.StreamsBucket)
			}
			v.mu.Lock()
			if e == nil {
				streamsLoaded = true
			} else {
				v.applyStreamEntry(e)
			}
			v.mu.Unlock()
		case <-v.reconnected:
			v.log.Info("watching the buckets afresh after a NATS reconnect")
			if err := watch(); err != nil {
				return err
			}
		case now := <-sweep.C:
			v.mu.Lock()
			v.expire(now)
			stalled := v.wroteRev > v.watchedRev && now.Sub(v.wroteAt) > watcherStall && now.Sub(v.watchedAt) > watcherStall
			if stalled {
				v.log.Warn("watching the buckets afresh: the peers watcher fell silent", "wrote_rev", v.wroteRev, "watched_rev", v.watchedRev)
				v.watchedRev = v.wroteRev // one rewatch per stall
			}
			v.mu.Unlock()
			if stalled {
				if err := watch(); err != nil {
					return err
				}
			}
		}
		if !v.loaded.Load() && peersLoaded && streamsLoaded {
			v.loaded.Store(true)
			close(v.ready)
			v.mu.Lock()
			v.log.Info("swarm state loaded", "streams", len(v.streams), "peers", v.peerCount())
			v.mu.Unlock()
		}
	}
}

// peerUpdate is an entry of the peers bucket as decodePeers hands it to the view's loop: a nil
// entry marks the end of the bucket's current contents, closed the end of the watcher.
type peerUpdate struct {
	generation uint64
	entry      jetstream.KeyValueEntry
	closed     bool
	rec        proto.PeerRecord
	fp         uint64
	err        error
}

// decodePeers decodes the watcher's entries into out until ctx ends or the watcher closes.
func decodePeers(ctx context.Context, w jetstream.KeyWatcher, generation uint64, out chan<- peerUpdate) {
	for {
		var u peerUpdate
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			u = peerUpdate{generation: generation, entry: e, closed: !ok}
			if ok && e != nil && e.Operation() == jetstream.KeyValuePut {
				if u.rec, u.err = proto.ParsePeerRecord(e.Value()); u.err == nil {
					u.fp = fingerprint(u.rec)
				}
			}
		}
		select {
		case out <- u:
		case <-ctx.Done():
			return
		}
		if u.closed {
			return
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

// watcherStall is how long a write of this replica may take to come back through its watcher,
// while the watcher delivers nothing at all, before the watcher is taken for dead.
const watcherStall = 2 * time.Second

// wrote notes a write of this replica to the peers bucket.
func (v *view) wrote(rev uint64, now time.Time) {
	if v.wroteRev <= v.watchedRev {
		v.wroteAt = now // the oldest write the watcher has yet to bring back
	}
	v.wroteRev = max(v.wroteRev, rev)
}

func (v *view) applyPeerUpdate(u peerUpdate) {
	e := u.entry
	v.metrics.kvUpdates.WithLabelValues(peersBucket).Inc()
	v.watchedRev, v.watchedAt = max(v.watchedRev, e.Revision()), time.Now()
	if e.Operation() != jetstream.KeyValuePut {
		id, peerID, ok := splitPeerKey(e.Key())
		if ok {
			v.removePeer(id, peerID)
		}
		return
	}
	if u.err != nil {
		v.log.Warn("ignoring undecodable peer entry", "key", e.Key(), "error", u.err)
		return
	}
	rec := u.rec
	id, err := swarmOf(rec.Stream, rec.StreamKey)
	if err != nil || peerKey(id, rec.PeerID) != e.Key() {
		v.log.Warn("ignoring peer entry under a key that is not its own", "key", e.Key())
		return
	}
	if s := v.swarms[id]; s != nil {
		if i, ok := s.index[rec.PeerID]; ok && s.meta[i].rev >= e.Revision() {
			return // our own write, applied when it was made
		}
	}
	if !v.admits(id, rec) {
		return // another replica's write this one's bounds refuse
	}
	v.putPeer(id, rec, u.fp, e.Revision(), e.Created())
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

// touch takes an announce of peerID whose record has fingerprint fp without a write: it reports
// true when the view holds the peer with that fingerprint under an entry younger than a third of
// the peer TTL. Otherwise the announce must be written: it changed something others read, or
// the entry needs refreshing so that every replica (each ages peers by the entry's time) keeps
// the peer. Call on the view's goroutine.
func (v *view) touch(id swarmID, peerID string, fp uint64, now time.Time) bool {
	s := v.swarms[id]
	if s == nil {
		return false
	}
	i, ok := s.index[peerID]
	return ok && s.meta[i].fp == fp && now.Sub(s.meta[i].created) < v.peerTTL/3
}

// putPeer inserts or replaces a peer. rev orders writes: a handler applies its own write at
// once, and the watcher delivers the same revision again later.
func (v *view) putPeer(id swarmID, rec proto.PeerRecord, fp, rev uint64, created time.Time) {
	v.putPeerAt(id, rec, fp, rev, created, false)
}

func (v *view) putPeerAt(id swarmID, rec proto.PeerRecord, fp, rev uint64, created time.Time, local bool) {
	s := v.swarms[id]
	if s == nil {
		s = newSwarm()
		v.swarms[id] = s
	}
	if i, ok := s.index[rec.PeerID]; ok && s.meta[i].rev >= rev && !local {
		return
	}
	info := candidateInfo(rec) // nat.go
	meta := peerMeta{uploadBps: rec.UploadBps, rev: rev, fp: fp, created: created, host: addrHost(rec.Addr), parents: distinctParents(rec.PeerID, rec.Parents)}
	if s.put(info, meta) {
		v.metrics.peers.Inc()
	}
}

// putLocal puts a record this replica is about to write (writer.go): it replaces the view's
// record whatever its revision, but keeps that revision until the write's own is known, so the
// watcher's late echo of an older write does not bring the old record back.
func (v *view) putLocal(id swarmID, rec proto.PeerRecord, fp uint64, now time.Time) {
	var rev uint64
	if s := v.swarms[id]; s != nil {
		if i, ok := s.index[rec.PeerID]; ok {
			rev = s.meta[i].rev
		}
	}
	v.putPeerAt(id, rec, fp, rev, now, true)
}

// forget makes the next announce of peerID write its record again, if the view still holds the
// record with fingerprint fp (one whose write failed).
func (v *view) forget(id swarmID, peerID string, fp uint64) {
	if s := v.swarms[id]; s != nil {
		if i, ok := s.index[peerID]; ok && s.meta[i].fp == fp {
			s.meta[i].fp = 0 // no record has it (see fingerprint)
		}
	}
}

// stored takes the results of a batch of writes: a stored record takes its revision (so the
// watcher's echo is skipped); a failed one is returned for another try while the view still
// holds it (a newer record of the peer, or its expiry, makes the retry moot).
func (v *view) stored(results []writeResult, now time.Time) (retry []pendingWrite) {
	failed := 0
	for _, r := range results {
		var m *peerMeta
		if s := v.swarms[r.id]; s != nil {
			if i, ok := s.index[r.peerID]; ok && s.meta[i].fp == r.fp {
				m = &s.meta[i]
			}
		}
		if r.err != nil {
			if failed == 0 {
				v.log.Warn("peer write failed; retrying", "error", r.err)
			}
			failed++
			if m != nil {
				retry = append(retry, r.pendingWrite)
			}
			continue
		}
		v.wrote(r.rev, now)
		if m != nil && m.rev < r.rev {
			m.rev = r.rev
		}
	}
	if failed > 0 {
		v.metrics.kvWriteErrors.Add(float64(failed))
	}
	return retry
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
