package origin

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// stream is one named live stream: its segmenter, its window of recent segments and whoever
// publishes it now. A stream outlives its publishers, so a publisher that comes back continues
// the same sequence numbers. One small mutex serialises the RTP callbacks (video and audio may
// arrive on different goroutines) and the chunk timer.
type stream struct {
	name   string
	log    *slog.Logger
	env    streamEnv
	window *segwindow.Window

	mu        sync.Mutex
	seg       *segmenter
	publisher any // *gortsplib.ServerSession or *puller; nil when idle
	tracks    trackSet
	recent    []segmentStat // the newest finished segments, for the bitrate
	newest    uint64
	hasNewest bool
	// idleSince is when the last publisher left; zero while one publishes. The origin removes
	// the stream StreamGrace after it (at once when it never made a segment).
	idleSince time.Time
}

type segmentStat struct {
	bytes    uint64
	duration time.Duration
}

// streamEnv is what a stream needs of its origin: the settings, the public key for its watch
// link, the metrics it moves, and where its chunks go.
type streamEnv struct {
	cfg      *Config
	pub      ed25519.PublicKey
	log      *slog.Logger
	metrics  *metrics
	produced func(bytes int)          // counts the chunk data produced
	fanout   func(chunk *proto.Chunk) // hands a chunk to the subscribers (the mesh root)
}

func newStream(env streamEnv, name string) *stream {
	st := &stream{
		name: name,
		env:  env,
		log:  env.log.With("stream", name),
		window: segwindow.New(segwindow.Config{
			Stream:         name,
			PlaylistLength: env.cfg.Window,
			TargetDuration: env.cfg.SegmentDuration,
		}),
	}
	first := env.cfg.FirstSeq
	if first == 0 {
		first = uint64(env.cfg.now().UnixMilli() / 100)
	}
	st.seg = newSegmenter(segmenterConfig{
		FirstSeq:      first,
		Stream:        name,
		Target:        env.cfg.SegmentDuration,
		ChunkSize:     env.cfg.ChunkSize,
		ChunkInterval: env.cfg.ChunkInterval,
		ChunkDuration: env.cfg.ChunkDuration,
		PartTarget:    env.cfg.PartTarget,
		Key:           env.cfg.Key,
		Now:           env.cfg.now,
		Emit:          st.emit,
		OnSegment:     st.onSegment,
		OnError:       func(err error) { st.rtpError("audio", err) },
	})
	return st
}

// emit runs under st.mu for every chunk the segmenter produces.
func (st *stream) emit(c *proto.Chunk) {
	st.window.AddChunk(c)
	st.env.metrics.chunks.Inc()
	st.env.metrics.bytesProduced.Add(float64(len(c.Data)))
	st.env.produced(len(c.Data))
	st.env.fanout(c)
}

func (st *stream) onSegment(seq uint64, info proto.SegmentInfo) {
	st.env.metrics.segments.Inc()
	st.newest, st.hasNewest = seq, true
	st.recent = append(st.recent, segmentStat{bytes: info.ByteLength, duration: info.Duration})
	if len(st.recent) > st.env.cfg.Window {
		st.recent = st.recent[1:]
	}
	st.log.Debug("segment", "seq", seq, "duration", info.Duration, "bytes", info.ByteLength, "chunks", info.ChunkCount)
}

// claim makes owner the stream's publisher, unless someone else already is. Origin.claimStream
// calls it with o.mu held, so the stream cannot be removed in between.
func (st *stream) claim(owner any) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher != nil && st.publisher != owner {
		return fmt.Errorf("%w: %s", ErrStreamBusy, st.name)
	}
	st.publisher = owner
	st.idleSince = time.Time{}
	return nil
}

// removable reports whether the stream has had no publisher for grace (or has none and never
// made a segment, so nobody can be watching it).
func (st *stream) removable(now time.Time, grace time.Duration) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.publisher == nil && !st.idleSince.IsZero() && (!st.hasNewest || now.Sub(st.idleSince) >= grace)
}

// start begins owner's session: a new timeline in the segmenter.
func (st *stream) start(owner any, plan *ingestPlan) error {
	if err := st.startLocked(owner, plan.tracks); err != nil {
		return err
	}
	st.log.Info("publishing started", "codecs", plan.tracks.codecs(), "rtp", plan.rtpMaps(), "next_seq", st.nextSeq())
	st.notify()
	return nil
}

// notify tells Config.OnStream about a change; called without st.mu held.
func (st *stream) notify() {
	if cb := st.env.cfg.OnStream; cb != nil {
		cb(st.info())
	}
}

func (st *stream) startLocked(owner any, tracks trackSet) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher != owner {
		return fmt.Errorf("%w: %s", ErrStreamBusy, st.name)
	}
	if err := st.seg.startSession(tracks); err != nil {
		return err
	}
	st.tracks = tracks
	st.env.metrics.publishers.Inc()
	return nil
}

// release ends owner's session, finishing the open segment with its real duration, and ends the
// stream: its last chunk carries the signed end, so playlists get EXT-X-ENDLIST.
func (st *stream) release(owner any) { st.releaseSession(owner, true) }

