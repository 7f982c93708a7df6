package player

import (
	"bytes"
	"context"
	"net/url"
	"time"
)

// aheadFetch is a request for a part made before the part exists: the EXT-X-PRELOAD-HINT of a
// low-latency playlist names the next part, and the server holds the request until the part is
// complete, so its bytes arrive the moment they exist rather than one playlist round trip later.
// It runs in a goroutine of its own beside the blocking playlist reload; the player loop owns it
// and always waits for it (take or abandon) before it returns.
type aheadFetch struct {
	url    *url.URL
	cancel context.CancelFunc
	done   chan struct{}
	// Set by the goroutine before done is closed.
	buf     *bytes.Buffer
	err     error
	arrived time.Time
}

func (p *Player) fetchAhead(ctx context.Context, u *url.URL) *aheadFetch {
	actx, cancel := context.WithTimeout(ctx, p.cfg.SegmentTimeout)
	a := &aheadFetch{url: u, cancel: cancel, done: make(chan struct{}), buf: getBuffer()}
	go func() {
		defer close(a.done)
		defer cancel()
		_, a.err = getInto(actx, p.cfg.HTTPClient, u, maxSegmentBytes, a.buf)
		a.arrived = time.Now()
	}()
	return a
}

// wait waits for the fetch to end; false when ctx ended first (the fetch is then abandoned).
func (a *aheadFetch) wait(ctx context.Context) bool {
	select {
	case <-a.done:
		return true
	case <-ctx.Done():
		a.abandon()
		return false
	}
}

// failed reports whether the fetch has ended with an error.
func (a *aheadFetch) failed() bool {
	select {
	case <-a.done:
		return a.err != nil
	default:
		return false
	}
}

// abandon stops the fetch, waits for its goroutine and gives back its buffer.
func (a *aheadFetch) abandon() {
	a.cancel()
	<-a.done
	putBuffer(a.buf)
}
