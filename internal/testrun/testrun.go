// Package testrun runs a component in the background of a test: the Config/New/Run(ctx) shape
// every crowdsurf component has.
package testrun

import (
	"context"
	"testing"
	"time"
)

// Background runs run in a goroutine until the test ends. At cleanup it cancels run's context
// and requires run to return nil within wait; what names the component in a failure.
func Background(t testing.TB, what string, wait time.Duration, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run returned %v", what, err)
			}
		case <-time.After(wait):
			t.Errorf("%s: Run did not return within %v of cancel", what, wait)
		}
	})
}
