package peer

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v5"
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

// trackPlayback is the local endpoint's middleware that feeds playback with every segment a
// player fetched in full.
func (n *Node) trackPlayback(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		err := next(c)
		r := c.Request()
		if err != nil || r.Method != "GET" {
			return err
		}
		name, ok := strings.CutPrefix(r.URL.Path, "/live/"+n.cfg.Stream+"/")
		if !ok {
			return nil
		}
		seqText, ok := strings.CutSuffix(name, ".ts")
		if !ok {
			return nil
		}
		seq, perr := strconv.ParseUint(seqText, 10, 64)
		if perr != nil {
			return nil
		}
		if resp, _ := echo.UnwrapResponse(c.Response()); resp == nil || resp.Status != 200 {
			return nil
		}
		if _, meta, ok := n.window.Segment(seq); ok {
			n.playback.served(seq, meta.Duration, time.Now())
		}
		return nil
	}
}
