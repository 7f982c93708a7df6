package demo

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/player"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// TestLowLatencyPlaybackFromTheOriginAndAPeer plays ll.m3u8 with the headless player in
// low-latency mode from the real origin (the test card published over RTSP, parts cut by the
// origin's segmenter) and from a peer (the same parts derived from the chunks the mesh carried):
// both must play clean, part by part, with a live latency under 3 s.
func TestLowLatencyPlaybackFromTheOriginAndAPeer(t *testing.T) {
	d := startDemo(t, 1, 1)
	urls := map[string]string{
		"origin": "http://" + d.Origin().HTTPAddr().String() + segwindow.LLPlaylistPath(Stream),
		"peer":   strings.TrimSuffix(d.Peers()[0].HLSURL(), segwindow.PlaylistFile) + segwindow.LLPlaylistFile,
	}
	for name, u := range urls {
		require.Eventually(t, func() bool {
			resp, err := http.Get(u)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond, "%s never served %s", name, u)
	}

	// And the origin's ll.m3u8 played as plain HLS: whole fMP4 segments, checked as well.
	const plain = "origin --no-ll"
	var wg sync.WaitGroup
	sums := map[string]player.Summary{}
	var mu sync.Mutex
	for name, u := range map[string]string{"origin": urls["origin"], "peer": urls["peer"], plain: urls["origin"]} {
		p, err := player.New(player.Config{URL: u, Duration: 8 * time.Second, NoLowLatency: name == plain})
		require.NoError(t, err)
		wg.Go(func() {
			_ = p.Run(context.Background())
			mu.Lock()
			sums[name] = p.Summary()
			mu.Unlock()
		})
	}
	wg.Wait()
	for name, sum := range sums {
		t.Logf("%s: mode %s, startup %.0f ms, latency p50 %.0f ms p95 %.0f ms, %d parts (%d preloaded), %d stalls (%.0f ms), errors %d %v",
			name, sum.Mode, sum.StartupMs, sum.LiveLatencyMs.P50, sum.LiveLatencyMs.P95, sum.Parts, sum.PreloadedParts,
			sum.Stalls, sum.StallMs, sum.Errors, sum.ErrorMessages)
		require.Zero(t, sum.Errors, "%s: %v", name, sum.ErrorMessages)
		if name == plain {
			require.Equal(t, player.ModeHLS, sum.Mode)
			require.Positive(t, sum.Segments)
			require.Zero(t, sum.Parts)
			continue
		}
		require.Equal(t, player.ModeLowLatency, sum.Mode, name)
		require.Greater(t, sum.Parts, 10, name)
		require.Positive(t, sum.PreloadedParts, name)
		require.Positive(t, sum.LiveLatencyMs.Samples, name)
		require.Less(t, sum.LiveLatencyMs.P50, 3000.0, name)
	}
}
