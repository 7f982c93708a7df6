package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

func TestChunksTheSwarmNeverGotComeFromTheCDN(t *testing.T) {
	o := newTestOrigin(t, 2)
	var peers []*Node
	addrs := []string{o.root.Addr().String()}
	for range 3 {
		n := startNode(t, o.peerConfig(t, addrs...))
		peers = append(peers, n)
		addrs = append(addrs, n.Addr().String())
	}
	// The root never gets these chunks, so no peer can push or repair them: among them the last
	// chunk of a segment, which alone says how long the segment is.
	lost := map[[2]uint64]bool{{6, testChunks - 1}: true, {7, 1}: true, {7, 2}: true, {8, 0}: true}
	skip := func(seq uint64, index int) bool { return lost[[2]uint64{seq, uint64(index)}] }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const segments = 12
	<-o.playAsync(ctx, 0, segments, skip)
	var fromHTTP int64
	for _, n := range peers {
		require.Eventually(t, func() bool { return allComplete(n, 5, segments) }, 5*time.Second, 20*time.Millisecond,
			"%+v", n.Stats())
		requireSegmentsIdentical(t, n, 5, segments)
		s := n.Stats()
		require.Zero(t, s.SegmentsAbandoned)
		fromHTTP += s.BytesFromHTTP
		// A peer may get a lost chunk over HTTP or from a neighbour that fetched it already.
		t.Logf("peer %s: %d bytes over HTTP, %d segments with fallback", n.PeerID()[:8], s.BytesFromHTTP, s.SegmentsWithFallback)
	}
	require.Positive(t, fromHTTP, "the lost chunks exist only at the CDN")
	require.Zero(t, o.root.Stats().BytesFromHTTP, "the root never falls back")
}

// fakeTracker answers announces with a fixed swarm and records what peers said.
type fakeTracker struct {
	mu        sync.Mutex
	resp      proto.AnnounceResponse
	announces []proto.AnnounceRequest
}

func (f *fakeTracker) Announce(_ context.Context, r proto.AnnounceRequest) (proto.AnnounceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announces = append(f.announces, r)
	return f.resp, nil
}

func (f *fakeTracker) last() (proto.AnnounceRequest, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.announces) == 0 {
		return proto.AnnounceRequest{}, 0
	}
	return f.announces[len(f.announces)-1], len(f.announces)
}

func TestTrackerGivesTheOriginAndNeighbours(t *testing.T) {
	o := newTestOrigin(t, 2)
	helper := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	tr := &fakeTracker{resp: proto.AnnounceResponse{
		Neighbours:         []proto.PeerInfo{{PeerID: helper.PeerID(), Addr: helper.Addr().String()}},
		Registration:       o.registration(o.key),
		Stripes:            4,
		AnnounceIntervalMs: 100,
	}}
	cfg := testConfig(t, o.pub) // no bootstrap, no origin: all from the tracker
	cfg.Announcer = tr
	n := startNode(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const segments = 8
	<-o.playAsync(ctx, 0, segments, nil)
	require.Eventually(t, func() bool { return allComplete(n, segments-3, segments) }, 5*time.Second, 20*time.Millisecond,
		"%+v", n.Stats())
	require.Eventually(t, func() bool { return n.Stats().Neighbours == 2 }, 3*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		r, count := tr.last()
		return count >= 3 && r.PeerID == n.PeerID() && r.Stream == testStream && r.Addr == n.Addr().String() &&
			len(r.Depths) == 4 && r.Depths[0] >= 1 && r.UploadBps > 0 && r.Validate() == nil
	}, 3*time.Second, 20*time.Millisecond, "announces carry the node's current state")
}

