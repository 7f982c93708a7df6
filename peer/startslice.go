package peer

import (
	"context"

	"github.com/crowdsurf/crowdsurf/segwindow"
)

// A crowd's start, shared. When viewers arrive together (a flash crowd: the concert begins) none
// of them holds the segments before the live edge that each needs to start, so with the start
// left to the swarm (Config.StartNeighbourWait) each joiner used to fetch them whole from the CDN:
// a copy of the start per joiner, most of what such a crowd costs the origin. Instead each joiner
// fetches one slice of every start segment nobody holds (the chunks of one stripe, picked by its
// id, in one request), announces it at once, and takes the other slices from the fellow joiners
// that fetched them; what none of them delivers within the wait comes from the CDN as before.

// sliceState is how a joiner's fetch of its slice of a start segment went.
type sliceState uint8

const (
	sliceNone    sliceState = iota
	sliceFetched            // fetched (or running): the other slices are the neighbours' to give
	sliceFailed             // the CDN would not send it (an origin without slices): fetch it all
)

// startSlice is the slice of start segments this node fetches from the CDN in a crowd: its
// stripe-th stripe, the stripe chosen by its random id so that a crowd's joiners spread over all
// of them.
func (l *loop) startSlice() segwindow.Slice {
	return segwindow.Slice{Index: int(l.n.id[0]) % len(l.stripes), Count: len(l.stripes)}
}

// fetchStartShare takes a joiner's start segment seq in hand while the swarm has its wait: it
// says true when it did (or when waiting is right), false when the caller should fetch the
// segment as any late one.
//
// Nobody holds any of it and we have fellow viewers: our slice from the CDN, once, and the rest
// from them. Some viewer holds some of it: fetchStartRest. Without viewer neighbours (the first
// viewer of a stream) or slices (an origin that does not serve them, or a stream of one stripe)
// there is nobody to share with: the whole segment from the CDN now, as before.
func (l *loop) fetchStartShare(ctx context.Context, seq uint64, st segwindowState) bool {
	if l.viewerHoldsAny(seq) {
		l.fetchStartRest(ctx, seq, st)
		return true
	}
	if len(l.stripes) < 2 || !l.hasViewerNeighbour() {
		return false
	}
	switch l.fetches.slices[seq] {
	case sliceFetched:
		return true // ours is in; the others' slices are on their way or the wait ends
	case sliceFailed:
		return false
	}
	budget := l.cdnBudget(seq, st)
	if budget <= 0 {
		return false
	}
	l.fetches.slices[seq] = sliceFetched
	l.fetches.running[seq] = true
	job := fetchJob{base: l.originHTTP, stream: l.cfg.Stream, seq: seq, tailFrom: -1,
		budget: budget, untilPart: -1, startRest: true, slice: l.startSlice()}
	l.n.wg.Go(func() { l.n.runFetch(ctx, job) })
	return true
}

// hasViewerNeighbour says whether a neighbour other than the origin is connected.
func (l *loop) hasViewerNeighbour() bool {
	for _, nb := range l.nbs {
		if !nb.origin {
			return true
		}
	}
	return false
}
