package segwindow

import (
	"slices"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// segment assembles one segment from chunks arriving in any order. Chunks live in a map, not a
// slice indexed by chunk index, so a chunk with a large index (or a large ChunkCount on a last
// chunk) allocates nothing beyond the chunk itself.
type segment struct {
	seq       uint64
	firstSeen time.Time
	chunks    map[uint32]*proto.Chunk
	bytes     int    // sum of held chunks' data lengths
	maxIndex  uint32 // highest index held (valid when len(chunks) > 0)
	discSet   bool   // the first chunk fixed the discontinuity flag
	disc      bool
	hasInfo   bool // the FlagLast chunk arrived
	info      proto.SegmentInfo
	end       bool // the FlagLast chunk also had FlagEnd: the stream ended with this segment
	complete  bool
	broken    bool // all chunks present, byte length wrong: can never complete
	abandoned bool
	// gapBefore: the previous seq was abandoned, so this segment starts a new run in the
	// playlist and carries EXT-X-DISCONTINUITY there.
	gapBefore bool
	// data is the whole segment in one piece, assembled on first use by LL-HLS derivation
	// (whole); nothing else needs it, so a viewer that serves plain HLS never holds it.
	data []byte
	// derived caches the LL-HLS parts derived so far, by part number (see parts.go); it goes
	// with the segment when the segment leaves the window.
	derived []*derivedPart
	// clock maps the segment's MPEG-TS timestamps to fMP4 decode times (cmaf.go), fixed by the
	// first part derived, so all its parts and the next segment agree.
	clock *tsClock
	// have is state's Have, kept until add changes the segment: a peer's repair and fallback
	// scans ask for the same few segments' states every 100 ms, and walking the chunk map for
	// each was most of their cost at 100 in-process peers. nil = build it on the next state.
	have []bool
}

func newSegment(seq uint64, now time.Time) *segment {
	return &segment{seq: seq, firstSeen: now, chunks: make(map[uint32]*proto.Chunk)}
}

// add stores c unless it is a duplicate or contradicts what the segment already holds. Chunks
// are signed, so a contradiction means a bug or a compromised origin: rejecting it is defence in
// depth, and the first writer wins.
func (s *segment) add(c *proto.Chunk, maxBytes int) bool {
	if s.complete || s.abandoned {
		return false
	}
	if _, dup := s.chunks[c.ID.Index]; dup {
		return false
	}
	disc := c.Flags&proto.FlagDiscontinuity != 0
	if s.discSet && disc != s.disc {
		return false
	}
	if s.hasInfo && c.ID.Index >= s.info.ChunkCount {
		return false
	}
	if c.Last() {
		if s.hasInfo || c.Info.ChunkCount != c.ID.Index+1 || c.Info.ByteLength > uint64(maxBytes) {
			return false
		}
		if len(s.chunks) > 0 && s.maxIndex > c.ID.Index {
			return false // chunks beyond the claimed end are held already: first writer wins
		}
	}
	if s.bytes+len(c.Data) > maxBytes {
		return false
	}
	if s.hasInfo && uint64(s.bytes+len(c.Data)) > s.info.ByteLength {
		return false // cannot be part of a segment of this length
	}
	if c.Last() && uint64(s.bytes+len(c.Data)) > c.Info.ByteLength {
		return false
	}

	if len(s.chunks) == 0 || c.ID.Index > s.maxIndex {
		s.maxIndex = c.ID.Index
	}
	s.chunks[c.ID.Index] = c
	s.have = nil
	s.bytes += len(c.Data)
	s.discSet = true
	s.disc = disc
	if c.Last() {
		s.hasInfo = true
		s.info = c.Info
		s.end = c.End()
	}
	return true
}

// tryComplete marks the segment complete when every chunk is present and the lengths add up,
// and reports whether this call did so. Nothing is copied: a complete segment is its chunks'
// data back to back (parts), each in the one buffer its chunk arrived in.
func (s *segment) tryComplete() bool {
	if s.complete || !s.hasInfo || uint64(len(s.chunks)) != uint64(s.info.ChunkCount) {
		return false
	}
	if uint64(s.bytes) != s.info.ByteLength {
		s.broken = true
		return false
	}
	s.complete = true
	return true
}

// whole returns a complete segment's bytes in one piece, assembling them on the first call;
// called with the window's lock held. Only LL-HLS derivation needs the segment contiguous.
func (s *segment) whole() []byte {
	if s.data == nil && s.complete {
		s.data = make([]byte, 0, s.bytes)
		for i := range s.info.ChunkCount {
			s.data = append(s.data, s.chunks[i].Data...)
		}
	}
	return s.data
}

// ordered returns a complete segment's chunks in index order.
func (s *segment) ordered() []*proto.Chunk {
	out := make([]*proto.Chunk, s.info.ChunkCount)
	for i := range out {
		out[i] = s.chunks[uint32(i)]
	}
	return out
}

func (s *segment) meta() SegmentMeta {
	return SegmentMeta{
		Seq:             s.seq,
		Duration:        s.info.Duration,
		ProgramDateTime: s.info.ProgramDateTime,
		Discontinuity:   s.disc,
		ByteLength:      int(s.info.ByteLength),
		ChunkCount:      int(s.info.ChunkCount),
		End:             s.end,
	}
}

func (s *segment) state() SegmentState {
	st := SegmentState{
		Seq:           s.seq,
		Discontinuity: s.disc,
		Complete:      s.complete,
		Abandoned:     s.abandoned,
		Broken:        s.broken,
		ChunkCount:    -1,
		FirstSeen:     s.firstSeen,
	}
	n := 0
	if s.hasInfo {
		st.ChunkCount = int(s.info.ChunkCount)
		n = st.ChunkCount
	} else if len(s.chunks) > 0 {
		n = int(s.maxIndex) + 1
	}
	if s.have == nil || len(s.have) != n {
		s.have = make([]bool, n)
		for i := range s.chunks {
			if int(i) < n {
				s.have[i] = true
			}
		}
	}
	st.Have = slices.Clone(s.have) // the caller's to keep; the cache stays the segment's
	return st
}
