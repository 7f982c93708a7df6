package peer

import (
	"context"
	"crypto/ed25519"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
	"github.com/crowdsurf/crowdsurf/internal/testrun"
	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker"
)

// natSwarm is a tracker with two observers on a simulated network, and a test origin whose root
// sits on a public simulated host; viewers join behind NATs of the given kinds. The tracker's
// HTTP API is on loopback (the control plane), the mesh on the simulated network.
type natSwarm struct {
	net    *simnet.Network
	origin *testOrigin
	url    string
}

func newNATSwarm(t *testing.T, seedCopies int) *natSwarm {
	t.Helper()
	n := simNetwork(t)
	var obs []net.PacketConn
	for _, port := range []uint16{3478, 3479} {
		h, err := n.NewHost(simnet.HostConfig{Addr: netip.AddrPortFrom(netip.MustParseAddr("10.99.0.1"), port), Latency: 5 * time.Millisecond})
		require.NoError(t, err)
		obs = append(obs, h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tr, err := tracker.New(tracker.Config{
		HTTPListener:     ln,
		AnnounceInterval: time.Second,
		RateLimit:        rate.Inf,
		RateBurst:        1,
		AllowForeignAddr: true, // simulated addresses, announced from 127.0.0.1
		MaxPeersPerHost:  -1,
		ObserverConns:    obs,
	})
	require.NoError(t, err)
	testrun.Background(t, "tracker", 10*time.Second, tr.Run)
	<-tr.Ready()

	root := simHost(t, n, simnet.NATNone)
	o := newTestOriginWith(t, seedCopies, func(c *Config) { c.PacketConn = root })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	client := &trackerclient.Client{BaseURL: tr.URL()}
	require.NoError(t, client.RegisterStream(ctx, *o.registration(o.key)))
	return &natSwarm{net: n, origin: o, url: tr.URL()}
}

// viewer joins a viewer behind a NAT of kind; it learns the observers from the tracker.
func (s *natSwarm) viewer(t *testing.T, kind simnet.NATKind) *Node {
	t.Helper()
	cfg := testConfig(t, s.origin.pub)
	cfg.PacketConn = simHost(t, s.net, kind)
	cfg.TrackerURL = s.url
	return startNode(t, cfg)
}

// Two viewers behind cone NATs find each other through the tracker: it tells each its
// observers, they learn their reflexive addresses and announce them, and the tracker schedules
// a punch when it hands one to the other. They connect through both NATs and feed each other.
func TestTrackerCoordinatedPunchBetweenConeNATs(t *testing.T) {
	s := newNATSwarm(t, 1)
	a := s.viewer(t, simnet.NATCone)
	b := s.viewer(t, simnet.NATCone)
	ctx, cancel := context.WithCancel(t.Context())
	done := s.origin.playAsync(ctx, 0, 200, nil)
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool {
		sa, sb := a.Stats(), b.Stats()
		return sa.BytesFromPeers > 0 && sb.BytesFromPeers > 0 &&
			sa.Links.Punched > 0 && sb.Links.Punched > 0
	}, 30*time.Second, 100*time.Millisecond, "a: %+v\nb: %+v", a.Stats(), b.Stats())
	sa, sb := a.Stats(), b.Stats()
	require.Equal(t, "cone", sa.NATKind.String())
	require.Equal(t, "cone", sb.NATKind.String())
	require.NotEmpty(t, sa.ReflexiveAddr)
	require.Positive(t, sa.PunchesSucceeded+sb.PunchesSucceeded, "one of them dialled through a punch")
	require.Positive(t, sa.PunchOrders+sb.PunchOrders, "the other was ordered to punch")
	t.Logf("a: punches %d/%d, orders %d, links %+v; b: punches %d/%d, orders %d, links %+v",
		sa.PunchesSucceeded, sa.PunchesAttempted, sa.PunchOrders, sa.Links,
		sb.PunchesSucceeded, sb.PunchesAttempted, sb.PunchOrders, sb.Links)
}

// Two viewers behind symmetric NATs are never asked to punch with each other (it cannot work),
// nor handed to each other; each dials only the public origin and plays from it.
func TestSymmetricNATsNeverPunchEachOther(t *testing.T) {
	s := newNATSwarm(t, 2)
	a := s.viewer(t, simnet.NATSymmetric)
	b := s.viewer(t, simnet.NATSymmetric)
	ctx, cancel := context.WithCancel(t.Context())
	done := s.origin.playAsync(ctx, 0, 40, nil)
	defer func() { cancel(); <-done }()

	require.Eventually(t, func() bool {
		sa, sb := a.Stats(), b.Stats()
		return sa.NATKind.String() == "symmetric" && sb.NATKind.String() == "symmetric" &&
			sa.SegmentsComplete >= 6 && sb.SegmentsComplete >= 6
	}, 30*time.Second, 100*time.Millisecond, "a: %+v\nb: %+v", a.Stats(), b.Stats())
	for _, n := range []*Node{a, b} {
		st := n.Stats()
		require.Zero(t, st.PunchesAttempted)
		require.Zero(t, st.PunchOrders)
		require.Zero(t, st.Links.Punched)
		require.Zero(t, st.BytesFromPeers, "no link between two symmetric NATs")
		require.Equal(t, 1, st.Neighbours, "the origin only")
		require.Equal(t, 1, st.DialledLinks.OutgoingOnly)
	}
}

// A PUNCH_REQUEST makes a node send punches towards an address of the sender's choice, so only
// its observers may order one: the same datagram from anyone else is ignored. An order obeyed
// once is not obeyed again when it comes a second time (the tracker repeats it in the answer).
func TestPunchOrdersOnlyFromObservers(t *testing.T) {
	observer, stranger, target := loopbackUDP(t), loopbackUDP(t), loopbackUDP(t)
	cfg := testConfig(t, testIdentity(t).Public().(ed25519.PublicKey))
	cfg.Observers = []net.Addr{observer.LocalAddr()}
	n := startNode(t, cfg)

	order := (&proto.PunchRequest{ID: punchID(), DelayMs: 10, Target: target.LocalAddr().(*net.UDPAddr).AddrPort()}).Append(nil)
	_, err := stranger.WriteTo(order, n.Addr())
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond) // nothing to await: the stranger's order must have no effect
	require.Zero(t, n.Stats().PunchOrders, "an order from a stranger is ignored")

	for range 2 {
		_, err = observer.WriteTo(order, n.Addr())
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return n.Stats().PunchOrders == 1 }, 5*time.Second, 10*time.Millisecond)
	buf := make([]byte, 1500)
	require.NoError(t, target.SetReadDeadline(time.Now().Add(5*time.Second)))
	size, from, err := target.ReadFrom(buf)
	require.NoError(t, err)
	m, _, err := proto.ParseBinding(buf[:size])
	require.NoError(t, err)
	require.IsType(t, &proto.Punch{}, m)
	require.Equal(t, n.Addr().String(), from.String(), "the punch leaves from the mesh socket")
	time.Sleep(300 * time.Millisecond)
	require.EqualValues(t, 1, n.Stats().PunchOrders, "the repeated order is not obeyed twice")
}
