package origin

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSeveralStreamsAtOnce publishes two streams into one origin at the same time: both make clean
// HLS, and each gets its own mesh root (the first on the --mesh socket, the next on a port of its own).
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
}
