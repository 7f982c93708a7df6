package loadtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFloorRelaysEveryChunkToEveryNode: the yardstick must itself deliver the stream, or its CPU
// figure compares the mesh with a tree that drops work.
func TestFloorRelaysEveryChunkToEveryNode(t *testing.T) {
	r, err := RunFloor(context.Background(), FloorConfig{Peers: 6, Fanout: 2, BitrateBps: 500_000, Duration: 3 * time.Second})
	require.NoError(t, err)
	t.Logf("floor: %+v", r)
	require.Positive(t, r.Chunks)
	require.Equal(t, 2, r.Depth) // 1, 2 below the source; 3..6 below them
	require.InDelta(t, 1.0, r.Delivered, 0.05)
	require.Positive(t, r.Cores)
}
