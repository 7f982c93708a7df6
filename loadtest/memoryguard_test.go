package loadtest

import (
	"math"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeRuntime is the collector's CPU and the memory limit a memoryGuard sees.
type fakeRuntime struct {
	now   cpuSample
	limit int64
}

func (f *fakeRuntime) guard() *memoryGuard {
	return &memoryGuard{
		read: func() cpuSample { return f.now },
		setLimit: func(l int64) int64 {
			old := f.limit
			if l >= 0 {
				f.limit = l
			}
			return old
		},
	}
}

// second advances the fake by one second of two cores, gcShare of it in the collector.
func (f *fakeRuntime) second(gcShare float64) {
	f.now.total += 2
	f.now.gc += 2 * gcShare
}

func TestMemoryGuardRaisesTheLimitWhenTheCollectorThrashes(t *testing.T) {
	f := &fakeRuntime{limit: 1 << 30}
	g := f.guard()
	// A healthy run: the collector's few percent never move the limit.
	for range 20 {
		f.second(0.05)
		_, raised := g.check()
		require.Zero(t, raised)
	}
	require.EqualValues(t, 1<<30, f.limit)
	// One busy second is no trend.
	f.second(0.4)
	_, raised := g.check()
	require.Zero(t, raised)
	// Thrashing for the window: raised by half, once, then judged afresh.
	var raises []int64
	for range 2 * gcGuardWindow {
		f.second(0.4)
		if _, r := g.check(); r > 0 {
			raises = append(raises, r)
		}
	}
	require.Equal(t, []int64{3 << 29, 9 << 28}, raises)
	require.EqualValues(t, 9<<28, f.limit)
}

func TestMemoryGuardLeavesNoLimitAlone(t *testing.T) {
	for _, limit := range []int64{0, math.MaxInt64} {
		f := &fakeRuntime{limit: limit}
		g := f.guard()
		for range 10 {
			f.second(0.5)
			_, raised := g.check()
			require.Zero(t, raised)
		}
		require.Equal(t, limit, f.limit)
	}
}

func TestReadCPUReadsTheRuntime(t *testing.T) {
	runtime.GC() // the runtime updates its CPU estimates when a cycle ends
	s := readCPU()
	require.Positive(t, s.total)
	require.GreaterOrEqual(t, s.gc, 0.0)
	require.Less(t, s.gc, s.total)
}
