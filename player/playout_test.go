package player

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// These tests drive the buffer model with made-up arrival times, so they are exact.

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func TestPlayoutSegmentsArrivingInTimeNeverStall(t *testing.T) {
	p := newPlayout(250 * time.Millisecond)
	p.add(at(0), 1, t0.Add(-5*time.Second), true)
	for i := 1; i < 10; i++ {
		p.add(at(i*1000-100), 1, t0.Add(time.Duration(i-5)*time.Second), true)
	}
	p.finish(at(9500))
	require.Equal(t, stallState{}, p.stateAt(at(9500)))
	require.InDelta(t, 500, (p.buffered-p.playheadAt(at(9500)))*1000, 1e-6)
	for _, l := range p.latencies {
		require.InDelta(t, 5000, l, 1e-6, "played 5 s behind the date-time all along")
	}
	require.Len(t, p.latencies, 39) // every 250 ms from 0 to 9500 inclusive
}

func TestPlayoutLateSegmentIsOneStallUntilItArrives(t *testing.T) {
	p := newPlayout(250 * time.Millisecond)
	p.add(at(0), 2, t0, true)                      // plays 0..2 s
	p.add(at(100), 2, t0.Add(2*time.Second), true) // buffer to 4 s
	// Nothing until 5.5 s: dry at 4 s, so a 1.5 s stall.
	require.Equal(t, stallState{stalled: true, count: 1, total: time.Second, longest: time.Second}, p.stateAt(at(5000)))

	p.add(at(5500), 2, t0.Add(4*time.Second), true)
	require.Equal(t, stallState{count: 1, total: 1500 * time.Millisecond, longest: 1500 * time.Millisecond}, p.stateAt(at(6000)))
	require.InDelta(t, 4.5, p.playheadAt(at(6000)), 1e-9)

	lat, ok := p.latencyAt(at(6000))
	require.True(t, ok)
	require.Equal(t, 1500*time.Millisecond, lat, "the stall is added to the latency")

	// A second stall that is still under way at the end counts, up to the end.
	p.finish(at(8000)) // dry at 7.5 s
	require.Equal(t, stallState{stalled: true, count: 2, total: 2 * time.Second, longest: 1500 * time.Millisecond}, p.stateAt(at(8000)))
}

func TestPlayoutEndedStreamRunningDryIsNoStall(t *testing.T) {
	p := newPlayout(0)
	p.add(at(0), 1, time.Time{}, false)
	p.ended = true
	p.finish(at(3000))
	require.Zero(t, p.stalls)
	_, ok := p.latencyAt(at(500))
	require.False(t, ok, "no date-time, no latency")
}

func TestPlayoutLatencySamplesStayBounded(t *testing.T) {
	p := newPlayout(time.Millisecond)
	p.add(at(0), 100, t0, true)
	p.finish(at(50_000))
	require.Less(t, len(p.latencies), maxLatencySamples)
	require.Greater(t, len(p.latencies), maxLatencySamples/4)
	require.InDelta(t, 0, quantile(p.latencies, 0.5), 1e-6)
}

func TestQuantileNearestRank(t *testing.T) {
	s := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	require.Equal(t, 5.0, quantile(s, 0.5))
	require.Equal(t, 10.0, quantile(s, 0.95))
	require.Equal(t, 1.0, quantile(s, 0))
	require.Zero(t, quantile(nil, 0.5))
	require.Equal(t, []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}, s, "input untouched")
}

func TestLiveStartIsThreeTargetDurationsFromTheEnd(t *testing.T) {
	segs := func(durs ...float64) []segmentInfo {
		out := make([]segmentInfo, len(durs))
		for i, d := range durs {
			out[i] = segmentInfo{seq: uint64(100 + i), duration: d}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		pl    mediaPlaylist
		start int
	}{
		{"exact", mediaPlaylist{targetDuration: 2 * time.Second, segments: segs(2, 2, 2, 2, 2)}, 2},
		{"short segments", mediaPlaylist{targetDuration: time.Second, segments: segs(0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)}, 2},
		{"uneven", mediaPlaylist{targetDuration: 2 * time.Second, segments: segs(2, 1.9, 2, 1.8, 1.9)}, 1},
		{"too short", mediaPlaylist{targetDuration: 2 * time.Second, segments: segs(2, 2)}, 0},
		{"ended plays from the start", mediaPlaylist{targetDuration: 2 * time.Second, ended: true, segments: segs(2, 2, 2, 2, 2)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.start, tc.pl.liveStart())
		})
	}
}
