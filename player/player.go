// Package player is a headless HLS player that behaves like a real one (it joins three target
// durations behind the live edge, reloads the playlist as RFC 8216 says, downloads segments in
// order and plays them out against the wall clock) and measures quality of experience: startup,
// stalls, live latency, and the errors a real player would trip on (media sequence jumps,
// timestamps going back without EXT-X-DISCONTINUITY, segments that are not MPEG-TS).
//
// On a low-latency playlist (EXT-X-PART-INF) it plays like hls.js in lowLatencyMode or
// AVPlayer: it fetches the init segment once, joins PART-HOLD-BACK from the end at an
// independent part, fetches parts in order, waits for the next one with blocking playlist
// reloads (_HLS_msn, _HLS_part) and requests the preload-hinted part ahead; see lowlatency.go.
//
// A Player is one goroutine that blocks in one HTTP request at a time, so hundreds of them fit
// in a load test.
package player

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/pace"
)

// Config configures a Player.
type Config struct {
	// URL of a media playlist, or of a multivariant playlist (its first variant is played).
	URL string
	// Duration to play; 0 plays until the context ends.
	Duration time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// HTTPClient; nil uses a shared client whose connection pool suits many players.
	HTTPClient *http.Client
	// OnStatus, when set, is called from the player's goroutine about once a second.
	OnStatus func(Status)
	// SkipMediaCheck turns off MPEG-TS parsing and timestamp checks (saves CPU in big load tests).
	SkipMediaCheck bool
	// SegmentTimeout bounds one segment request (default 20 s); PlaylistTimeout one playlist
	// request (default 10 s). A request that times out is a fetch error and is retried.
	SegmentTimeout  time.Duration
	PlaylistTimeout time.Duration
	// NoLowLatency plays a low-latency playlist as plain HLS: whole segments, reloads every
	// target duration, three target durations behind the edge.
	NoLowLatency bool
}

// defaultClient is shared by players that get no client: one idle connection per player to the
// same host must survive, which http.DefaultTransport's two idle connections per host do not allow.
var defaultClient = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0
	tr.MaxIdleConnsPerHost = 4096
	return &http.Client{Transport: tr}
}()

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = defaultClient
	}
	if c.SegmentTimeout <= 0 {
		c.SegmentTimeout = 20 * time.Second
	}
	if c.PlaylistTimeout <= 0 {
		c.PlaylistTimeout = 10 * time.Second
	}
	return c
}

const (
	// latencySampleEvery is how often (in wall time during playback) live latency is sampled.
	latencySampleEvery = 250 * time.Millisecond
	// maxSegmentBytes bounds one segment download.
	maxSegmentBytes = 64 << 20
	// segmentAttempts is how many times a segment is tried before the player skips it, as
	// real players do after a few failed retries.
	segmentAttempts = 3
	statusEvery     = time.Second
)

// segmentBuffers recycles download buffers across all players: a segment is parsed right after
// it arrives and then dropped, so no player holds one between downloads.
var segmentBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer {
	buf := segmentBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	return buf
}

func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 8<<20 {
		segmentBuffers.Put(buf)
	}
}

// Player plays one HLS URL. Create it with New, then call Run once.
type Player struct {
	cfg Config
	url *url.URL
	log *slog.Logger
	ran atomic.Bool

	mu              sync.Mutex // guards everything below; held only for bookkeeping, never across I/O
	po              *playout
	firstRequest    time.Time
	startup         time.Duration
	mode            string // ModeHLS or ModeLowLatency once the first playlist decided it
	segments        int
	parts           int
	preloadedParts  int
	bytes           int64
	discontinuities int
	playlistLoads   int
	errors          int
	sequenceErrors  int
	timestampErrors int
	parseErrors     int
	fetchErrors     int
	messages        []string
	finished        bool
	endWall         time.Time
}

