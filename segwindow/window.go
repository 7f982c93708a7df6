// Package segwindow holds a sliding window of one stream's live segments, assembled from verified
// chunks that may arrive in any order, renders it as an HLS media playlist and serves it over HTTP.
// The origin feeds it the chunks it produces; every peer feeds it chunks from the mesh and the CDN
// fallback. The window never verifies signatures: callers add only chunks they verified.
package segwindow

import (
	"sync"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Defaults applied by Config.withDefaults.
const (
	DefaultPlaylistLength  = 6
	DefaultTargetDuration  = 2 * time.Second
	DefaultMaxSegmentBytes = 32 << 20
	// defaultKeepExtra is how many segments beyond the playlist stay in memory, so neighbours and
	// late peers can still fetch chunks of segments that just slid out of the playlist.
	defaultKeepExtra = 4
	// defaultJumpFactor times Keep is how far ahead of the newest segment a chunk may be before it
	// needs a second, different seq in the same region to move the window (see AddChunk).
	defaultJumpFactor = 4
)

// Config describes one stream's window. Zero fields take defaults.
type Config struct {
	Stream string
	// PlaylistLength is the number of segments listed in the playlist (origin --window).
	PlaylistLength int
	// Keep is the number of newest seqs held in memory (>= PlaylistLength), so that
	// neighbours and late peers can still fetch chunks of recent segments.
	Keep int
	// TargetDuration is the nominal segment duration; EXT-X-TARGETDURATION is the largest of
	// it and of the EXTINF durations listed so far, each rounded to the nearest second (at
	// least 1), and never decreases.
	TargetDuration time.Duration
	// MaxJump bounds how far ahead of the newest seq a single chunk may move the window
	// (default 4*Keep). A chunk further ahead is dropped unless a chunk of another seq close to
	// it arrives too: a real stream that moved on produces many seqs, one bogus chunk does not,
	// and a bogus jump would otherwise evict the whole window and reject every real chunk after.
	MaxJump uint64
	// MaxSegmentBytes bounds the bytes held for one segment before its last chunk says how long
	// it is (default 32 MiB).
	MaxSegmentBytes int
}

func (c Config) withDefaults() Config {
	if c.PlaylistLength <= 0 {
		c.PlaylistLength = DefaultPlaylistLength
	}
	if c.Keep <= 0 {
		c.Keep = c.PlaylistLength + defaultKeepExtra
	}
	if c.Keep < c.PlaylistLength {
		c.Keep = c.PlaylistLength
	}
	if c.TargetDuration <= 0 {
		c.TargetDuration = DefaultTargetDuration
	}
	if c.MaxJump == 0 {
		c.MaxJump = uint64(c.Keep) * defaultJumpFactor
	}
	if c.MaxSegmentBytes <= 0 {
		c.MaxSegmentBytes = DefaultMaxSegmentBytes
	}
	return c
}

// SegmentMeta describes a complete segment.
type SegmentMeta struct {
	Seq             uint64
	Duration        time.Duration
	ProgramDateTime time.Time
	Discontinuity   bool
	ByteLength      int
	ChunkCount      int
	// End says the stream ended with this segment (its last chunk carries the signed FlagEnd).
	End bool
}

// SegmentState is what a scheduler needs to know about one segment, complete or not.
type SegmentState struct {
	Seq           uint64
	Discontinuity bool
	Complete      bool
	Abandoned     bool
	// Broken means every chunk is present but their lengths disagree with the segment's byte
	// length: it can never complete, so a scheduler should Abandon it.
	Broken bool
	// ChunkCount is -1 until the last chunk arrived.
	ChunkCount int
	// Have[i] tells whether chunk i is held; len is ChunkCount once known, else max index seen+1.
	Have []bool
	// FirstSeen is when the first chunk of this segment was added (local clock); zero for a
	// segment abandoned before any chunk of it arrived.
	FirstSeen time.Time
}

// Window is a sliding window of one stream's segments. It is safe for concurrent use; one mutex
// guards it because its state is small and every operation on it is short.
type Window struct {
	cfg Config
	now func() time.Time

	mu   sync.Mutex
	segs map[uint64]*segment // only seqs in [newest-Keep+1, newest]: at most Keep entries

	hasNewest      bool
	newest         uint64 // highest seq with any chunk
	hasComplete    bool
	newestComplete uint64

	// jumpCandidate is a seq far ahead of newest seen once; a chunk of another seq near it
	// confirms that the stream really moved on.
	hasJumpCandidate bool
	jumpCandidate    uint64

	// Playlist state. floor is the lowest seq that may still be listed: players must never see
	// the media sequence go back. discBefore counts discontinuities of seqs below floor.
	floor      uint64
	discBefore uint64
	targetSecs int
	rendered   []byte
	renderedOK bool
	dirty      bool

	changed      chan struct{}
	changedTaken bool // Changed handed out changed since it was made
	// version counts changes (notify); the LL playlist is cached per version.
	version uint64
	ll      llCache
}

// New returns an empty window for cfg.Stream.
func New(cfg Config) *Window {
	cfg = cfg.withDefaults()
	return &Window{
		cfg:        cfg,
		now:        time.Now,
		segs:       make(map[uint64]*segment, cfg.Keep),
		targetSecs: targetSeconds(cfg.TargetDuration),
		dirty:      true,
		changed:    make(chan struct{}),
	}
}

// Config returns the window's configuration with defaults applied.
func (w *Window) Config() Config { return w.cfg }

// AddChunk stores a chunk. Duplicates, chunks of other streams, chunks of segments older than the
// window, and chunks that contradict what the window already holds for their segment are ignored
// (added=false). completed is true exactly once per segment: when this chunk makes it complete
// (chunks 0..ChunkCount-1 present, the count known once the FlagLast chunk arrived, and their
// lengths summing to SegmentInfo.ByteLength).
//
// The window keeps c (and its Data) as it is; the caller must not modify it afterwards.
func (w *Window) AddChunk(c *proto.Chunk) (added, completed bool) {
	if c == nil || c.ID.Stream != w.cfg.Stream {
		return false, false
	}
	seq := c.ID.Seq
	w.mu.Lock()
	defer w.mu.Unlock()

	if !w.admitSeq(seq) {
		return false, false
	}
	s := w.segs[seq]
	if s == nil {
		s = newSegment(seq, w.now())
		if prev := w.segs[seq-1]; seq > 0 && prev != nil && prev.abandoned {
			s.gapBefore = true
		}
		w.segs[seq] = s
	}
	if !s.add(c, w.cfg.MaxSegmentBytes) {
		if len(s.chunks) == 0 && !s.abandoned {
			delete(w.segs, seq) // nothing held for it after all: leave no trace
		}
		return false, false
	}
	if !w.hasNewest || seq > w.newest {
		w.hasNewest = true
		w.newest = seq
		w.hasJumpCandidate = false
		w.evict()
	}
	completed = s.tryComplete()
	if completed {
		if !w.hasComplete || seq > w.newestComplete {
			w.hasComplete = true
			w.newestComplete = seq
		}
		w.dirty = true
	}
	w.notify()
	return true, completed
}

// admitSeq decides whether a chunk of seq may enter the window; it is called with mu held.
func (w *Window) admitSeq(seq uint64) bool {
	if !w.hasNewest {
		return true // the first chunk ever defines where the window is, wherever a peer joins
	}
	if seq < w.lowestKept() {
		return false
	}
	if seq <= w.newest || seq-w.newest <= w.cfg.MaxJump {
		return true
	}
	// Far ahead: move only when a second, different seq near the first one confirms the jump.
	if w.hasJumpCandidate && seq != w.jumpCandidate && absDiff(seq, w.jumpCandidate) <= uint64(w.cfg.Keep) {
		return true
	}
	w.hasJumpCandidate = true
	w.jumpCandidate = seq
	return false
}

// lowestKept is the oldest seq the window holds; called with mu held and hasNewest true.
func (w *Window) lowestKept() uint64 {
	keep := uint64(w.cfg.Keep)
	if w.newest+1 < keep {
		return 0
	}
	return w.newest + 1 - keep
}

// evict drops segments that fell out of the Keep newest seqs. It walks the map (at most Keep+1
// entries), never the seq range, so a jump allocates and iterates nothing per skipped seq.
func (w *Window) evict() {
	low := w.lowestKept()
	if w.floor < low {
		w.advanceFloor(low)
	}
	for seq := range w.segs {
		if seq < low {
			delete(w.segs, seq)
			w.dirty = true
		}
	}
	if w.hasComplete && w.newestComplete < low {
		w.hasComplete = false
	}
}

// notify wakes everyone waiting on Changed; called with mu held. A channel nobody took is kept
// for the next change: most chunks arrive with nobody waiting, and a channel per chunk was a
// measurable share of a peer's allocations.
func (w *Window) notify() {
	w.version++
	if !w.changedTaken {
		return
	}
	close(w.changed)
	w.changed = make(chan struct{})
	w.changedTaken = false
}

// Changed returns a channel that is closed at the next change: a chunk added, a segment
// completed or abandoned. Call it again after it fires to wait for the change after that.
func (w *Window) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changedTaken = true
	return w.changed
}

