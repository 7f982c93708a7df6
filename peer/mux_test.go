package peer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRootsOfSeveralStreamsShareOneSocket runs the roots of two streams on one Mux: each viewer
// reaches its own stream's root at the shared address, and a viewer of a stream the Mux does not
// carry is refused.
func TestRootsOfSeveralStreamsShareOneSocket(t *testing.T) {
	key := testIdentity(t)
	mux, err := NewMux(MuxConfig{PacketConn: loopbackUDP(t), Identity: key})
	require.NoError(t, err)
	t.Cleanup(func() { mux.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go mux.Run(ctx)

	lnA, err := mux.Listen(testStream)
	require.NoError(t, err)
	_, err = mux.Listen(testStream)
	require.ErrorIs(t, err, ErrStreamTaken)
	o := newTestOriginKeyed(t, key, 2, func(c *Config) { c.PacketConn, c.Listener = nil, lnA })
	require.Equal(t, mux.Addr().String(), o.root.Addr().String())

	// The second stream's root: nothing to play, but its viewers must land on it, not on cam1's.
	lnB, err := mux.Listen("cam2")
	require.NoError(t, err)
	cfgB := testConfig(t, o.pub)
	cfgB.Stream, cfgB.Root, cfgB.PacketConn, cfgB.Listener, cfgB.HTTPListener = "cam2", true, nil, lnB, nil
	cfgB.Identity = key
	rootB := startNode(t, cfgB)

	viewerA := startNode(t, o.peerConfig(t, mux.Addr().String()))
	viewerBCfg := testConfig(t, o.pub)
	viewerBCfg.Stream, viewerBCfg.Bootstrap = "cam2", []string{mux.Addr().String()}
	viewerB := startNode(t, viewerBCfg)
	strayCfg := testConfig(t, o.pub)
	strayCfg.Stream, strayCfg.Bootstrap = "cam3", []string{mux.Addr().String()}
	stray := startNode(t, strayCfg)

	<-o.playAsync(ctx, 0, 6, nil)
	require.Eventually(t, func() bool { return allComplete(viewerA, 2, 6) }, 5*time.Second, 20*time.Millisecond,
		"%+v", viewerA.Stats())
	requireSegmentsIdentical(t, viewerA, 2, 6)
	require.Positive(t, viewerA.Stats().BytesFromOrigin-viewerA.Stats().BytesFromHTTP, "chunks came from the root over QUIC")
	require.Eventually(t, func() bool { return viewerB.Stats().Neighbours == 1 && rootB.Stats().Neighbours == 1 },
		5*time.Second, 20*time.Millisecond, "the cam2 viewer reached the cam2 root")
	require.Equal(t, 1, o.root.Stats().Neighbours, "cam1's root saw only its own viewer")
	require.Zero(t, stray.Stats().Neighbours)
	require.Positive(t, stray.Stats().DialsFailed, "no stream cam3 here")
}