// New checks cfg and returns a Player.
func New(cfg Config) (*Player, error) {
	cfg = cfg.withDefaults()
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("player: URL %q: %w", cfg.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("player: URL %q: want an http:// or https:// playlist URL", cfg.URL)
	}
	return &Player{
		cfg: cfg,
		url: u,
		log: cfg.Logger.With("component", "player", "stream", u.Path),
		po:  newPlayout(latencySampleEvery),
	}, nil
}

// errorKind sorts errors for the Summary.
type errorKind int

const (
	kindFetch errorKind = iota
	kindSequence
	kindTimestamp
	kindParse
)

func (p *Player) recordError(kind errorKind, err error) {
	p.log.Warn("playback error", "error", err)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errors++
	switch kind {
	case kindFetch:
		p.fetchErrors++
	case kindSequence:
		p.sequenceErrors++
	case kindTimestamp:
		p.timestampErrors++
	case kindParse:
		p.parseErrors++
	}
	if len(p.messages) < maxErrorMessages {
		p.messages = append(p.messages, err.Error())
	}
}

// playState is what the loop knows about where it is in the stream.
type playState struct {
	playlist   *mediaPlaylist
	mediaURL   *url.URL
	nextReload time.Time
	next       uint64 // sequence number of the next segment to download
	haveNext   bool
	failures   int // failed attempts at segment next
	retryAt    time.Time
	playedAny  bool
	ts         *tsChecker
	fm         *fmp4Checker
	// initURL is the init segment (EXT-X-MAP) the player holds; initFailures counts failed
	// attempts at a new one.
	initURL      *url.URL
	initFailures int
	nextStatus   time.Time
	decided      bool // the mode is chosen
}

// Run plays until Duration elapses or ctx ends (or a closed playlist has played out) and
// returns nil then; everything it started has stopped when it returns.
func (p *Player) Run(ctx context.Context) error {
	if p.ran.Swap(true) {
		return ErrRunTwice
	}
	if p.cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.Duration)
		defer cancel()
	}
	st := &playState{mediaURL: p.url, ts: newTSChecker(), fm: newFMP4Checker()}
	p.log.Debug("playing", "url", p.url.String())

	for ctx.Err() == nil {
		now := time.Now()
		if st.playlist == nil || (!st.playlist.ended && !now.Before(st.nextReload)) {
			p.reload(ctx, st)
			continue
		}
		if !st.decided {
			st.decided = true
			lowLatency := st.playlist.ll != nil && !p.cfg.NoLowLatency
			p.mu.Lock()
			p.mode = ModeHLS
			if lowLatency {
				p.mode = ModeLowLatency
			}
			p.mu.Unlock()
			if lowLatency {
				p.playLowLatency(ctx, st)
				break
			}
		}
		if st.haveNext && !now.Before(st.retryAt) {
			if i, ok := st.playlist.find(st.next); ok {
				p.playSegment(ctx, st, st.playlist.segments[i])
				p.maybeStatus(st, time.Now())
				continue
			}
		}
		if st.playlist.ended && (!st.haveNext || len(st.playlist.segments) == 0 || st.next > st.playlist.lastSeq()) {
			p.playOut(ctx)
			break
		}
		p.wait(ctx, st)
	}

	p.mu.Lock()
	end := time.Now()
	if !p.finished {
		p.po.finish(end)
		p.finished = true
		p.endWall = end
	}
	p.mu.Unlock()
	return nil
}

