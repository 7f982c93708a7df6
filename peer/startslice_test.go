package peer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testrun"
)

// TestCrowdShareTheirStartSlices: viewers that join together, none holding the start, each fetch
// one slice of each start segment from the CDN and take the other slices from one another, so
// the crowd's start costs the CDN about one copy, not a copy per joiner.
func TestCrowdShareTheirStartSlices(t *testing.T) {
	o := newTestOrigin(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The root's mesh never gets the segments the crowd starts with: only the CDN has them, as
	// for a crowd beyond the origin's few seed children. Later segments reach the root as usual.
	const firstLive = 6
	done := o.playAsync(ctx, 0, 60, func(seq uint64, _ int) bool { return seq < firstLive })
	require.Eventually(t, func() bool { n, ok := o.window.Newest(); return ok && n >= firstLive }, 10*time.Second, 5*time.Millisecond)

	// One joiner per slice (the slice is picked by the random peer id: draw until each is
	// taken), each knowing the root and the joiners before it, so they all become neighbours.
	const stripes = 4
	joiners := make([]*Node, stripes)
	bootstrap := []string{o.root.Addr().String()}
	for taken := 0; taken < stripes; {
		cfg := o.peerConfig(t, bootstrap...)
		cfg.StartNeighbourWait = 2 * time.Second
		n, err := New(cfg)
		require.NoError(t, err)
		slice := int(n.id[0]) % stripes
		if joiners[slice] != nil {
			continue
		}
		joiners[slice] = n
		bootstrap = append(bootstrap, n.Addr().String())
		taken++
	}
	for _, n := range joiners {
		testrun.Background(t, "joiner "+n.PeerID(), 10*time.Second, n.Run)
	}
	for _, n := range joiners {
		require.Eventually(t, func() bool { return n.Stats().SegmentsComplete >= int64(joinSegments) }, 20*time.Second,
			20*time.Millisecond, "%+v", n.Stats())
	}
	var segBytes int64
	for i := range testChunks {
		segBytes += int64(len(segmentData(0, i)))
	}
	start := int64(joinSegments) * segBytes
	var fromCDN, slicesFetched int64
	for _, n := range joiners {
		s := n.Stats()
		fromCDN += s.BytesFromHTTPJoining
		t.Logf("joiner %s: %d bytes from the CDN while joining, %d from peers, %d requests", n.PeerID()[:8],
			s.BytesFromHTTPJoining, s.BytesFromPeers, s.Requests)
		if s.BytesFromHTTPJoining > 0 && s.BytesFromHTTPJoining < start {
			slicesFetched++
		}
	}
	// Each fetching its start whole would be stripes copies of it.
	require.Less(t, fromCDN, 2*start, "the crowd's start cost the CDN %.1f copies of it", float64(fromCDN)/float64(start))
	require.Positive(t, slicesFetched, "no joiner fetched a part of its start")
	cancel()
	<-done
}
