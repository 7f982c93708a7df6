package peer

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/stretchr/testify/require"
)

// TestYoungStreamHasNoPhantomSegmentBeforeItsFirst pins that a peer which joins before a stream
// starts (at a media sequence that is not 0) never takes the seqs before the first one for missing:
// it does not fetch, abandon or list a gap for them.
func TestYoungStreamHasNoPhantomSegmentBeforeItsFirst(t *testing.T) {
	o := newTestOrigin(t, 2)
	n := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	require.Eventually(t, func() bool { return n.Stats().Neighbours >= 1 }, 5*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const first, end = 100, 106
	<-o.playAsync(ctx, first, end, nil)
	require.Eventually(t, func() bool { return allComplete(n, end-3, end) }, 5*time.Second, 20*time.Millisecond, "%+v", n.Stats())
	// The abandon rule waits three target durations after the swarm moved on: give it that.
	time.Sleep(2 * testSegDur) //nolint:forbidigo // waiting for something that must NOT happen
	s := n.Stats()
	require.Zero(t, s.SegmentsAbandoned, "%+v", s)
	for seq := uint64(first - 4); seq < first; seq++ {
		_, ok := n.Window().State(seq)
		require.False(t, ok, "seq %d before the stream's first is in the window", seq)
	}
	code, body := httpGetBody(t, n.HLSURL())
	require.Equal(t, 200, code)
	require.NotContains(t, body, "DISCONTINUITY", "playlist:\n%s", body)
	require.False(t, strings.Contains(body, segURI(first-1)), "playlist:\n%s", body)
}

// TestFirstPlaylistRequestWaitsForTheFirstSegment pins the local endpoint's WaitForFirst: a player
// that opens the peer's URL before any segment is complete gets the playlist once one is, not a
// 404 it would give up on.
func TestFirstPlaylistRequestWaitsForTheFirstSegment(t *testing.T) {
	o := newTestOrigin(t, 2)
	n := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	type answer struct {
		code int
		body string
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Get(n.HLSURL())
		if err != nil {
			got <- answer{code: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- answer{code: resp.StatusCode, body: string(b)}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := o.playAsync(ctx, 0, 4, nil)
	select {
	case a := <-got:
		require.Equal(t, http.StatusOK, a.code, a.body)
		require.True(t, strings.HasPrefix(a.body, "#EXTM3U"), a.body)
	case <-time.After(8 * time.Second):
		t.Fatal("the first playlist request got no answer")
	}
	<-done
}

// TestJoinerTakesItsStartFromNeighboursThatHoldIt: with StartNeighbourWait a joiner whose
// neighbours hold its start segments asks them for the chunks and gets them all from them,
// none from the CDN; the wait is long enough that the CDN would have sent them otherwise.
func TestJoinerTakesItsStartFromNeighboursThatHoldIt(t *testing.T) {
	o := newTestOrigin(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := o.playAsync(ctx, 0, 60, nil)
	root := o.root.Addr().String()
	var holders []string
	for range 3 {
		h := startNode(t, o.peerConfig(t, root))
		require.Eventually(t, func() bool { return h.Stats().SegmentsComplete >= 3 }, 10*time.Second, 20*time.Millisecond)
		holders = append(holders, h.Addr().String())
	}
	cfg := o.peerConfig(t, append([]string{root}, holders...)...)
	cfg.MaxNeighbours = 4
	cfg.StartNeighbourWait = time.Minute // the CDN only for what no neighbour holds
	j := startNode(t, cfg)
	require.Eventually(t, func() bool { return j.Stats().SegmentsComplete >= int64(joinSegments) }, 20*time.Second, 20*time.Millisecond,
		"%+v", j.Stats())
	s := j.Stats()
	require.Zero(t, s.BytesFromHTTPJoining, "start segments the neighbours held came from the CDN: %+v", s)
	require.Positive(t, s.Requests, "it asked its neighbours: %+v", s)
	require.Positive(t, s.BytesFromPeers, "%+v", s)
	cancel()
	<-done
}

// TestJoinerNobodyCanHelpTakesItsStartFromTheCDNAtOnce: the same wait costs a joiner nothing
// when no viewer holds its start segments (a crowd arriving together): what only the origin
// holds comes from the CDN at once, not after the wait.
func TestJoinerNobodyCanHelpTakesItsStartFromTheCDNAtOnce(t *testing.T) {
	o := newTestOrigin(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The root's mesh gets nothing: the CDN alone has the stream (no viewer, no tree can help).
	done := o.playAsync(ctx, 0, 60, func(uint64, int) bool { return true })
	cfg := o.peerConfig(t, o.root.Addr().String())
	cfg.StartNeighbourWait = time.Minute
	j := startNode(t, cfg)
	require.Eventually(t, func() bool { return j.Stats().SegmentsComplete >= int64(joinSegments) }, 20*time.Second, 20*time.Millisecond,
		"the start segments came long before the minute's wait: %+v", j.Stats())
	require.Positive(t, j.Stats().BytesFromHTTPJoining, "%+v", j.Stats())
	cancel()
	<-done
}

func TestStartNeighbourWaitOutOfRangeIsAConfigError(t *testing.T) {
	o := newTestOrigin(t, 2)
	for _, wait := range []time.Duration{-time.Second, time.Minute + time.Second} {
		cfg := o.peerConfig(t)
		cfg.StartNeighbourWait = wait
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrConfig, "wait %v", wait)
	}
}

// TestJoinerAsksOneHolderPerStartChunkThenTheCDN: with StartNeighbourWait each start chunk is asked
// of one holder, which has the wait to deliver it; when it does not (its uplink full, or a liar),
// the CDN sends the chunk, while the joiner is still joining, and no second holder is asked.
func TestJoinerAsksOneHolderPerStartChunkThenTheCDN(t *testing.T) {
	o := newTestOrigin(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Only the CDN has the stream: the root's mesh gets nothing, so the silent holders are the
	// only neighbours that claim the start.
	done := o.playAsync(ctx, 0, 60, func(uint64, int) bool { return true })
	require.Eventually(t, func() bool { n, ok := o.window.Newest(); return ok && n >= 3 }, 10*time.Second, 20*time.Millisecond)
	holds := func() []proto.Message {
		var ranges []proto.ChunkRange
		for _, seq := range o.window.Seqs() {
			if st, ok := o.window.State(seq); ok && st.Complete {
				ranges = append(ranges, proto.ChunkRange{Seq: seq, First: 0, Count: testChunks})
			}
		}
		return haveMessages(ranges)
	}
	silent := []*liar{startLiar(t, []uint8{1, 1, 1, 1}, holds), startLiar(t, []uint8{1, 1, 1, 1}, holds)}
	cfg := o.peerConfig(t, o.root.Addr().String(), silent[0].addr, silent[1].addr)
	// Long enough that asking the second holder after the first's 300 ms (as before) shows.
	cfg.StartNeighbourWait = 1500 * time.Millisecond
	newest, _ := o.window.Newest()
	j := startNode(t, cfg)
	require.Eventually(t, func() bool { return j.Stats().SegmentsComplete >= int64(joinSegments) }, 20*time.Second, 20*time.Millisecond,
		"%+v", j.Stats())
	s := j.Stats()
	// Bytes fetched while joining: the CDN stepped in within the join (joinWindow, 3 s).
	require.Positive(t, s.BytesFromHTTPJoining, "the start waited past the join for holders that never answer: %+v", s)
	asked := 0
	for seq := newest - joinSegments; seq <= newest; seq++ {
		for i := range testChunks {
			key := chunkKey{seq, uint32(i)}
			n := silent[0].requested(key) + silent[1].requested(key)
			require.LessOrEqual(t, n, 1, "start chunk %v asked of %d holders", key, n)
			asked += n
		}
	}
	require.Positive(t, asked, "the holders were asked first: %+v", s)
	cancel()
	<-done
}
