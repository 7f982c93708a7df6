package loadtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMemoryLimitFollowsTheViewersWindows pins what the limit is for: 100 viewers of the
// default stream get less than the 6 MB per peer the lean-peer target allows (the process's
// binary pages come on top), and the limit grows with what each viewer must hold live (its
// window grows with the bit rate and the segment duration) so a bigger stream is not squeezed
// into a small stream's memory, where the collector would run without pause.
func TestMemoryLimitFollowsTheViewersWindows(t *testing.T) {
	base := MemoryLimit(Config{Peers: 100})
	require.Less(t, base, int64(100*5_500_000), "100 peers at 1 Mbit/s")
	require.Greater(t, base, int64(100*4_000_000), "the live memory of 100 peers (about 3 MB each) needs headroom")

	tests := []struct {
		name string
		cfg  Config
	}{
		{"twice the peers", Config{Peers: 200}},
		{"twice the bit rate", Config{Peers: 100, BitrateBps: 2_000_000}},
		{"longer segments", Config{Peers: 100, Segment: 4 * time.Second}},
		{"low-latency players (every peer holds fMP4 parts too)", Config{Peers: 100, LL: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Greater(t, MemoryLimit(tt.cfg), base)
		})
	}
	window := MemoryLimit(Config{Peers: 100, BitrateBps: 8_000_000}) - MemoryLimit(Config{Peers: 100, BitrateBps: 7_000_000})
	require.GreaterOrEqual(t, window, int64(100*6*2*1_000_000/8), "each more Mbit/s adds at least six 2 s segments to each of the 100 windows")

	require.Zero(t, MemoryLimit(Config{Peers: -1}), "a config the load test refuses gets no limit")
}
