package segwindow

import (
	"errors"
	"fmt"
)

// LL-HLS parts in the window. The origin ends a part with a signed chunk flag
// (proto.FlagPartEnd, or the segment's last chunk), so a part is a run of whole chunks and is
// available on a node as soon as it holds every chunk of the segment up to the part's end.
// Nothing is derived until an LL-HLS client asks: a part's fMP4 is derived once, on first use,
// and kept with its segment, so the cache is bounded by the window and leaves with its segments.

// Errors of the part lookups; the server maps them to HTTP statuses.
var (
	// ErrPartNotYet means the part may still come: its chunks have not all arrived.
	ErrPartNotYet = errors.New("segwindow: part not available yet")
	// ErrNoSuchPart means the part will never be available here: its segment ended with fewer
	// parts, was given up, or left the window.
	ErrNoSuchPart = errors.New("segwindow: no such part")
)

// partRange is where a part lies in its segment.
type partRange struct {
	start, end int    // byte offsets in the segment
	lastChunk  uint32 // index of the chunk that ends it
}

// derivedPart is a part's fMP4 once derived, or why it cannot be.
type derivedPart struct {
	cmafPart
	err error
}

// partRanges lists the parts whose chunks are all held, in order: the held run of chunks from
// index 0, cut after every chunk that ends a part. A part of no bytes (a segment whose last
// chunk is empty and follows a part end) is no part.
func (s *segment) partRanges() []partRange {
	if s.abandoned || s.broken {
		return nil
	}
	var (
		out        []partRange
		off, start int
	)
	for i := uint32(0); ; i++ {
		c, ok := s.chunks[i]
		if !ok {
			break
		}
		off += len(c.Data)
		if c.PartEnd() {
			if off > start {
				out = append(out, partRange{start: start, end: off, lastChunk: i})
			}
			start = off
		}
		if c.Last() {
			break
		}
	}
	return out
}

// prefix returns the segment's bytes up to end (the held chunks from index 0 must cover it).
func (s *segment) prefix(end int, lastChunk uint32) []byte {
	if s.complete {
		return s.whole()[:end]
	}
	b := make([]byte, 0, end)
	for i := uint32(0); i <= lastChunk; i++ {
		b = append(b, s.chunks[i].Data...)
	}
	return b
}

// clockHint is what deriving a part of s knows of its clock (cmaf.go's tsClock): its own, once
// a part of it was derived, else the previous segment's when that one is held in the same
// timeline. needPrev asks the caller to derive a part of prev (seq prevSeq) first, when prev is
// of the same timeline and has no clock yet. Called with mu held.
func (s *segment) clockHint(prev *segment) (h clockHint, prevSeq uint64, needPrev bool) {
	if s.clock != nil {
		return clockHint{own: s.clock}, 0, false
	}
	if s.seq == 0 || prev == nil || s.disc || s.gapBefore || prev.abandoned || prev.broken {
		return clockHint{}, 0, false // a new timeline, or nothing to continue from here
	}
	if prev.clock != nil {
		return clockHint{prev: prev.clock}, 0, false
	}
	return clockHint{}, prev.seq, true
}

// partsFinal reports whether the segment's part list can no longer grow.
func (s *segment) partsFinal() bool { return s.complete || s.abandoned || s.broken }

// Part returns part n (from 0) of segment seq as an fMP4 fragment (moof+mdat), deriving it from
// the segment's chunks on first use. The bytes are shared: do not modify them. Errors:
// ErrPartNotYet, ErrNoSuchPart, or the derivation's error when the segment's MPEG-TS cannot be
// turned into fMP4 (which every node finds alike, since the bytes are signed).
func (w *Window) Part(seq uint64, n int) ([]byte, error) {
	p, err := w.part(seq, n)
	if err != nil {
		return nil, err
	}
	return p.body, nil
}