// Chunk returns a held chunk. The chunk is shared: do not modify it.
func (w *Window) Chunk(seq uint64, index uint32) (*proto.Chunk, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.segs[seq]
	if s == nil {
		return nil, false
	}
	c, ok := s.chunks[index]
	return c, ok
}

// Has reports whether chunk index of segment seq is held.
func (w *Window) Has(seq uint64, index uint32) bool {
	_, ok := w.Chunk(seq, index)
	return ok
}

// Segment returns a complete segment's bytes in one new slice (its chunks' data concatenated)
// and its description. The window never holds a segment in one piece: each call copies. Code
// that only writes the segment somewhere uses SegmentBuffers, which copies nothing; code that
// needs only the description uses Meta.
func (w *Window) Segment(seq uint64) ([]byte, SegmentMeta, bool) {
	parts, meta, ok := w.SegmentBuffers(seq)
	if !ok {
		return nil, SegmentMeta{}, false
	}
	data := make([]byte, 0, meta.ByteLength)
	for _, p := range parts {
		data = append(data, p...)
	}
	return data, meta, true
}

// SegmentBuffers returns a complete segment as its chunks' data in index order, to be written back
// to back (net.Buffers does it in one writev on a socket), and its description. The parts are
// the chunks' own buffers, shared with everyone else who reads them: do not modify them.
func (w *Window) SegmentBuffers(seq uint64) ([][]byte, SegmentMeta, bool) {
	chunks, meta, ok := w.completeChunks(seq)
	if !ok {
		return nil, SegmentMeta{}, false
	}
	parts := make([][]byte, len(chunks))
	for i, c := range chunks {
		parts[i] = c.Data
	}
	return parts, meta, true
}