func TestLocalEndpointServesStatsHealthAndMetrics(t *testing.T) {
	o := newTestOrigin(t, 2)
	cfg := o.peerConfig(t, o.root.Addr().String())
	n := startNode(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	<-o.playAsync(ctx, 0, 4, nil)
	require.Eventually(t, func() bool { return allComplete(n, 1, 4) }, 5*time.Second, 20*time.Millisecond)
	base := "http://" + cfg.HTTPListener.Addr().String()

	code, body := httpGetBody(t, base+"/stats")
	require.Equal(t, 200, code)
	var s map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &s))
	for _, k := range []string{"bytes_from_peers", "bytes_from_origin", "bytes_to_peers", "neighbours", "parents",
		"children", "segments_complete", "segments_with_fallback", "chunks_rejected", "depths", "peer_id"} {
		require.Contains(t, s, k)
	}
	require.Equal(t, n.PeerID(), s["peer_id"])
	require.Positive(t, s["bytes_from_origin"].(float64))

	code, _ = httpGetBody(t, base+"/healthz")
	require.Equal(t, 200, code)
	code, body = httpGetBody(t, base+"/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, "crowdsurf_peer_chunk_bytes_received_total")
	require.Contains(t, body, "crowdsurf_peer_segments_complete_total")

	code, _ = httpGetBody(t, base+"/live/"+testStream+"/3.ts")
	require.Equal(t, 200, code)
	code, body = httpGetBody(t, base+"/live/other/index.m3u8")
	require.Equal(t, 404, code)
	require.Contains(t, body, `"error"`)
}

// countingCDN sits in front of the test origin's HTTP endpoint, counts whole-segment requests
// and, when corrupt is set, flips a byte in the middle of every whole-segment body.
type countingCDN struct {
	next    http.Handler
	corrupt bool
	whole   atomic.Int64
}

func (c *countingCDN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/"+segwindow.AllChunks) {
		c.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		c.whole.Add(1)
		if c.corrupt {
			body[len(body)/2] ^= 0x40
		}
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func TestWholeSegmentsComeFromTheCDNInOneRequest(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		t.Run(fmt.Sprintf("corrupt=%v", corrupt), func(t *testing.T) {
			o := newTestOrigin(t, 2)
			cdn := &countingCDN{next: o.http.Config.Handler, corrupt: corrupt}
			srv := httptest.NewServer(cdn)
			t.Cleanup(srv.Close)
			cfg := o.peerConfig(t) // no neighbours: everything comes from the CDN
			cfg.OriginHTTP = srv.URL
			n := startNode(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const segments = 8
			<-o.playAsync(ctx, 0, segments, nil)
			require.Eventually(t, func() bool { return allComplete(n, segments-4, segments) }, 5*time.Second, 20*time.Millisecond,
				"%+v", n.Stats())
			requireSegmentsIdentical(t, n, segments-4, segments)
			require.Positive(t, cdn.whole.Load(), "segments the node held nothing of came in one request")
			if corrupt {
				// A bundle with a bad chunk is dropped whole; the chunks come one by one instead.
				require.Positive(t, n.Stats().ChunksRejected)
			} else {
				require.Zero(t, n.Stats().ChunksRejected)
			}
		})
	}
}

// TestTrackerCannotRedirectViewersToAThirdParty: the origin's addresses come from the registration
// the origin signed with the watch link's key. A tracker answer naming other addresses, in the
// unsigned fields or in a registration signed by someone else, is not followed: the viewer never
// sends a request there.
func TestTrackerCannotRedirectViewersToAThirdParty(t *testing.T) {
	o := newTestOrigin(t, 2)
	var thirdParty atomic.Int32
	victimSite := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { thirdParty.Add(1) }))
	t.Cleanup(victimSite.Close)
	forged := o.registration(testIdentity(t)) // another key: signed, but not by the watch link's
	forged.HTTPURL = victimSite.URL
	tr := &fakeTracker{resp: proto.AnnounceResponse{
		Origin:             proto.OriginInfo{QUICAddr: "127.0.0.1:9", HTTPURL: victimSite.URL},
		Registration:       forged,
		Stripes:            4,
		AnnounceIntervalMs: 100,
	}}
	cfg := testConfig(t, o.pub)
	cfg.Announcer = tr
	n := startNode(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	<-o.playAsync(ctx, 0, 4, nil)
	require.Eventually(t, func() bool { _, k := tr.last(); return k >= 3 }, 3*time.Second, 20*time.Millisecond)
	require.Zero(t, thirdParty.Load(), "a viewer followed an origin address nobody signed")
	require.Zero(t, n.Stats().CDNRequests)
}
