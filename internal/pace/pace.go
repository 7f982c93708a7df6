// Package pace waits for a moment on the wall clock unless a context ends first: the loops that
// replay media in real time (the test card, the load test's source) and the headless player's
// pauses share it.
package pace

import (
	"context"
	"time"
)

// Until waits until due or until ctx ends, reusing timer (a stopped or fired timer the caller
// owns, so a loop that waits thousands of times a minute allocates none). It says whether the
// caller should go on: false once ctx ended. A due time already past returns at once.
func Until(ctx context.Context, timer *time.Timer, due time.Time) bool {
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer.Reset(d)
	select {
	case <-ctx.Done():
		timer.Stop()
		return false
	case <-timer.C:
		return true
	}
}

// Sleep waits for d or until ctx ends, and says whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