// Meta describes a complete segment.
func (w *Window) Meta(seq uint64) (SegmentMeta, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.segs[seq]
	if s == nil || !s.complete {
		return SegmentMeta{}, false
	}
	return s.meta(), true
}

// completeChunks returns a complete segment's chunks in index order. Chunks are immutable, so
// callers read them after the lock is released.
func (w *Window) completeChunks(seq uint64) ([]*proto.Chunk, SegmentMeta, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.segs[seq]
	if s == nil || !s.complete {
		return nil, SegmentMeta{}, false
	}
	return s.ordered(), s.meta(), true
}

// ChunkFrames returns every chunk frame of a complete segment, in index order, concatenated into
// one new slice: the body a peer fetches from the CDN to get a whole segment in one request
// instead of one per chunk (see ParseBundle). BundleBuffers gives the same bytes without copying.
func (w *Window) ChunkFrames(seq uint64) ([]byte, bool) {
	parts, ok := w.BundleBuffers(seq)
	if !ok {
		return nil, false
	}
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	b := make([]byte, 0, size)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b, true
}

// BundleBuffers returns a complete segment's chunk frames in index order (proto.Chunk.Frame: each
// chunk's own buffer, shared; do not modify), to be written back to back as the segment's bundle.
func (w *Window) BundleBuffers(seq uint64) ([][]byte, bool) {
	return w.SliceBuffers(seq, wholeSegment)
}

// wholeSegment is the slice that holds every chunk: the bundle.
var wholeSegment = Slice{Index: 0, Count: 1}

// SliceBuffers returns the frames of a complete segment's chunks in slice s, in index order (as
// BundleBuffers; none when the segment has fewer chunks than s.Index+1). A slice that is not
// Valid (nor the whole segment) has none: ok is false.
func (w *Window) SliceBuffers(seq uint64, s Slice) ([][]byte, bool) {
	if s != wholeSegment && !s.Valid() {
		return nil, false
	}
	chunks, _, ok := w.completeChunks(seq)
	if !ok {
		return nil, false
	}
	parts := make([][]byte, 0, (len(chunks)+s.Count-1)/s.Count)
	for i := s.Index; i < len(chunks); i += s.Count {
		parts = append(parts, chunks[i].Frame())
	}
	return parts, true
}

// State describes one held (or abandoned) segment.
func (w *Window) State(seq uint64) (SegmentState, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.segs[seq]
	if s == nil {
		return SegmentState{}, false
	}
	return s.state(), true
}

// Seqs returns the seqs held (including abandoned ones), ascending.
func (w *Window) Seqs() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sortedSeqs()
}

// Newest returns the highest seq of which any chunk was added.
func (w *Window) Newest() (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.newest, w.hasNewest
}

// NewestComplete returns the highest complete seq still held.
func (w *Window) NewestComplete() (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.newestComplete, w.hasComplete
}

// Abandon gives up on an incomplete segment that nothing could fetch, so the playlist can move
// past it (see Playlist for how). It works for a seq of which no chunk ever arrived, as long as
// it lies inside the window and not beyond the newest seq; complete segments are left alone.
func (w *Window) Abandon(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.hasNewest || seq < w.lowestKept() || seq > w.newest {
		return
	}
	s := w.segs[seq]
	if s == nil {
		s = newSegment(seq, time.Time{})
		if prev := w.segs[seq-1]; seq > 0 && prev != nil && prev.abandoned {
			s.gapBefore = true
		}
		w.segs[seq] = s
	}
	if s.complete || s.abandoned {
		return
	}
	s.abandoned = true
	if next := w.segs[seq+1]; next != nil {
		next.gapBefore = true
	}
	w.dirty = true
	w.notify()
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
