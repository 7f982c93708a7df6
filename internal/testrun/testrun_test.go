package testrun

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recorder is a testing.TB that keeps the cleanups and failures instead of acting on them.
type recorder struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Cleanup(f func())               { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, _ ...any) { r.errors = append(r.errors, format) }

func (r *recorder) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestBackgroundStopsRunAndChecksItsError(t *testing.T) {
	started := make(chan struct{})
	clean := &recorder{TB: t}
	Background(clean, "ok", time.Second, func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return nil
	})
	<-started
	clean.end()
	require.Empty(t, clean.errors)

	failing := &recorder{TB: t}
	Background(failing, "failing", time.Second, func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("broken")
	})
	failing.end()
	require.Len(t, failing.errors, 1, "an error from Run fails the test")

	stuck := &recorder{TB: t}
	release := make(chan struct{})
	defer close(release)
	Background(stuck, "stuck", 50*time.Millisecond, func(context.Context) error {
		<-release
		return nil
	})
	stuck.end()
	require.Len(t, stuck.errors, 1, "a Run that ignores cancel fails the test")
}
