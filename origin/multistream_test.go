package origin

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/peer"
)

// TestSeveralStreamsAtOnce publishes two streams into one origin at the same time: both make clean
// HLS, and each gets its own mesh root, both on the one --mesh socket: a viewer of each stream
// that knows only that address gets its own stream's chunks from the root.
func TestSeveralStreamsAtOnce(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)

	var wg sync.WaitGroup
	for _, name := range []string{"stage-a", "stage-b"} {
		wg.Go(func() {
			stderr, err := publish(context.Background(), o.rtsp+"/"+name, publishOpts{video: true, audio: true, seconds: 4})
			require.NoError(t, err, stderr)
		})
	}
	wg.Wait()
	for _, name := range []string{"stage-a", "stage-b"} {
		o.waitIdle(t, name)
		checkStream(t, o, name, true, true, 3)
	}
	require.Len(t, o.Streams(), 2)
	require.NotNil(t, o.MeshAddr())

	for _, name := range []string{"stage-a", "stage-b"} {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { pc.Close() })
		viewer, err := peer.New(peer.Config{
			Stream: name, OriginKey: o.PublicKey(), PacketConn: pc,
			Bootstrap: []string{o.MeshAddr().String()}, // no CDN: chunks can come only from the root
			Logger:    slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- viewer.Run(ctx) }()
		// The root pushes a new child the newest segments it holds.
		require.Eventually(t, func() bool { return viewer.Stats().SegmentsComplete > 0 }, 10*time.Second, 50*time.Millisecond,
			"%s: %+v", name, viewer.Stats())
		require.Zero(t, viewer.Stats().ChunksRejected)
		cancel()
		require.NoError(t, <-done)
	}
}
