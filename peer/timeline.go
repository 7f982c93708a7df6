package peer

import (
	"maps"
	"time"
)

// timeline is what the node verifiably knows of the stream's segments: which exist and where the
// live edge is. Only verified evidence moves it (a chunk that passed the origin's signature, the
// origin's own playlist); what neighbours claim is judged against it (judgeClaim), so a liar
// cannot drag it into a future where repair and fallback look only at segments that do not exist.
type timeline struct {
	known  bool
	newest uint64    // newest seq that verified evidence says exists
	edgeAt time.Time // when verified evidence last came
	// maxChunkCount is the most chunks a complete segment had (signed counts); it bounds the
	// indexes we believe of a segment whose count we do not know yet (chunkIndexLimit).
	maxChunkCount int
	startSeq      uint64 // the oldest seq we try to get (set on the first sight of the live edge)
	// lowestSeen is the oldest seq verified evidence showed us. A young stream has nothing before
	// its first segment: seqs below this one are not missing, so we neither fetch nor abandon
	// them (no phantom gap at the start).
	lowestSeen uint64
	seen       map[uint64]time.Time // when we first learned each seq exists
}

// learn records verified evidence that seq exists and says whether it was the first sight of the
// stream. Callers with several seqs pass the newest first: the first sight sets where we start.
func (t *timeline) learn(seq uint64, now time.Time) (first bool) {
	t.edgeAt = now
	if _, ok := t.seen[seq]; !ok {
		t.seen[seq] = now
	}
	if !t.known {
		t.known = true
		t.newest = seq
		t.lowestSeen = seq
		t.startSeq = seq - min(seq, joinSegments)
		return true
	}
	t.lowestSeen = min(t.lowestSeen, seq)
	t.newest = max(t.newest, seq)
	return false
}

// lowSeq is the oldest seq repair and fallback still look at.
func (t *timeline) lowSeq() uint64 {
	lo := t.newest - min(t.newest, repairSpan)
	return max(lo, t.startSeq, t.lowestSeen)
}

// noteCount records a complete segment's signed chunk count.
func (t *timeline) noteCount(n int) { t.maxChunkCount = max(t.maxChunkCount, n) }

// chunkIndexLimit bounds the chunk indexes we believe a segment whose length we do not know yet
// may have: twice the most chunks a recent segment had, plus slack for a bitrate peak; before any
// segment completed, a generous fixed bound.
func (t *timeline) chunkIndexLimit() int {
	if t.maxChunkCount == 0 {
		return defaultChunkIndexLimit
	}
	return 2*t.maxChunkCount + 64
}

func (t *timeline) prune(low uint64) {
	maps.DeleteFunc(t.seen, func(seq uint64, _ time.Time) bool { return seq < low })
}
