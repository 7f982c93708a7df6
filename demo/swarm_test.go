package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testrun"
	"github.com/crowdsurf/crowdsurf/peer"
)

// startDemo runs a demo on loopback with every port chosen by the kernel.
func startDemo(t *testing.T, peers, seedCopies int) *Demo {
	t.Helper()
	var logs io.Writer = io.Discard
	if testing.Verbose() {
		logs = os.Stderr
	}
	d, err := New(Config{
		OriginHTTP:  "127.0.0.1:0",
		OriginRTSP:  "127.0.0.1:0",
		OriginMesh:  "127.0.0.1:0",
		TrackerHTTP: "127.0.0.1:0",
		PeerHTTP:    "127.0.0.1:0",
		Peers:       peers,
		SeedCopies:  seedCopies,
		Segment:     time.Second,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	require.NoError(t, err)
	testrun.Background(t, "demo", 20*time.Second, d.Run)
	return d
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, body)
	return body
}

// listedSegments returns the segment URIs of a media playlist.
func listedSegments(playlist []byte) []string {
	var segs []string
	for _, line := range strings.Split(string(playlist), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			segs = append(segs, line)
		}
	}
	return segs
}

func totals(peers []*peer.Node) (fromPeers, fromOrigin, fromHTTP int64) {
	for _, p := range peers {
		s := p.Stats()
		fromPeers += s.BytesFromPeers
		fromOrigin += s.BytesFromOrigin
		fromHTTP += s.BytesFromHTTP
	}
	return
}

// TestSwarmOfTwelveCarriesTheStream is the swarm test: the real origin with the test card
// published over RTSP, a tracker with embedded NATS, 12 peers over loopback UDP, seed copies 2.
func TestSwarmOfTwelveCarriesTheStream(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatal("ffmpeg not found: install it (make deps) — this test decodes every peer's HLS with it")
	}
	d := startDemo(t, 12, 2)
	peers := d.Peers()

	// Warm-up: every peer lists at least three segments.
	require.Eventually(t, func() bool {
		for _, p := range peers {
			pl, ok := p.Window().Playlist()
			if !ok || len(listedSegments(pl)) < 3 {
				return false
			}
		}
		return true
	}, 40*time.Second, 200*time.Millisecond, "every peer should list three segments")

	// Steady state: offload over a measured interval (DESIGN.md: bytes peers received that did not
	// come from the origin; QUIC from the origin and HTTP fallback both count as origin).
	p0, o0, _ := totals(peers)
	time.Sleep(8 * time.Second) // the measuring interval itself, not a wait for a condition
	p1, o1, h1 := totals(peers)
	fromPeers, fromOrigin := p1-p0, o1-o0
	require.Positive(t, fromPeers+fromOrigin, "peers received nothing in 8 s")
	offload := float64(fromPeers) / float64(fromPeers+fromOrigin)
	t.Logf("steady-state offload %.3f (from peers %d B, from origin %d B, of which HTTP fallback since start %d B)", offload, fromPeers, fromOrigin, h1)
	require.GreaterOrEqual(t, offload, 0.80, "12 peers with seed copies 2 should get >= 80%% of their bytes from each other")

	// Every peer's segments are byte-identical to the origin's. The peers' holdings are taken
	// first and each segment is fetched from the origin once, right after: fetching it again per
	// peer lets the origin's window slide past the oldest one on a slow (-race, loaded) machine.
	originBase := "http://" + d.Origin().HTTPAddr().String() + "/live/" + Stream + "/"
	held := make([]map[string][]byte, len(peers))
	for i, p := range peers {
		pl, ok := p.Window().Playlist()
		require.True(t, ok)
		held[i] = map[string][]byte{}
		for _, uri := range listedSegments(pl) {
			var seq uint64
			_, err := fmt.Sscanf(uri, "%d.ts", &seq)
			require.NoError(t, err)
			data, _, ok := p.Window().Segment(seq)
			require.True(t, ok, "peer %d lists %s but does not hold it", i, uri)
			held[i][uri] = data
		}
	}
	fromOriginByURI := map[string][]byte{}
	for i := range peers {
		for uri, data := range held[i] {
			if _, ok := fromOriginByURI[uri]; !ok {
				fromOriginByURI[uri] = get(t, originBase+uri)
			}
			require.True(t, bytes.Equal(fromOriginByURI[uri], data), "peer %d segment %s differs from the origin's", i, uri)
		}
	}

	// Every peer's local playlist decodes clean with ffmpeg (stderr at -v error must stay empty).
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, p := range peers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// -t bounds a live playlist: decode 4 s from the live window.
			cmd := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-v", "error", "-i", p.HLSURL(), "-t", "4", "-f", "null", "-")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err != nil || stderr.Len() > 0 {
				t.Errorf("peer %d: ffmpeg decoding %s: %v: %s", i, p.HLSURL(), err, stderr.String())
			}
		})
	}
	wg.Wait()
}
