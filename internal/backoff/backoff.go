// Package backoff computes how long to wait before trying again: exponential, capped, with
// jitter. The origin's camera pulls, the test card's publisher and the peer's tracker announces
// all retry with it, so every retry in crowdsurf grows, caps and spreads out the same way.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// DefaultJitter is the share of each delay that is random: a delay d is drawn from
// [d*(1-DefaultJitter), d]. Half of it spreads a crowd of clients that all lost the same server at
// the same moment, so they do not come back in lockstep.
const DefaultJitter = 0.5

// Backoff hands out growing delays: Min, then twice as long each time, never more than Max, each
// shortened by a random share of at most Jitter. The zero value is not usable: set Min and Max.
// It is not safe for concurrent use; each retry loop owns one.
type Backoff struct {
	// Min is the first delay (before jitter); Max caps every delay.
	Min, Max time.Duration
	// Jitter is the random share of each delay, 0 to 1; 0 means no randomness. Use DefaultJitter
	// unless a test needs exact delays.
	Jitter float64

	attempt int
	next    time.Duration // the delay Next returns before jitter; 0 before the first call
}

// New returns a backoff from min to max with DefaultJitter.
func New(min, max time.Duration) *Backoff {
	return &Backoff{Min: min, Max: max, Jitter: DefaultJitter}
}

// Next returns the delay before the next attempt and doubles the one after, up to Max.
func (b *Backoff) Next() time.Duration {
	floor := max(b.Min, time.Millisecond) // a zero Min would spin
	ceiling := max(b.Max, floor)
	if b.next <= 0 {
		b.next = floor
	}
	d := min(b.next, ceiling)
	b.next = min(2*b.next, ceiling)
	b.attempt++
	if j := min(max(b.Jitter, 0), 1); j > 0 {
		spread := time.Duration(float64(d) * j)
		if spread > 0 {
			d -= rand.N(spread + 1)
		}
	}
	return d
}

// Attempts is how many delays Next has handed out since the start or the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts over at Min: call it after an attempt succeeded (or a session ran long enough to
// count as healthy).
func (b *Backoff) Reset() {
	b.attempt = 0
	b.next = 0
}

// Wait sleeps for d, or until ctx ends; it returns ctx.Err() in that case.
func Wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
