package peer

import (
	"sync"
	"time"
)

// playback estimates how much the local player has buffered, from the segments it fetched: a
// player fetches segments in order and plays them out at the wall clock, so each segment served
// extends its buffer by the segment's duration. The fallback uses it to fetch the segment the
// player needs next from the CDN in time when the swarm is late, instead of waiting for a rule of
// thumb about the swarm while the player runs dry (a viewer joining with a crowd starts on a
// short buffer, before the trees exist).
type playback struct {
	mu        sync.Mutex
	ok        bool
	next      uint64    // the segment the player will ask for next
	bufferEnd time.Time // when what it fetched runs out
}

// served records that the player took segment seq of duration d at now. Segments behind the
// furthest one (a second player, a retry) change nothing.
func (p *playback) served(seq uint64, d time.Duration, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ok && seq < p.next {
		return
	}
	if !p.ok || p.bufferEnd.Before(now) {
		p.bufferEnd = now // first segment, or the player ran dry and starts again now
	}
	p.ok = true
	p.bufferEnd = p.bufferEnd.Add(d)
	p.next = seq + 1
}

// state is the segment the player needs next and when its buffer runs out; ok is false until a
// player fetched a segment.
func (p *playback) state() (next uint64, bufferEnd time.Time, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next, p.bufferEnd, p.ok
}
