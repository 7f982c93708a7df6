package peer

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSwarmDeliversEverySegmentMostlyPeerToPeer(t *testing.T) {
	o := newTestOrigin(t, 2)
	var peers []*Node
	addrs := []string{o.root.Addr().String()}
	for range 6 {
		cfg := o.peerConfig(t, addrs...)
		cfg.Keep = 10 // every segment from the joins to the end stays to be checked
		n := startNode(t, cfg)
		peers = append(peers, n)
		addrs = append(addrs, n.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const segments = 14
	done := o.playAsync(ctx, 0, segments, nil)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("origin did not finish playing")
	}
	// The newest segments may still be travelling; then every peer holds all of them.
	const from = 5 // joining takes a moment; the window keeps 10 segments (Keep)
	for _, n := range peers {
		require.Eventually(t, func() bool { return allComplete(n, from, segments) }, 5*time.Second, 20*time.Millisecond,
			"peer %s: %+v", n.PeerID()[:8], n.Stats())
		requireSegmentsIdentical(t, n, from, segments)
	}

	var fromPeers, fromOrigin, fromHTTP int64
	for _, n := range peers {
		s := n.Stats()
		fromPeers += s.BytesFromPeers
		fromOrigin += s.BytesFromOrigin
		fromHTTP += s.BytesFromHTTP
		require.Equal(t, int64(0), s.ChunksRejected)
		require.Eventually(t, func() bool { return n.Stats().Parents == 4 }, 3*time.Second, 20*time.Millisecond,
			"peer %s has a parent on every stripe: %+v", n.PeerID()[:8], n.Stats())
		code, body := httpGetBody(t, n.HLSURL())
		require.Equal(t, 200, code)
		for seq := uint64(segments - 4); seq < segments; seq++ {
			require.Contains(t, body, segURI(seq), "peer playlist:\n%s", body)
		}
		require.True(t, strings.HasPrefix(body, "#EXTM3U"))
	}
	t.Logf("bytes from peers %d, from origin %d (http %d), root sent %d", fromPeers, fromOrigin, fromHTTP, o.root.Stats().BytesToPeers)
	require.Greater(t, fromPeers, fromOrigin, "most bytes must come from peers, not the origin")
	// The root seeds two copies per stripe; six viewers need six, so it sent well under half.
	require.Less(t, o.root.Stats().BytesToPeers, 4*int64(segments)*int64(len(expectedSegment(0))))
	require.LessOrEqual(t, o.root.Stats().Children, 2*4)
}

func TestPeerWithoutNeighboursPlaysFromHTTPFallback(t *testing.T) {
	o := newTestOrigin(t, 2)
	n := startNode(t, o.peerConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const segments = 10
	<-o.playAsync(ctx, 0, segments, nil)
	require.Eventually(t, func() bool { return allComplete(n, segments-5, segments) }, 5*time.Second, 20*time.Millisecond,
		"%+v", n.Stats())
	requireSegmentsIdentical(t, n, segments-5, segments)
	s := n.Stats()
	require.Zero(t, s.BytesFromPeers)
	require.Positive(t, s.BytesFromHTTP)
	require.Equal(t, s.BytesFromHTTP, s.BytesFromOrigin)
	require.Positive(t, s.SegmentsWithFallback)
	code, body := httpGetBody(t, n.HLSURL())
	require.Equal(t, 200, code)
	require.Contains(t, body, segURI(segments-1))
}

func TestChildrenReparentWhenParentDiesMidStream(t *testing.T) {
	o := newTestOrigin(t, 1) // one seed per stripe: most peers hang below other peers
	type member struct {
		n    *Node
		stop func()
	}
	var members []member
	addrs := []string{o.root.Addr().String()}
	for range 5 {
		cfg := o.peerConfig(t, addrs...)
		cfg.Keep = 10 // every segment from the death to the end stays to be checked
		n, stop := startStoppableNode(t, cfg)
		members = append(members, member{n, stop})
		addrs = append(addrs, n.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const segments = 16
	done := o.playAsync(ctx, 0, segments, nil)

	// Wait until the trees have formed and some peer forwards to others, late enough that the
	// segments around the death are still in every window when we check them.
	var victim int
	require.Eventually(t, func() bool {
		if newest, ok := o.window.Newest(); !ok || newest < 6 {
			return false
		}
		for i, m := range members {
			s := m.n.Stats()
			if s.Children > 0 && s.Parents == 4 {
				victim = i
				return true
			}
		}
		return false
	}, 8*time.Second, 20*time.Millisecond)
	killedAt := time.Now()
	// Die without a goodbye: the socket goes away and children must notice the silence.
	members[victim].n.cfg.PacketConn.Close()
	members[victim].stop()
	newestAtDeath, _ := o.window.Newest()

	var survivors []*Node
	for i, m := range members {
		if i != victim {
			survivors = append(survivors, m.n)
		}
	}
	victimID := members[victim].n.PeerID()
	for _, n := range survivors {
		require.Eventually(t, func() bool {
			s := n.Stats()
			return s.Parents == 4 && !slices.Contains(s.ParentIDs, victimID)
		}, 3*time.Second, 20*time.Millisecond, "peer %s did not re-parent: %+v", n.PeerID()[:8], n.Stats())
	}
	t.Logf("all survivors re-parented %v after the death", time.Since(killedAt))
	<-done
	for _, n := range survivors {
		require.Eventually(t, func() bool { return allComplete(n, newestAtDeath, segments) }, 5*time.Second, 20*time.Millisecond,
			"peer %s: %+v", n.PeerID()[:8], n.Stats())
		requireSegmentsIdentical(t, n, newestAtDeath, segments)
		require.Zero(t, n.Stats().SegmentsAbandoned)
	}
}

func TestLateJoinerGetsTheNewestSegmentsFromNeighbours(t *testing.T) {
	o := newTestOrigin(t, 2)
	addrs := []string{o.root.Addr().String()}
	for range 3 {
		n := startNode(t, o.peerConfig(t, addrs...))
		addrs = append(addrs, n.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const segments = 16
	done := o.playAsync(ctx, 0, segments, nil)
	require.Eventually(t, func() bool {
		newest, ok := o.window.Newest()
		return ok && newest >= 8
	}, 10*time.Second, 10*time.Millisecond)

	joinedAt := time.Now()
	joiner := startNode(t, o.peerConfig(t, addrs...))
	var edge uint64
	require.Eventually(t, func() bool {
		// The origin's newest complete segment at join time, and the two before it.
		edge, _ = o.window.NewestComplete()
		c, ok := joiner.Window().NewestComplete()
		return ok && c >= edge && edge >= 2 && allComplete(joiner, edge-2, edge+1)
	}, 5*time.Second, 5*time.Millisecond, "%+v", joiner.Stats())
	t.Logf("joiner held the newest 3 complete segments %v after it started", time.Since(joinedAt))
	requireSegmentsIdentical(t, joiner, edge-2, edge+1)
	code, body := httpGetBody(t, joiner.HLSURL())
	require.Equal(t, 200, code)
	require.Contains(t, body, segURI(edge))
	<-done
	s := joiner.Stats()
	require.Greater(t, s.BytesFromPeers, s.BytesFromOrigin, "%+v", s)
}