// reload loads the media playlist and decides what to download next.
func (p *Player) reload(ctx context.Context, st *playState) {
	start := time.Now()
	p.mu.Lock()
	if p.firstRequest.IsZero() {
		p.firstRequest = start
	}
	p.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, p.cfg.PlaylistTimeout)
	pl, err := loadPlaylist(rctx, p.cfg.HTTPClient, st.mediaURL, st.playlist)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		p.recordError(kindFetch, fmt.Errorf("playlist: %w", err))
		retry := time.Second
		if st.playlist != nil {
			retry = st.playlist.targetDuration / 2
		}
		st.nextReload = start.Add(retry)
		if st.playlist == nil {
			p.wait(ctx, st) // nothing to play yet: back off before the next attempt
		}
		return
	}
	p.mu.Lock()
	p.playlistLoads++
	p.mu.Unlock()

	old := st.playlist
	changed := old == nil || len(pl.segments) != len(old.segments) ||
		(len(pl.segments) > 0 && pl.lastSeq() != old.lastSeq())
	// RFC 8216 6.3.4: wait a target duration after a load that changed the playlist, half of
	// one after a load that did not, measured from the start of the load.
	interval := pl.targetDuration
	if !changed {
		interval /= 2
	}
	st.nextReload = start.Add(interval)
	st.mediaURL = pl.url
	st.playlist = pl
	if len(pl.segments) == 0 {
		return
	}
	p.followSequence(st, old, pl)
}

// followSequence keeps st.next on the stream as the new playlist numbers it, and counts the
// sequence errors a real player would suffer from.
func (p *Player) followSequence(st *playState, old, pl *mediaPlaylist) {
	first, last := pl.segments[0].seq, pl.lastSeq()
	if !st.haveNext {
		st.next = pl.segments[pl.liveStart()].seq
		st.haveNext = true
		return
	}
	if old != nil && len(old.segments) > 0 && (first < old.segments[0].seq || last < old.lastSeq()) {
		p.recordError(kindSequence, fmt.Errorf("%w: playlist went back from %d..%d to %d..%d",
			ErrSequenceJump, old.segments[0].seq, old.lastSeq(), first, last))
		st.next = pl.segments[pl.liveStart()].seq
		st.failures = 0
		st.ts.reset()
		return
	}
	if st.next < first {
		p.recordError(kindSequence, fmt.Errorf("%w: wanted segment %d, playlist now starts at %d (%d segments lost)",
			ErrSequenceJump, st.next, first, first-st.next))
		st.next = first
		st.failures = 0
		// The content in between is gone, so the clock may legitimately be elsewhere now.
		st.ts.reset()
	}
}

// playSegment downloads one segment, feeds it to the buffer model and checks its timestamps.
func (p *Player) playSegment(ctx context.Context, st *playState, seg segmentInfo) {
	if seg.mapURL != nil && !p.ensureInit(ctx, st, seg.mapURL) {
		st.retryAt = time.Now().Add(st.playlist.targetDuration / 4)
		return
	}
	buf := getBuffer()
	defer putBuffer(buf)

	sctx, cancel := context.WithTimeout(ctx, p.cfg.SegmentTimeout)
	_, err := getInto(sctx, p.cfg.HTTPClient, seg.url, maxSegmentBytes, buf)
	cancel()
	arrived := time.Now()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		st.failures++
		p.recordError(kindFetch, fmt.Errorf("segment %d (attempt %d of %d): %w", seg.seq, st.failures, segmentAttempts, err))
		if st.failures >= segmentAttempts {
			st.next++
			st.failures = 0
			return
		}
		st.retryAt = arrived.Add(st.playlist.targetDuration / 4)
		return
	}
	st.next++
	st.failures = 0

	crossed := seg.discontinuity && st.playedAny
	st.playedAny = true
	p.mu.Lock()
	if !p.po.started {
		p.startup = arrived.Sub(p.firstRequest)
	}
	p.po.add(arrived, seg.duration, seg.pdt, seg.hasPDT)
	p.segments++
	p.bytes += int64(buf.Len())
	if crossed {
		p.discontinuities++
	}
	p.mu.Unlock()

	if seg.discontinuity {
		st.ts.reset()
	}
	if p.cfg.SkipMediaCheck {
		return
	}
	if seg.fmp4 {
		if seg.discontinuity {
			st.fm.reset()
		}
		p.checkFMP4(st, fmt.Sprintf("segment %d", seg.seq), buf.Bytes(), false)
		return
	}
	if err := st.ts.check(buf.Bytes()); err != nil {
		kind := kindParse
		if errors.Is(err, ErrTimestampBack) {
			kind = kindTimestamp
		}
		p.recordError(kind, fmt.Errorf("segment %d: %w", seg.seq, err))
	}
}

