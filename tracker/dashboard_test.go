package tracker

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func getSwarm(t *testing.T, tr *Tracker, name string) (int, SwarmView, string) {
	t.Helper()
	resp, err := http.Get(tr.URL() + "/v1/swarm/" + name)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var sv SwarmView
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(b, &sv))
	}
	return resp.StatusCode, sv, string(b)
}

func TestSwarmViewShowsDepthsButNoPeerIDsOrAddresses(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	c, ctx := client(tr), ctxT(t)
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "live")))
	// A chain on stripe 1: peer 0 at depth 1, peer 1 under it, peer 2 under peer 1.
	for i := range 3 {
		a := testAnnounce("live", i)
		a.Depths = []int{1, i + 1} // shorter than the 4 stripes: the rest have no parent
		if i > 0 {
			a.Parents = []string{"", testAnnounce("live", i-1).PeerID}
		}
		_, err := c.Announce(ctx, a)
		require.NoError(t, err)
	}

	code, sv, raw := getSwarm(t, tr, "live")
	require.Equal(t, http.StatusOK, code, raw)
	for i := range 3 {
		require.NotContains(t, raw, testAnnounce("live", i).PeerID)
		require.NotContains(t, raw, testAnnounce("live", i).Addr)
	}
	require.NotContains(t, raw, "127.0.0.1", "neither peers' nor the origin's address without DashboardAddrs")
	require.Equal(t, 3, sv.SwarmSize)
	require.Equal(t, 4, sv.Stripes)
	require.Len(t, sv.Peers, 3)
	handles := map[string]bool{}
	for _, p := range sv.Peers {
		require.Len(t, p.Handle, 8)
		handles[p.Handle] = true
		require.Len(t, p.Depths, 4)
		require.Equal(t, []int{-1, -1}, p.Depths[2:])
	}
	require.Len(t, handles, 3)
	byDepth := map[int]SwarmPeer{}
	for _, p := range sv.Peers {
		byDepth[p.Depths[1]] = p
	}
	require.Equal(t, []string{"", "", "", ""}, byDepth[1].Parents, "depth 1: the origin is the parent")
	require.Equal(t, byDepth[1].Handle, byDepth[2].Parents[1], "the announced parent, by its handle")
	require.Equal(t, byDepth[2].Handle, byDepth[3].Parents[1])
	require.Empty(t, byDepth[3].Parents[0], "stripe 0 is at depth 1: fed by the origin")
	require.Equal(t, SwarmStripe{Stripe: 0, FromOrigin: 3, MaxDepth: 1}, sv.StripeStats[0])
	require.Equal(t, SwarmStripe{Stripe: 1, FromOrigin: 1, FromPeers: 2, MaxDepth: 3}, sv.StripeStats[1])
	require.Equal(t, SwarmStripe{Stripe: 2, Unattached: 3}, sv.StripeStats[2])
	require.InDelta(t, 2.0/6, sv.TreeOffload, 1e-9)

	// Handles stay the same between answers, so the dashboard can tell joins from leaves.
	_, again, _ := getSwarm(t, tr, "live")
	require.Equal(t, sv.Peers, again.Peers)

	code, _, raw = getSwarm(t, tr, "nope")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, raw, "unknown stream")
}

func TestSwarmViewShowsAddressesWhenTheOperatorAsks(t *testing.T) {
	cfg := testConfig(t)
	cfg.DashboardAddrs = true
	tr := startTracker(t, cfg)
	c, ctx := client(tr), ctxT(t)
	reg := testRegistration(t, "live")
	require.NoError(t, c.RegisterStream(ctx, reg))
	_, err := c.Announce(ctx, testAnnounce("live", 7))
	require.NoError(t, err)

	_, sv, raw := getSwarm(t, tr, "live")
	require.Equal(t, reg.QUICAddr, sv.OriginAddr)
	require.Len(t, sv.Peers, 1)
	require.Equal(t, testAnnounce("live", 7).Addr, sv.Peers[0].Addr)
	require.NotContains(t, raw, testAnnounce("live", 7).PeerID, "never the peer id")
}

func TestDashboardPageIsServed(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	resp, err := http.Get(tr.URL() + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.Contains(string(b), "dashboard.js"))
}
