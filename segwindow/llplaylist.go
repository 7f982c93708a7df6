package segwindow

import (
	"bytes"
	"fmt"
	"maps"
	"strconv"
	"time"
)

// The LL-HLS media playlist (RFC 8216bis) of the fMP4 variant. It lists the same segments as
// the MPEG-TS playlist (same media sequence numbers, durations, date-times and discontinuities),
// as SEQ.mp4, then the parts of the segment in progress and a preload hint for the next part.
// hls-m3u8 v0.6.5 decodes the LL-HLS tags, and can write them too, but its writer keeps parts
// of the last three segments (RFC 8216bis: three target durations), tells a part's segment by
// its URI's prefix and forgets the parts it has written, so one playlist cannot be encoded
// twice. These are a few lines: the window writes them itself, and the tests decode them with
// hls-m3u8, the parser players in Go use.

const (
	// llVersion: EXT-X-MAP in a playlist that is not I-frames-only needs protocol version 6; we
	// use nothing newer (no EXT-X-SKIP).
	llVersion = 6
	// partsWithin: parts are listed for the segments that start within this many target
	// durations of the end of the playlist; RFC 8216bis removes older ones.
	partsWithin = 3
	// partHoldBackParts is PART-HOLD-BACK in part targets (RFC 8216bis: at least 2; 3 is what
	// Apple's examples use and hls.js defaults to).
	partHoldBackParts = 3
)

// llCache holds the last rendered LL playlist, for the window version it was rendered at, and
// the init segment with the segment it was derived from.
type llCache struct {
	version    uint64
	body       []byte
	edge       llEdge
	ok         bool
	partTarget time.Duration // the longest part listed so far: PART-TARGET never decreases

	initSeq uint64
	init    *cmafInit
	// inits holds the init segment of each timeline (TimelineInit), by discontinuity sequence
	// number; those before the playlist's first are dropped.
	inits map[uint64]*cmafInit
}

// llSegment is what rendering needs of one listed segment.
type llSegment struct {
	seg      *segment
	meta     SegmentMeta
	disc     bool
	timeline uint64        // its discontinuity sequence number: names its init segment
	after    time.Duration // how much of the listed segments follows this one
	parts    []cmafPart    // derived for the segments that may list parts
}

// LLPlaylist renders the LL-HLS playlist, deriving the parts it lists on first use; ok is false
// while nothing can be listed (no complete segment, or the init segment cannot be derived yet).
// The bytes are cached until the window changes; they are shared, do not modify them.
func (w *Window) LLPlaylist() ([]byte, bool) {
	body, _, ok := w.llPlaylist()
	return body, ok
}