func (w *Window) part(seq uint64, n int) (cmafPart, error) {
	if n < 0 {
		return cmafPart{}, ErrNoSuchPart
	}
	w.mu.Lock()
	s := w.segs[seq]
	if s == nil {
		ahead := !w.hasNewest || seq > w.newest
		w.mu.Unlock()
		if ahead {
			return cmafPart{}, ErrPartNotYet
		}
		return cmafPart{}, ErrNoSuchPart
	}
	if n < len(s.derived) && s.derived[n] != nil {
		d := s.derived[n]
		w.mu.Unlock()
		return d.cmafPart, d.err
	}
	ranges := s.partRanges()
	if n >= len(ranges) {
		final := s.partsFinal()
		w.mu.Unlock()
		if final {
			return cmafPart{}, ErrNoSuchPart
		}
		return cmafPart{}, ErrPartNotYet
	}
	r := ranges[n]
	seg := s.prefix(r.end, r.lastChunk)
	clock, prevSeq, needPrev := s.clockHint(w.segs[seq-1])
	w.mu.Unlock()
	if needPrev {
		// The previous segment of the timeline never had a part derived here: derive its first,
		// which fixes its clock (recursively back to the oldest held), so this one continues it.
		if p, err := w.part(prevSeq, 0); err == nil {
			clock.prev = &p.clock
		}
	}

	// Derived outside the lock: a part takes a fraction of a millisecond to a few, and chunks
	// keep arriving meanwhile. Two requests may derive the same part at once; they get the
	// same bytes, and the first stored wins.
	p, err := derivePart(seg, r.start, seq, n, clock)
	if err != nil {
		err = fmt.Errorf("segment %d part %d: %w", seq, n, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.segs[seq] != s {
		return p, err // evicted meanwhile: nothing to cache it with
	}
	for len(s.derived) <= n {
		s.derived = append(s.derived, nil)
	}
	if s.derived[n] == nil {
		s.derived[n] = &derivedPart{cmafPart: p, err: err}
		if err == nil && s.clock == nil {
			s.clock = &p.clock
		}
	}
	return s.derived[n].cmafPart, s.derived[n].err
}

// FMP4Segment returns a complete segment as fMP4: its parts back to back (without the init
// segment). ok is false unless the segment is complete.
func (w *Window) FMP4Segment(seq uint64) ([]byte, SegmentMeta, error) {
	w.mu.Lock()
	s := w.segs[seq]
	if s == nil || !s.complete {
		w.mu.Unlock()
		return nil, SegmentMeta{}, ErrNoSuchPart
	}
	meta := s.meta()
	n := len(s.partRanges())
	w.mu.Unlock()
	var out []byte
	for i := range n {
		p, err := w.part(seq, i)
		if err != nil {
			return nil, SegmentMeta{}, err
		}
		out = append(out, p.body...)
	}
	return out, meta, nil
}

// llEdge is the next part a node will list: the preload hint. msn is the media sequence
// number of the segment in progress (or of the next one, when none is), part its index there.
type llEdge struct {
	msn  uint64
	part int
}

// covers reports whether part (msn, part) comes before the edge, that is: is listed (or lies
// beyond the end of a segment that is complete, so no reload will bring it).
func (e llEdge) covers(msn uint64, part int) bool {
	return msn < e.msn || msn == e.msn && part < e.part
}

// edge returns the next part to come after the listed ones; ok is false while the LL playlist
// lists nothing (no complete segment yet). Called with mu held.
func (w *Window) edge() (llEdge, *segment, bool) {
	list := w.listed()
	if len(list) == 0 {
		return llEdge{}, nil, false
	}
	last := list[len(list)-1]
	next := w.segs[last.seq+1]
	if last.end || next == nil || next.partsFinal() {
		return llEdge{msn: last.seq + 1}, nil, true
	}
	return llEdge{msn: next.seq, part: len(next.partRanges())}, next, true
}

// LLEdge returns the media sequence number and part index of the next part to come (the one
// the LL playlist's EXT-X-PRELOAD-HINT names), and whether the LL playlist lists anything yet.
func (w *Window) LLEdge() (msn uint64, part int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, _, ok := w.edge()
	return e.msn, e.part, ok
}
