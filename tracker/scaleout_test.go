package tracker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// neighbourIDs lists the peer ids of an answer.
func neighbourIDs(resp proto.AnnounceResponse) []string {
	ids := make([]string, 0, len(resp.Neighbours))
	for _, n := range resp.Neighbours {
		ids = append(ids, n.PeerID)
	}
	return ids
}

// Two trackers on a three-node JetStream cluster hold one swarm: a peer announced at A is handed
// out by B and the other way round, and the swarm outlives the cluster node that led its bucket.
func TestTwoTrackersOnAThreeNodeNATSClusterShareOneSwarmThatSurvivesANode(t *testing.T) {
	cluster := startNATSCluster(t, 3)
	trackerOn := func(node int) *Tracker {
		cfg := testConfig(t)
		cfg.NATSURL = cluster.url(node)
		cfg.Replicas = 3
		return startTracker(t, cfg)
	}
	a, b := trackerOn(0), trackerOn(1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	require.NoError(t, client(a).RegisterStream(ctx, testRegistration(t, "live")))
	require.Eventually(t, func() bool { _, err := client(b).Stream(ctx, "live", testKey); return err == nil },
		10*time.Second, 20*time.Millisecond, "B never saw the registration made at A")
	_, err := client(a).Announce(ctx, testAnnounce("live", 1))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := client(b).Announce(ctx, testAnnounce("live", 2))
		return err == nil && slices.Equal(neighbourIDs(resp), []string{testPeerID(1)})
	}, 10*time.Second, 20*time.Millisecond, "B never handed out the peer announced at A")
	require.Eventually(t, func() bool {
		resp, err := client(a).Announce(ctx, testAnnounce("live", 1))
		return err == nil && slices.Equal(neighbourIDs(resp), []string{testPeerID(2)})
	}, 10*time.Second, 20*time.Millisecond, "A never handed out the peer announced at B")

	// The node that leads the peers bucket's stream goes down; its replicas elect another.
	leader := -1
	for i, s := range cluster.servers {
		if s.JetStreamIsStreamLeader("$G", "KV_"+peersBucket) {
			leader = i
		}
	}
	require.GreaterOrEqual(t, leader, 0, "no leader of the peers bucket")
	cluster.stop(leader)
	t.Logf("stopped NATS node %d, the leader of the peers bucket", leader)

	// Both trackers keep answering from the same swarm, and a newcomer at either is seen by the
	// other: the peers announced before the failure are still there, and writes still replicate.
	start := time.Now()
	require.Eventually(t, func() bool {
		_, err1 := client(a).Announce(ctx, testAnnounce("live", 1))
		_, err2 := client(b).Announce(ctx, testAnnounce("live", 2))
		resp, err3 := client(b).Announce(ctx, testAnnounce("live", 3))
		return err1 == nil && err2 == nil && err3 == nil && len(resp.Neighbours) == 2
	}, 30*time.Second, 100*time.Millisecond, "the trackers did not recover from the node's loss")
	t.Logf("answers whole again %v after the node went down", time.Since(start).Round(time.Millisecond))
	require.Eventually(t, func() bool {
		resp, err := client(a).Announce(ctx, testAnnounce("live", 1))
		return err == nil && slices.Contains(neighbourIDs(resp), testPeerID(3)) && slices.Contains(neighbourIDs(resp), testPeerID(2))
	}, 10*time.Second, 50*time.Millisecond, "A never handed out the peer that joined at B after the failure")
	_, err = client(a).Announce(ctx, testAnnounce("live", 4))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := client(b).Announce(ctx, testAnnounce("live", 2))
		return err == nil && slices.Contains(neighbourIDs(resp), testPeerID(4))
	}, 10*time.Second, 50*time.Millisecond, "B never handed out the peer that joined at A after the failure")
	for _, tr := range []*Tracker{a, b} {
		st, err := client(tr).Stream(ctx, "live", testKey)
		require.NoError(t, err)
		require.Equal(t, 4, st.SwarmSize)
	}
}

// An announce that changes nothing a neighbour choice reads is answered without a write, until
// the entry is a third of the peer TTL old; then it is written again, so another replica, which
// ages the peer by its entry, keeps it for as long as it announces.
func TestUnchangedAnnouncesAreWrittenOnlyToRefreshTheEntry(t *testing.T) {
	cfgA := testConfig(t)
	cfgA.PeerTTL, cfgA.AnnounceInterval = 3*time.Second, 100*time.Millisecond
	a := startTracker(t, cfgA)
	cfgB := testConfig(t)
	cfgB.NATSURL, cfgB.PeerTTL, cfgB.AnnounceInterval = a.NATSURL(), cfgA.PeerTTL, cfgA.AnnounceInterval
	b := startTracker(t, cfgB)
	ctx := ctxT(t)
	require.NoError(t, client(a).RegisterStream(ctx, testRegistration(t, "live")))
	require.Eventually(t, func() bool { _, err := client(b).Stream(ctx, "live", testKey); return err == nil }, 5*time.Second, 10*time.Millisecond)
	writes := func() float64 { return counterValue(t, a.metrics.kvWrites) }

	req := testAnnounce("live", 1)
	_, err := client(a).Announce(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 1.0, writes())
	req.Quality.BufferMs = 1234 // a playback report alone is not worth a write
	_, err = client(a).Announce(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 1.0, writes())
	req.FreeSlots++ // free slots are
	_, err = client(a).Announce(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 2.0, writes())

	// B lists the peer once A's write has gone round (it follows A's answer), and then throughout
	// two peer TTLs of unchanged announces at A.
	require.Eventually(t, func() bool {
		st, err := client(b).Stream(ctx, "live", testKey)
		return err == nil && st.SwarmSize == 1
	}, 5*time.Second, 10*time.Millisecond, "B never listed the peer announced at A")
	announces := 0
	for end := time.Now().Add(2 * cfgA.PeerTTL); time.Now().Before(end); announces++ {
		_, err := client(a).Announce(ctx, req)
		require.NoError(t, err)
		st, err := client(b).Stream(ctx, "live", testKey)
		require.NoError(t, err)
		require.Equal(t, 1, st.SwarmSize, "B lost the peer after %d announces", announces)
		time.Sleep(cfgA.AnnounceInterval)
	}
	w := writes() - 2
	t.Logf("%d unchanged announces in %v, %.0f writes", announces, 2*cfgA.PeerTTL, w)
	require.Less(t, w, float64(announces)/2)
	require.GreaterOrEqual(t, w, 3.0, "the entry was not refreshed")
}
