package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDelaysDoubleUpToTheCapWithoutJitter(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: 10 * time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	require.Equal(t, []time.Duration{
		time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second,
	}, got)
	require.Equal(t, 6, b.Attempts())

	b.Reset()
	require.Equal(t, time.Second, b.Next(), "after a success the delays start over")
	require.Equal(t, 1, b.Attempts())
}

func TestJitterOnlyShortensEachDelayByAtMostItsShare(t *testing.T) {
	b := New(time.Second, 8*time.Second)
	distinct := map[time.Duration]bool{}
	for i := range 200 {
		b.Reset()
		for step := range 5 {
			d := b.Next()
			nominal := min(time.Second<<step, 8*time.Second)
			require.LessOrEqual(t, d, nominal, "round %d step %d", i, step)
			require.GreaterOrEqual(t, d, nominal/2, "round %d step %d", i, step)
			if step == 0 {
				distinct[d] = true
			}
		}
	}
	require.Greater(t, len(distinct), 10, "jitter spreads the first delay of many clients")
}

// A retry loop built on Next and Wait, run in virtual time: it waits exactly the delays handed out
// and stops as soon as its context ends, even in the middle of a long wait.
func TestRetryLoopWaitsTheDelaysAndStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		b := &Backoff{Min: time.Second, Max: 4 * time.Second}
		start := time.Now()
		var attemptsAt []time.Duration
		var err error
		for {
			attemptsAt = append(attemptsAt, time.Since(start))
			if err = Wait(ctx, b.Next()); err != nil {
				break
			}
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second,
			15 * time.Second, 19 * time.Second}, attemptsAt)
		require.Equal(t, 20*time.Second, time.Since(start), "Wait returned the moment the context ended")
	})
}

func TestZeroMinStillWaits(t *testing.T) {
	b := &Backoff{}
	require.Equal(t, time.Millisecond, b.Next(), "a zero Min would spin; it is a millisecond")
}
