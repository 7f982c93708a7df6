package peer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testrun"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// TestCrowdShareTheirStartSlices: viewers that join together, none holding the start, each fetch
// one slice of each start segment from the CDN and take the other slices from one another, so
// the crowd's start costs the CDN about one copy, not a copy per joiner.
func TestCrowdShareTheirStartSlices(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o, done := startBeyondTheRoot(t, ctx)

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

// TestLyingSliceIsRefusedAndTheStartFetchedWhole: a CDN that answers a joiner's slice request
// with another slice of the segment (valid, signed chunks, of the wrong stripe) is refused
// (ParseSlice: each chunk must be the slice's next), counted as rejected, and the joiner fetches
// its start whole instead: its start completes, byte for byte, and none of the lie is stored.
func TestLyingSliceIsRefusedAndTheStartFetchedWhole(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o, done := startBeyondTheRoot(t, ctx)

	// The CDN in front of the origin answers slice I of K with slice I+1 of K.
	target, err := url.Parse(o.http.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var lies atomic.Int32
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dir, file := path.Split(r.URL.Path)
		if s, ok := segwindow.ParseSliceFile(file); ok {
			r.URL.Path = dir + segwindow.Slice{Index: (s.Index + 1) % s.Count, Count: s.Count}.File()
			lies.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(cdn.Close)

	bootstrap := []string{o.root.Addr().String()}
	var joiners []*Node
	for range 2 {
		cfg := o.peerConfig(t, bootstrap...)
		cfg.OriginHTTP = cdn.URL
		cfg.StartNeighbourWait = time.Second
		n, err := New(cfg)
		require.NoError(t, err)
		joiners = append(joiners, n)
		bootstrap = append(bootstrap, n.Addr().String())
	}
	for _, n := range joiners {
		testrun.Background(t, "joiner "+n.PeerID(), 10*time.Second, n.Run)
	}
	for _, n := range joiners {
		require.Eventually(t, func() bool { return n.Stats().SegmentsComplete >= int64(joinSegments) }, 20*time.Second,
			20*time.Millisecond, "%+v", n.Stats())
	}
	require.Positive(t, lies.Load(), "no joiner asked for a slice: the test proves nothing")
	var rejected int64
	for _, n := range joiners {
		rejected += n.Stats().ChunksRejected
		// Its start to the first live segment, whole and the origin's own bytes.
		from := n.Window().Seqs()[0]
		require.Eventually(t, func() bool { return allComplete(n, from, firstLive+1) }, 10*time.Second, 20*time.Millisecond,
			"%+v", n.Stats())
		requireSegmentsIdentical(t, n, from, firstLive+1)
	}
	require.Positive(t, rejected, "a slice of the wrong stripe was taken")
	cancel()
	<-done
}

// firstLive is the first segment the root's mesh gets in startBeyondTheRoot.
const firstLive = 6

// startBeyondTheRoot plays a stream whose segments before firstLive never reach the root's
// mesh: only the CDN has them, as for a crowd beyond the origin's few seed children. Later
// segments reach the root as usual. It returns once the origin's window holds firstLive; done is
// closed when the play ends.
func startBeyondTheRoot(t *testing.T, ctx context.Context) (*testOrigin, <-chan struct{}) {
	t.Helper()
	o := newTestOrigin(t, 2)
	done := o.playAsync(ctx, 0, 60, func(seq uint64, _ int) bool { return seq < firstLive })
	require.Eventually(t, func() bool { n, ok := o.window.Newest(); return ok && n >= firstLive }, 10*time.Second, 5*time.Millisecond)
	return o, done
}