func (w *Window) llPlaylist() ([]byte, llEdge, bool) {
	w.mu.Lock()
	if w.ll.version == w.version && w.ll.body != nil {
		defer w.mu.Unlock()
		return w.ll.body, w.ll.edge, w.ll.ok
	}
	version := w.version
	list := w.listed()
	if len(list) == 0 {
		w.mu.Unlock()
		return nil, llEdge{}, false
	}
	w.advanceFloor(list[0].seq)
	for _, s := range list {
		w.targetSecs = max(w.targetSecs, targetSeconds(extinfDuration(s.info.Duration)))
	}
	target := time.Duration(w.targetSecs) * time.Second
	edge, inProgressSeg, _ := w.edge()
	discSeq := w.discBefore
	segs := make([]llSegment, len(list))
	var after time.Duration // duration of the listed segments after segs[i]
	for i := len(list) - 1; i >= 0; i-- {
		s := list[i]
		segs[i] = llSegment{seg: s, meta: s.meta(), disc: s.discontinuity(), after: after}
		after += s.info.Duration
	}
	timeline := discSeq
	for i := range segs {
		if segs[i].disc {
			timeline++
		}
		segs[i].timeline = timeline
	}
	var inProgress *llInProgress
	if inProgressSeg != nil {
		inProgress = &llInProgress{seq: inProgressSeg.seq, disc: inProgressSeg.disc, timeline: timeline}
		if inProgressSeg.disc {
			inProgress.timeline++
		}
	}
	w.mu.Unlock()

	// Derive what is listed (cached per part after the first time), outside the lock.
	if _, err := w.cmafInit(); err != nil {
		return nil, llEdge{}, false
	}
	var current []cmafPart
	var currentDur time.Duration
	if inProgress != nil {
		current = w.partsOf(inProgress.seq, edge.part)
		for _, p := range current {
			currentDur += p.duration
		}
	}
	for i := range segs {
		// Parts are listed for the segments that start within the last three target
		// durations of the playlist (RFC 8216bis removes older ones), never for the first
		// one: hls-m3u8 (v0.6.5) refuses a part before the playlist's first EXTINF.
		if i > 0 && segs[i].after+segs[i].meta.Duration+currentDur <= partsWithin*target {
			segs[i].parts = w.partsOf(segs[i].seg.seq, -1)
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range segs {
		for _, p := range s.parts {
			w.ll.partTarget = max(w.ll.partTarget, p.duration)
		}
	}
	for _, p := range current {
		w.ll.partTarget = max(w.ll.partTarget, p.duration)
	}
	body := renderLL(segs, inProgress, current, edge, llHeader{
		targetSecs: w.targetSecs, partTarget: w.ll.partTarget, firstSeq: list[0].seq, discSeq: discSeq,
	})
	if version >= w.ll.version {
		w.ll.version, w.ll.body, w.ll.edge, w.ll.ok = version, body, edge, true
	}
	return body, edge, true
}

// PartTarget is the LL playlist's PART-TARGET so far: the longest part it listed (0 before it
// listed any).
func (w *Window) PartTarget() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ll.partTarget
}

// Init returns the fMP4 init segment of the LL playlist's segments, derived from the oldest
// listed segment that yields one (the stream's SPS, PPS and AAC configuration, which a
// publishing session does not change). The bytes are shared: do not modify them.
func (w *Window) Init() ([]byte, error) {
	init, err := w.cmafInit()
	if err != nil {
		return nil, err
	}
	return init.body, nil
}

func (w *Window) cmafInit() (*cmafInit, error) {
	w.mu.Lock()
	list := w.listed()
	if len(list) == 0 {
		w.mu.Unlock()
		return nil, ErrPartNotYet
	}
	for _, s := range list {
		if w.ll.init != nil && w.ll.initSeq == s.seq {
			defer w.mu.Unlock()
			return w.ll.init, nil
		}
	}
	w.mu.Unlock()
	var err error
	for _, s := range list {
		var init cmafInit
		// A listed segment is complete: its bytes, assembled once under the lock (whole),
		// never change, so they are read unlocked.
		w.mu.Lock()
		data := s.whole()
		w.mu.Unlock()
		if init, err = deriveInit(data); err == nil {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.ll.init, w.ll.initSeq = &init, s.seq
			return &init, nil
		}
	}
	return nil, fmt.Errorf("segment %d: %w", list[0].seq, err)
}

// TimelineInit returns the init segment of timeline d (the discontinuity sequence number the LL
// playlist gives its segments; InitURI), derived from its oldest listed segment that yields one,
// or from the first part of the segment in progress when that one starts the timeline. Errors:
// ErrPartNotYet while nothing of the timeline is there yet, ErrNoSuchPart once it left the
// playlist. The bytes are shared: do not modify them.
func (w *Window) TimelineInit(d uint64) ([]byte, error) {
	w.mu.Lock()
	list := w.listed()
	if len(list) == 0 {
		w.mu.Unlock()
		return nil, ErrPartNotYet
	}
	w.advanceFloor(list[0].seq)
	if init, ok := w.ll.inits[d]; ok {
		w.mu.Unlock()
		return init.body, nil
	}
	var sources [][]byte // the timeline's segments' bytes (complete: never change)
	timeline := w.discBefore
	for _, s := range list {
		if s.discontinuity() {
			timeline++
		}
		if timeline == d {
			sources = append(sources, s.whole())
		}
	}
	if next := w.segs[list[len(list)-1].seq+1]; next != nil && !next.partsFinal() {
		if next.discontinuity() {
			timeline++
		}
		if r := next.partRanges(); timeline == d && len(r) > 0 {
			sources = append(sources, next.prefix(r[0].end, r[0].lastChunk))
		}
	}
	low := w.discBefore
	w.mu.Unlock()
	if len(sources) == 0 {
		if d < low {
			return nil, ErrNoSuchPart
		}
		return nil, ErrPartNotYet
	}
	var err error
	for _, b := range sources {
		var init cmafInit
		if init, err = deriveInit(b); err == nil {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.ll.inits == nil {
				w.ll.inits = make(map[uint64]*cmafInit)
			}
			maps.DeleteFunc(w.ll.inits, func(k uint64, _ *cmafInit) bool { return k < w.discBefore })
			w.ll.inits[d] = &init
			return init.body, nil
		}
	}
	return nil, fmt.Errorf("timeline %d: %w", d, err)
}

// MasterPlaylist renders the multivariant playlist: the MPEG-TS variant (index.m3u8) and the
// LL-HLS one (ll.m3u8), the same rendition in two containers, with the bandwidth of the most
// demanding listed segment and the codecs of the init segment. A stream with H.265 or Opus lists
// ll.m3u8 alone: see cmafInit.fmp4Only.
func (w *Window) MasterPlaylist() ([]byte, error) {
	init, err := w.cmafInit()
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	bandwidth := 1
	for _, s := range w.listed() {
		if s.info.Duration > 0 {
			bandwidth = max(bandwidth, int(float64(s.info.ByteLength)*8/s.info.Duration.Seconds()))
		}
	}
	w.mu.Unlock()
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n")
	fmt.Fprintf(&b, "#EXT-X-VERSION:%d\n", llVersion)
	b.WriteString("#EXT-X-INDEPENDENT-SEGMENTS\n")
	variants := []string{PlaylistFile, LLPlaylistFile}
	if init.fmp4Only {
		variants = variants[1:]
	}
	for _, uri := range variants {
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,CODECS=%q\n%s\n", bandwidth, init.codecs, uri)
	}
	return b.Bytes(), nil
}

// partsOf derives the parts of segment seq in order, up to n parts (n < 0: all that are
// available), stopping at the first that is not available or cannot be derived.
func (w *Window) partsOf(seq uint64, n int) []cmafPart {
	var out []cmafPart
	for i := 0; n < 0 || i < n; i++ {
		p, err := w.part(seq, i)
		if err != nil {
			break
		}
		out = append(out, p)
	}
	return out
}

type llHeader struct {
	targetSecs int
	partTarget time.Duration
	firstSeq   uint64
	discSeq    uint64
}

// llInProgress is the segment whose parts are listed after the last whole segment.
type llInProgress struct {
	seq      uint64
	disc     bool
	timeline uint64
}

func renderLL(segs []llSegment, inProgress *llInProgress, current []cmafPart, edge llEdge, h llHeader) []byte {
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n")
	fmt.Fprintf(&b, "#EXT-X-VERSION:%d\n", llVersion)
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", h.targetSecs)
	partTarget := seconds(h.partTarget)
	fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%s\n", seconds(partHoldBackParts*h.partTarget))
	fmt.Fprintf(&b, "#EXT-X-PART-INF:PART-TARGET=%s\n", partTarget)
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", h.firstSeq)
	if h.discSeq > 0 {
		fmt.Fprintf(&b, "#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", h.discSeq)
	}
	// Each timeline has its own init segment: a publisher that reconnects may bring other
	// parameter sets, and a player must not decode them with the old ones.
	fmt.Fprintf(&b, "#EXT-X-MAP:URI=%q\n", InitURI(segs[0].timeline))
	ended := false
	for i, s := range segs {
		if s.disc {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
			if i > 0 {
				fmt.Fprintf(&b, "#EXT-X-MAP:URI=%q\n", InitURI(s.timeline))
			}
		}
		writeParts(&b, s.meta.Seq, s.parts)
		// Right before EXTINF, after the parts: it dates the segment either way (RFC 8216bis),
		// and hls-m3u8 gives it to the segment only there (before the parts, to the first part).
		if !s.meta.ProgramDateTime.IsZero() {
			b.WriteString(programDateTime(s.meta.ProgramDateTime).String() + "\n")
		}
		fmt.Fprintf(&b, "#EXTINF:%s,\n%s\n", seconds(extinfDuration(s.meta.Duration)), FMP4SegmentURI(s.meta.Seq))
		ended = s.meta.End
	}
	if ended {
		b.WriteString("#EXT-X-ENDLIST\n")
		return b.Bytes()
	}
	if inProgress != nil {
		if inProgress.disc {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=%q\n", InitURI(inProgress.timeline))
		} else if last := segs[len(segs)-1].meta; !last.ProgramDateTime.IsZero() {
			// The segment's own date-time travels on its last chunk; until then it is where
			// the previous segment ends, which is how the origin dates it.
			b.WriteString(programDateTime(last.ProgramDateTime.Add(last.Duration)).String() + "\n")
		}
		writeParts(&b, inProgress.seq, current)
	}
	fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=%q\n", PartURI(edge.msn, edge.part))
	return b.Bytes()
}

func writeParts(b *bytes.Buffer, seq uint64, parts []cmafPart) {
	for i, p := range parts {
		fmt.Fprintf(b, "#EXT-X-PART:DURATION=%s,URI=%q", seconds(p.duration), PartURI(seq, i))
		if p.independent {
			b.WriteString(",INDEPENDENT=YES")
		}
		b.WriteByte('\n')
	}
}

// seconds writes a duration in seconds with millisecond precision, rounded up, so a part never
// lasts longer than the PART-TARGET written from it.
func seconds(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)
}