// wait sleeps until the next reload or retry, waking at least once a second for status.
func (p *Player) wait(ctx context.Context, st *playState) {
	now := time.Now()
	until := st.nextReload
	if st.haveNext && st.retryAt.After(now) && st.retryAt.Before(until) {
		until = st.retryAt
	}
	if p.cfg.OnStatus != nil && st.nextStatus.Before(until) {
		until = st.nextStatus
	}
	pace.Sleep(ctx, min(until.Sub(now), statusEvery))
	p.maybeStatus(st, time.Now())
}

// playOut lets the buffer of a closed playlist play to its end.
func (p *Player) playOut(ctx context.Context) {
	p.mu.Lock()
	p.po.advance(time.Now())
	p.po.ended = true
	dry := p.po.dryAt()
	p.mu.Unlock()
	if d := time.Until(dry); d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
}

func (p *Player) maybeStatus(st *playState, now time.Time) {
	if p.cfg.OnStatus == nil || now.Before(st.nextStatus) {
		return
	}
	// A steady cadence from the first status on, whatever the loop was doing in between.
	if st.nextStatus.IsZero() {
		st.nextStatus = now
	}
	for !st.nextStatus.After(now) {
		st.nextStatus = st.nextStatus.Add(statusEvery)
	}
	p.cfg.OnStatus(p.Status())
}

// Status is a snapshot of the player now; safe to call from any goroutine.
func (p *Player) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.finished {
		now = p.endWall
	}
	s := Status{
		Time:     now,
		State:    "starting",
		Parts:    p.parts,
		Segments: p.segments,
		Bytes:    p.bytes,
		Errors:   p.errors,
	}
	stalls := p.po.stateAt(now)
	s.Stalls, s.StallMs = stalls.count, ms(stalls.total)
	if p.po.started {
		s.State = "playing"
		switch {
		case p.po.ended:
			s.State = "ended"
		case stalls.stalled:
			s.State = "stalled"
		}
		s.BufferMs = (p.po.buffered - p.po.playheadAt(now)) * 1000
		if lat, ok := p.po.latencyAt(now); ok {
			s.LatencyMs, s.HasLatency = ms(lat), true
		}
	}
	return s
}

// Summary reports the quality of experience so far; safe during and after Run.
func (p *Player) Summary() Summary {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.finished {
		now = p.endWall
	}
	s := Summary{
		URL:             p.url.String(),
		Mode:            p.mode,
		Started:         p.po.started,
		Segments:        p.segments,
		Parts:           p.parts,
		PreloadedParts:  p.preloadedParts,
		Bytes:           p.bytes,
		Discontinuities: p.discontinuities,
		PlaylistLoads:   p.playlistLoads,
		Errors:          p.errors,
		SequenceErrors:  p.sequenceErrors,
		TimestampErrors: p.timestampErrors,
		ParseErrors:     p.parseErrors,
		FetchErrors:     p.fetchErrors,
		ErrorMessages:   append([]string{}, p.messages...),
	}
	stalls := p.po.stateAt(now)
	s.Stalls, s.StallMs, s.MaxStallMs = stalls.count, ms(stalls.total), ms(stalls.longest)
	if p.po.started {
		s.StartupMs = ms(p.startup)
		s.WatchedMs = ms(now.Sub(p.po.startWall))
		if s.WatchedMs > 0 {
			s.StallRatio = s.StallMs / s.WatchedMs
		}
	}
	s.LiveLatencyMs = LatencySummary{
		P50:     quantile(p.po.latencies, 0.50),
		P95:     quantile(p.po.latencies, 0.95),
		Samples: len(p.po.latencies),
	}
	return s
}
