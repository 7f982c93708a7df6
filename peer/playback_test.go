package peer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPlaybackBufferGrowsWithEachSegmentAndRestartsWhenDry(t *testing.T) {
	var p playback
	_, _, ok := p.state()
	require.False(t, ok, "no player yet")
	t0 := time.Unix(1000, 0)
	p.served(10, 2*time.Second, t0)
	p.served(11, 2*time.Second, t0.Add(100*time.Millisecond))
	next, end, ok := p.state()
	require.True(t, ok)
	require.Equal(t, uint64(12), next)
	require.Equal(t, t0.Add(4*time.Second), end, "two segments fetched at once: four seconds of buffer")

	p.served(11, 2*time.Second, t0.Add(time.Second)) // a retry of an old segment changes nothing
	_, end, _ = p.state()
	require.Equal(t, t0.Add(4*time.Second), end)

	// The buffer ran dry at t0+4s; the next segment comes at t0+5s and plays from then.
	p.served(12, 2*time.Second, t0.Add(5*time.Second))
	next, end, _ = p.state()
	require.Equal(t, uint64(13), next)
	require.Equal(t, t0.Add(7*time.Second), end)
}

func TestLocalPlayerFetchesAreTracked(t *testing.T) {
	o := newTestOrigin(t, 2)
	n := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	<-o.playAsync(ctx, 0, 4, nil)
	require.Eventually(t, func() bool { return allComplete(n, 1, 4) }, 5*time.Second, 20*time.Millisecond)
	before := time.Now()
	code, _ := httpGetBody(t, n.HLSURL()[:len(n.HLSURL())-len("index.m3u8")]+"2.ts")
	require.Equal(t, 200, code)
	// The server reports a segment once its body is sent, which may be just after the client
	// has read it.
	var next uint64
	var end time.Time
	require.Eventually(t, func() bool {
		var ok bool
		next, end, ok = n.playback.state()
		return ok
	}, 2*time.Second, 5*time.Millisecond)
	require.Equal(t, uint64(3), next)
	require.WithinDuration(t, before.Add(testSegDur), end, time.Second)
}
