package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker"
)

// runBackground runs fn until the returned stop is called; stop waits for fn to return.
func runBackground(t *testing.T, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && ctx.Err() == nil {
					t.Errorf("component stopped with %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("component did not stop within 20 s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func startTracker(t *testing.T, addr, dataDir string) (*tracker.Tracker, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	tr, err := tracker.New(tracker.Config{HTTPListener: ln, DataDir: dataDir, RateLimit: rate.Inf})
	require.NoError(t, err)
	return tr, runBackground(t, tr.Run)
}

func swarmSize(t *testing.T, trackerURL string) int {
	resp, err := http.Get(trackerURL + "/v1/streams/" + Stream)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1
	}
	var st proto.StreamStatus
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st.SwarmSize
}

// TestTrackerRestartWithDataKeepsTheSwarmPlaying stops the tracker mid-stream and starts it again
// on the same address and --data directory: the peers keep playing meanwhile (the mesh does not
// need the tracker once it is built) and announce themselves to the new tracker.
func TestTrackerRestartWithDataKeepsTheSwarmPlaying(t *testing.T) {
	dataDir := t.TempDir()
	tr, stopTracker := startTracker(t, "127.0.0.1:0", dataDir)
	trackerAddr, trackerURL := tr.Addr().String(), tr.URL()

	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	o, err := origin.New(origin.Config{
		RTSPAddr: "127.0.0.1:0", UDPRTPAddr: "-", HTTPAddr: "127.0.0.1:0", MeshAddr: "127.0.0.1:0",
		Key: key, SegmentDuration: time.Second, TrackerURL: trackerURL, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	runBackground(t, o.Run)
	pub, err := testcard.New(testcard.Config{URL: "rtsp://" + o.RTSPAddr().String() + "/" + Stream})
	require.NoError(t, err)
	runBackground(t, pub.Run)

	var peers []*peer.Node
	for range 3 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { pc.Close() })
		n, err := peer.New(peer.Config{
			Stream: Stream, OriginKey: key.Public().(ed25519.PublicKey), PacketConn: pc,
			TrackerURL: trackerURL, TargetDuration: time.Second,
		})
		require.NoError(t, err)
		runBackground(t, n.Run)
		peers = append(peers, n)
	}

	require.Eventually(t, func() bool { return swarmSize(t, trackerURL) == 3 }, 30*time.Second, 100*time.Millisecond,
		"the tracker should see all three peers")
	newest := func(n *peer.Node) uint64 { s, _ := n.Window().NewestComplete(); return s }
	require.Eventually(t, func() bool {
		for _, n := range peers {
			if _, ok := n.Window().NewestComplete(); !ok {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "every peer should complete a segment")

	stopTracker()
	before := make([]uint64, len(peers))
	for i, n := range peers {
		before[i] = newest(n)
	}
	require.Eventually(t, func() bool {
		for i, n := range peers {
			if newest(n) < before[i]+3 {
				return false
			}
		}
		return true
	}, 20*time.Second, 100*time.Millisecond, "peers should keep completing segments while the tracker is down")

	tr2, _ := startTracker(t, trackerAddr, dataDir)
	require.Equal(t, trackerURL, tr2.URL())
	<-tr2.Ready()
	// The stream's registration survived in --data (the origin also re-registers every 5 s).
	require.GreaterOrEqual(t, swarmSize(t, trackerURL), 0, "the registered stream should survive the restart")
	require.Eventually(t, func() bool { return swarmSize(t, trackerURL) == 3 }, 30*time.Second, 100*time.Millisecond,
		"the peers should announce themselves to the restarted tracker")
	mid := make([]uint64, len(peers))
	for i, n := range peers {
		mid[i] = newest(n)
	}
	require.Eventually(t, func() bool {
		for i, n := range peers {
			if newest(n) < mid[i]+2 {
				return false
			}
		}
		return true
	}, 20*time.Second, 100*time.Millisecond, "peers should still be playing after the restart")
	for i, n := range peers {
		require.Zero(t, n.Stats().SegmentsAbandoned, "peer %d lost a segment", i)
	}
}
