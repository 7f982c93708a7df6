package peer

import (
	"maps"
	"slices"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// HAVE: telling neighbours, in batches of ranges, which chunks we hold, and remembering which
// chunks we miss they say they hold.

// haveState is the HAVE bookkeeping of the loop; what each neighbour holds is on the neighbour.
type haveState struct {
	outbox []chunkKey // chunks we got since the last HAVE batch (flushHave)
	// advertised holds the chunks neighbours hold and we miss, with when we first heard of each.
	advertised map[uint64]map[uint32]time.Time
}

func (h *haveState) prune(low uint64) {
	maps.DeleteFunc(h.advertised, func(seq uint64, _ map[uint32]time.Time) bool { return seq < low })
}

// haveRanges turns held chunk keys into HAVE ranges.
func haveRanges(keys []chunkKey) []proto.ChunkRange {
	slices.SortFunc(keys, func(a, b chunkKey) int {
		if a.seq != b.seq {
			if a.seq < b.seq {
				return -1
			}
			return 1
		}
		return int(int64(a.index) - int64(b.index))
	})
	var out []proto.ChunkRange
	for _, k := range keys {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Seq == k.seq && last.First+last.Count == k.index {
				last.Count++
				continue
			}
			if last.Seq == k.seq && k.index < last.First+last.Count {
				continue // duplicate
			}
		}
		out = append(out, proto.ChunkRange{Seq: k.seq, First: k.index, Count: 1})
	}
	return out
}

func haveMessages(ranges []proto.ChunkRange) []proto.Message {
	var out []proto.Message
	for len(ranges) > 0 {
		n := min(len(ranges), proto.MaxHaveRanges)
		out = append(out, &proto.Have{Ranges: ranges[:n]})
		ranges = ranges[n:]
	}
	return out
}

func (l *loop) windowRanges() []proto.ChunkRange {
	var keys []chunkKey
	for _, seq := range l.n.window.Seqs() {
		st, ok := l.n.window.State(seq)
		if !ok {
			continue
		}
		for i, h := range st.Have {
			if h {
				keys = append(keys, chunkKey{seq, uint32(i)})
			}
		}
	}
	return haveRanges(keys)
}

func (l *loop) flushHave() {
	if len(l.haves.outbox) == 0 {
		return
	}
	keys := l.haves.outbox
	haveRanges(keys) // sorts keys; the per-neighbour subsets below stay sorted
	var mine []chunkKey
	for _, nb := range l.nbs {
		if nb.origin {
			continue // the root holds every chunk; at 200 peers our HAVEs were most of its load
		}
		// Tell each neighbour only what it lacks: the parent that pushed a chunk and the
		// children we pushed it to know already. At 50 peers HAVEs were most control messages,
		// and every message is a packet plus an ACK.
		mine = mine[:0]
		for _, k := range keys {
			if !nb.has.has(k) {
				mine = append(mine, k)
			}
		}
		if len(mine) == 0 {
			continue
		}
		for _, m := range haveMessages(haveRanges(mine)) {
			nb.send(m)
		}
	}
	l.haves.outbox = l.haves.outbox[:0]
}
