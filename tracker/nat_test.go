package tracker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestObserverAddrsFor(t *testing.T) {
	for _, tc := range []struct {
		spec, http string
		want       []string
		err        bool
	}{
		{"auto", ":7070", []string{":7070", ":7071"}, false},
		{"auto", "192.0.2.1:80", []string{"192.0.2.1:80", "192.0.2.1:81"}, false},
		{"-", ":7070", nil, false},
		{"", ":7070", nil, false},
		{":3478, :3479", ":7070", []string{":3478", ":3479"}, false},
		{"3478", ":7070", nil, true},
		{"auto", ":65535", nil, true},
	} {
		got, err := ObserverAddrsFor(tc.spec, tc.http)
		if tc.err {
			require.ErrorIs(t, err, ErrBadConfig, tc.spec)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, got, tc.spec)
	}
}

// The tracker hands an asker only the candidates it can reach, and schedules a punch (once per
// pair within pairEvery) for cone pairs; the candidate's half waits for its next answer.
func TestPlanFiltersByConnectPathAndSchedulesConePunches(t *testing.T) {
	c, err := newNATCoord(nil, nil, prometheus.NewRegistry())
	require.NoError(t, err)
	cone := proto.PeerState{PeerID: "a", ReflexiveAddr: "198.51.100.1:5000", NATKind: proto.NATCone}
	sym := proto.PeerState{PeerID: "s", ReflexiveAddr: "198.51.100.2:5000", NATKind: proto.NATSymmetric}
	info := func(id string, kind proto.NATKind, reflexive bool) proto.PeerInfo {
		rec := proto.PeerRecord{PeerState: proto.PeerState{PeerID: id, Addr: "172.16.0.9:4433", NATKind: kind}}
		if reflexive {
			rec.ReflexiveAddr = "203.0.113.9:6000"
		}
		return candidateInfo(rec)
	}
	cands := func() []proto.PeerInfo {
		return []proto.PeerInfo{
			info("pub", proto.NATPublic, true), info("cone", proto.NATCone, true),
			info("sym", proto.NATSymmetric, true), info("unk", proto.NATUnknown, true), info("legacy", proto.NATUnknown, false),
		}
	}
	now := time.Now()
	got := c.plan(cone, cands(), 8, now)
	require.Len(t, got, 2)
	require.Equal(t, "pub", got[0].PeerID)
	require.Equal(t, "172.16.0.9:4433", got[0].Addr, "a public peer is dialled at its own address")
	require.Equal(t, "cone", got[1].PeerID)
	require.Equal(t, "203.0.113.9:6000", got[1].Addr, "a NATed peer is dialled at its reflexive address")
	require.NotNil(t, got[1].Punch)
	orders := c.ordersFor("cone", now.Add(100*time.Millisecond))
	require.Len(t, orders, 1)
	require.Equal(t, got[1].Punch.ID, orders[0].ID)
	require.Equal(t, cone.ReflexiveAddr, orders[0].Target)
	require.EqualValues(t, 200, orders[0].DelayMs)

	again := c.plan(cone, cands(), 8, now.Add(time.Second))
	require.Len(t, again, 1, "the cone pair is not scheduled again within pairEvery")

	got = c.plan(sym, cands(), 8, now)
	require.Len(t, got, 1, "a symmetric peer gets public peers only")
	require.Equal(t, "pub", got[0].PeerID)
	require.Empty(t, c.ordersFor("sym", now))
}

func TestForeignReflexiveAddrRefused(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.7")
	st := proto.PeerState{ReflexiveAddr: "198.51.100.1:5000"}
	require.ErrorIs(t, checkReflexive(&st, src, false), errForeignReflexive)
	require.NoError(t, checkReflexive(&st, src, true))
	st.ReflexiveAddr = "192.0.2.7:5000"
	require.NoError(t, checkReflexive(&st, src, false))
}