// releaseSession is release; without end the stream goes on after a gap (a pulled camera that
// the origin reconnects to), so players keep polling instead of stopping.
func (st *stream) releaseSession(owner any, end bool) {
	st.mu.Lock()
	if st.publisher != owner {
		st.mu.Unlock()
		return
	}
	st.publisher = nil
	st.idleSince = st.env.cfg.now()
	ended := st.seg.inSession
	if ended {
		st.seg.stopSession(end)
		st.env.metrics.publishers.Dec()
		if end {
			st.log.Info("publishing ended; the playlist ends, the stream is removed unless a publisher comes back",
				"next_seq", st.seg.nextSeq(), "grace", st.env.cfg.StreamGrace)
		} else {
			st.log.Info("publishing interrupted; the stream goes on when the source is back, or is removed",
				"next_seq", st.seg.nextSeq(), "grace", st.env.cfg.StreamGrace)
		}
	}
	st.mu.Unlock()
	if ended {
		st.notify()
	}
}

// writeH264 muxes one access unit of owner's session; an error is counted as a media error
// and returned (RTSP ingest goes on with the next packet, an in-process feed may want to know).
func (st *stream) writeH264(owner any, pts int64, ntp time.Time, au [][]byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher != owner || !st.seg.inSession {
		return ErrNotPublishing
	}
	st.seg.setSampleNTP(ntp)
	if err := st.seg.writeH264(pts, au); err != nil {
		st.rtpError("h264", err)
		return err
	}
	return nil
}

func (st *stream) writeH265(owner any, pts int64, ntp time.Time, au [][]byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher != owner || !st.seg.inSession {
		return
	}
	st.seg.setSampleNTP(ntp)
	if err := st.seg.writeH265(pts, au); err != nil {
		st.rtpError("h265", err)
	}
}

func (st *stream) writeOpus(owner any, pts int64, ntp time.Time, packets [][]byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher != owner || !st.seg.inSession {
		return
	}
	st.seg.setSampleNTP(ntp)
	if err := st.seg.writeOpus(pts, packets); err != nil {
		st.rtpError("opus", err)
	}
}

// writeAAC is writeH264 for the AAC access units of one packet.
func (st *stream) writeAAC(owner any, pts int64, ntp time.Time, aus [][]byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher != owner || !st.seg.inSession {
		return ErrNotPublishing
	}
	st.seg.setSampleNTP(ntp)
	if err := st.seg.writeAAC(pts, aus); err != nil {
		st.rtpError("aac", err)
		return err
	}
	return nil
}

func (st *stream) nextSeq() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.seg.nextSeq()
}

func (st *stream) tick(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.seg.tick(now)
}

func (st *stream) rtpError(codec string, err error) {
	st.env.metrics.mediaErrors.Inc()
	st.log.Debug("media error", "codec", codec, "error", err)
}

// recoverPanic keeps a bug triggered by one publisher's media from taking the origin down.
func (st *stream) recoverPanic(fail func(error)) {
	if r := recover(); r != nil {
		st.env.metrics.mediaErrors.Inc()
		st.log.Error("panic while ingesting; closing the session", "panic", r, "stack", string(debug.Stack()))
		if fail != nil {
			fail(fmt.Errorf("ingest panic: %v", r))
		}
	}
}

// StreamInfo describes a stream for /v1/streams and the mesh root.
type StreamInfo struct {
	Name      string   `json:"name"`
	PublicKey string   `json:"public_key"`
	WatchLink string   `json:"watch_link,omitempty"`
	Live      bool     `json:"live"`
	Ended     bool     `json:"ended"` // the playlist ended (publisher left); removed after the grace
	Codecs    []string `json:"codecs"`
	// NewestSeq is the newest finished segment; absent before the first one.
	NewestSeq *uint64 `json:"newest_seq,omitempty"`
	// BitrateBps is measured over the finished segments in the playlist window.
	BitrateBps float64 `json:"bitrate_bps"`
}

func (st *stream) info() StreamInfo {
	st.mu.Lock()
	defer st.mu.Unlock()
	si := StreamInfo{
		Name:      st.name,
		PublicKey: proto.FormatPublicKey(st.env.pub),
		Live:      st.publisher != nil && st.seg.inSession,
		Ended:     st.window.Ended(),
		Codecs:    st.tracks.codecs(),
	}
	if si.Codecs == nil {
		si.Codecs = []string{}
	}
	if st.env.cfg.TrackerURL != "" {
		si.WatchLink = proto.WatchLink{Tracker: st.env.cfg.TrackerURL, Stream: st.name, OriginKey: st.env.pub}.String()
	}
	if st.hasNewest {
		n := st.newest
		si.NewestSeq = &n
	}
	var bytes uint64
	var dur time.Duration
	for _, r := range st.recent {
		bytes += r.bytes
		dur += r.duration
	}
	if dur > 0 {
		si.BitrateBps = float64(bytes*8) / dur.Seconds()
	}
	return si
}
