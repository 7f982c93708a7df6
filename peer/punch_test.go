package peer

import (
	"context"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker"
)

// punchSide is one peer of a punch test: its mesh Transport, a listener on it, and what the
// observers told it.
type punchSide struct {
	host     *simnet.Host
	tr       *quic.Transport
	accepted chan *quic.Conn
	refl     Reflexive
}

// punchPair discovers both sides' reflexive addresses through the tracker's observers and
// starts a listener on each, as two nodes would have before the tracker pairs them.
func punchPair(t *testing.T, kind simnet.NATKind) (a, b *punchSide) {
	t.Helper()
	n := simNetwork(t)
	observers := simObservers(t, n)
	srvTLS, _, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	side := func() *punchSide {
		h, err := n.NewHost(simnet.HostConfig{Latency: 20 * time.Millisecond, NAT: simnet.NAT{Kind: kind}})
		require.NoError(t, err)
		s := &punchSide{host: h, tr: transportOn(t, h), accepted: make(chan *quic.Conn, 1)}
		s.refl, err = DiscoverReflexive(context.Background(), s.tr, ReflexiveConfig{Observers: observers})
		require.NoError(t, err)
		ln, err := s.tr.Listen(srvTLS, meshQUICConfig())
		require.NoError(t, err)
		go func() {
			conn, err := ln.Accept(context.Background())
			if err == nil {
				s.accepted <- conn
			}
		}()
		return s
	}
	return side(), side()
}

func punchID() proto.TxID {
	var id proto.TxID
	_, _ = rand.Read(id[:])
	return id
}

// punch runs both sides of one attempt starting 50 ms from now: b punches, a punches and dials.
func punch(t *testing.T, a, b *punchSide, cfg PunchConfig) (*quic.Conn, time.Duration, error) {
	t.Helper()
	_, cliTLS, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	at := time.Now().Add(50 * time.Millisecond)
	id := punchID()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bDone := make(chan error, 1)
	go func() { bDone <- Punch(ctx, b.tr, PunchPlan{Target: a.refl.Addr, At: at, ID: id}, cfg) }()
	conn, err := PunchAndDial(ctx, a.tr, PunchPlan{Target: b.refl.Addr, At: at, ID: id}, cliTLS, meshQUICConfig(), cfg)
	took := time.Since(at)
	require.NoError(t, <-bDone)
	return conn, took, err
}

func TestPunchConnectsTwoConeNATs(t *testing.T) {
	a, b := punchPair(t, simnet.NATCone)
	require.Equal(t, proto.NATCone, a.refl.Kind)
	require.Equal(t, proto.NATCone, b.refl.Kind)

	conn, took, err := punch(t, a, b, PunchConfig{})
	require.NoError(t, err)
	t.Logf("punched and handshaken in %v (one-way delay 40 ms)", took)
	defer conn.CloseWithError(0, "")
	require.Less(t, took, time.Second)
	var in *quic.Conn
	select {
	case in = <-b.accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("b's listener never accepted the punched connection")
	}
	require.Equal(t, a.refl.Addr, in.RemoteAddr().(*net.UDPAddr).AddrPort(), "b sees a at the address the observers reported")

	// Data flows over the punched path.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str, err := conn.OpenStreamSync(ctx)
	require.NoError(t, err)
	_, err = str.Write([]byte("hello through two NATs"))
	require.NoError(t, err)
	require.NoError(t, str.Close())
	got, err := in.AcceptStream(ctx)
	require.NoError(t, err)
	msg, err := io.ReadAll(got)
	require.NoError(t, err)
	require.Equal(t, "hello through two NATs", string(msg))
}

func TestPunchBetweenSymmetricNATsFailsWithinTwoSeconds(t *testing.T) {
	a, b := punchPair(t, simnet.NATSymmetric)
	require.Equal(t, proto.NATSymmetric, a.refl.Kind)

	conn, took, err := punch(t, a, b, PunchConfig{})
	require.ErrorIs(t, err, ErrPunchFailed)
	require.Nil(t, conn)
	t.Logf("gave up after %v: %v", took, err)
	require.Less(t, took, 2500*time.Millisecond)
	require.Positive(t, a.host.Stats().DroppedFiltered+b.host.Stats().DroppedFiltered, "the NATs dropped the punches")
	select {
	case <-b.accepted:
		t.Fatal("a connection came up through symmetric NATs")
	default:
	}
}

// Without the other side's punch its NAT drops the dial: the punch is what opens it.
func TestDialWithoutTheOtherSidePunchingFails(t *testing.T) {
	a, b := punchPair(t, simnet.NATCone)
	_, cliTLS, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	_, err = PunchAndDial(context.Background(), a.tr, PunchPlan{Target: b.refl.Addr, At: time.Now(), ID: punchID()},
		cliTLS, meshQUICConfig(), PunchConfig{DialTimeout: 500 * time.Millisecond})
	require.ErrorIs(t, err, ErrPunchFailed)
	require.Positive(t, b.host.Stats().DroppedFiltered)
}

func TestPunchWithoutTargetFails(t *testing.T) {
	err := Punch(context.Background(), nil, PunchPlan{}, PunchConfig{})
	require.ErrorIs(t, err, ErrPunchFailed)
}

// The punch schedule is a timing rule: packets leave at At, At+Interval, ... and not before.
func TestPunchSendsOnSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := simnet.New(simnet.Config{Seed: 1})
		defer n.Close()
		from, err := n.NewHost(simnet.HostConfig{})
		require.NoError(t, err)
		to, err := n.NewHost(simnet.HostConfig{})
		require.NoError(t, err)
		tr := &quic.Transport{Conn: from}
		defer tr.Close()

		start := time.Now()
		plan := PunchPlan{Target: to.Addr(), At: start.Add(time.Second), ID: proto.TxID{7}}
		done := make(chan error, 1)
		go func() {
			done <- Punch(context.Background(), tr, plan, PunchConfig{Packets: 3, Interval: 100 * time.Millisecond})
		}()
		buf := make([]byte, 100)
		for i := range 3 {
			k, _, err := to.ReadFrom(buf)
			require.NoError(t, err)
			require.Equal(t, time.Second+time.Duration(i)*100*time.Millisecond, time.Since(start), "punch %d", i)
			m, _, err := proto.ParseBinding(buf[:k])
			require.NoError(t, err)
			require.Equal(t, &proto.Punch{ID: plan.ID}, m)
		}
		require.NoError(t, <-done)
		synctest.Wait()
		require.Equal(t, uint64(3), to.Stats().PacketsReceived)
	})
}

// TestPunchSurvivesSkewAndLossBetweenConeNATs runs many attempts on the bubble's clock, each
// with its own path delay, up to ±200 ms between the two sides' clocks and 2% loss on every
// access link, and reports the success rate and the time from the dialler's punch moment to a
// finished handshake.
func TestPunchSurvivesSkewAndLossBetweenConeNATs(t *testing.T) {
	const attempts = 20
	synctest.Test(t, func(t *testing.T) {
		n := simnet.New(simnet.Config{Seed: 3})
		defer n.Close()
		var conns []net.PacketConn
		for _, port := range []uint16{3478, 3479} {
			h, err := n.NewHost(simnet.HostConfig{Addr: netip.AddrPortFrom(netip.MustParseAddr("10.99.0.1"), port)})
			require.NoError(t, err)
			conns = append(conns, h)
		}
		obs, err := tracker.NewObserver(tracker.ObserverConfig{Conns: conns})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		obsDone := make(chan error, 1)
		go func() { obsDone <- obs.Run(ctx) }()
		observers := []net.Addr{conns[0].LocalAddr(), conns[1].LocalAddr()}
		srvTLS, cliTLS, err := meshTLS(testStream, nil)
		require.NoError(t, err)
		rng := mrand.New(mrand.NewPCG(3, 3))

		side := func(latency time.Duration) (*quic.Transport, Reflexive, *quic.Listener) {
			h, err := n.NewHost(simnet.HostConfig{Latency: latency, Loss: 0.02, NAT: simnet.NAT{Kind: simnet.NATCone}})
			require.NoError(t, err)
			tr := &quic.Transport{Conn: h}
			refl, err := DiscoverReflexive(ctx, tr, ReflexiveConfig{Observers: observers})
			require.NoError(t, err)
			require.Equal(t, proto.NATCone, refl.Kind)
			ln, err := tr.Listen(srvTLS, meshQUICConfig())
			require.NoError(t, err)
			return tr, refl, ln
		}
		var ok int
		var times []time.Duration
		for range attempts {
			aTr, aRefl, aLn := side(time.Duration(5+rng.IntN(45)) * time.Millisecond)
			bTr, bRefl, bLn := side(time.Duration(5+rng.IntN(45)) * time.Millisecond)
			at := time.Now().Add(100 * time.Millisecond)
			skew := time.Duration(rng.IntN(401)-200) * time.Millisecond
			id := punchID()
			go func() { _ = Punch(ctx, bTr, PunchPlan{Target: aRefl.Addr, At: at.Add(skew), ID: id}, PunchConfig{}) }()
			conn, err := PunchAndDial(ctx, aTr, PunchPlan{Target: bRefl.Addr, At: at, ID: id}, cliTLS, meshQUICConfig(), PunchConfig{})
			if err == nil {
				ok++
				times = append(times, time.Since(at))
				_ = conn.CloseWithError(0, "")
			} else {
				t.Logf("skew %v: %v", skew, err)
			}
			for _, c := range []io.Closer{aLn, bLn, aTr, bTr} {
				_ = c.Close()
			}
		}
		slices.Sort(times)
		t.Logf("%d/%d punches between cone NATs succeeded; time to handshake p50 %v, max %v",
			ok, attempts, times[len(times)/2], times[len(times)-1])
		require.GreaterOrEqual(t, ok, attempts*95/100)
		cancel()
		require.NoError(t, <-obsDone)
	})
}

// TestPunchOutcomeByNATPair is the table the tracker's punch coordination must follow: with
// the common home router (a filter per addr:port), a punch works only when neither side maps
// per destination; a symmetric NAT's peer reaches only public peers, by dialling them.
func TestPunchOutcomeByNATPair(t *testing.T) {
	const (
		public    = simnet.NATNone
		cone      = simnet.NATCone
		symmetric = simnet.NATSymmetric
	)
	for _, tc := range []struct {
		dialler, listener simnet.NATKind
		works             bool
	}{
		{cone, cone, true},
		{cone, public, true},
		{public, cone, true},
		{symmetric, public, true},
		{public, symmetric, false},
		{cone, symmetric, false},
		{symmetric, cone, false},
		{symmetric, symmetric, false},
	} {
		t.Run(tc.dialler.String()+" dials "+tc.listener.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := simnet.New(simnet.Config{Seed: 5})
				defer n.Close()
				var conns []net.PacketConn
				for _, port := range []uint16{3478, 3479} {
					h, err := n.NewHost(simnet.HostConfig{Addr: netip.AddrPortFrom(netip.MustParseAddr("10.99.0.1"), port)})
					require.NoError(t, err)
					conns = append(conns, h)
				}
				obs, err := tracker.NewObserver(tracker.ObserverConfig{Conns: conns})
				require.NoError(t, err)
				ctx, cancel := context.WithCancel(context.Background())
				obsDone := make(chan error, 1)
				go func() { obsDone <- obs.Run(ctx) }()
				defer func() { cancel(); require.NoError(t, <-obsDone) }()
				srvTLS, cliTLS, err := meshTLS(testStream, nil)
				require.NoError(t, err)

				side := func(kind simnet.NATKind) (*quic.Transport, Reflexive) {
					h, err := n.NewHost(simnet.HostConfig{Latency: 20 * time.Millisecond, NAT: simnet.NAT{Kind: kind}})
					require.NoError(t, err)
					tr := &quic.Transport{Conn: h}
					refl, err := DiscoverReflexive(ctx, tr, ReflexiveConfig{Observers: []net.Addr{conns[0].LocalAddr(), conns[1].LocalAddr()}})
					require.NoError(t, err)
					return tr, refl
				}
				aTr, aRefl := side(tc.dialler)
				defer aTr.Close()
				bTr, bRefl := side(tc.listener)
				defer bTr.Close()
				ln, err := bTr.Listen(srvTLS, meshQUICConfig())
				require.NoError(t, err)
				defer ln.Close()

				// What the simulated NATs allow is what the tracker's path choice assumes.
				path := tracker.ConnectPath(aRefl.Kind, bRefl.Kind)
				if tc.works {
					require.NotEqual(t, tracker.NoPath, path, "a working path the tracker would not use")
				}
				if path == tracker.ADials || path == tracker.PunchADials {
					require.True(t, tc.works, "the tracker would choose %s", path)
				}

				at := time.Now().Add(100 * time.Millisecond)
				id := punchID()
				go func() { _ = Punch(ctx, bTr, PunchPlan{Target: aRefl.Addr, At: at, ID: id}, PunchConfig{}) }()
				conn, err := PunchAndDial(ctx, aTr, PunchPlan{Target: bRefl.Addr, At: at, ID: id}, cliTLS, meshQUICConfig(), PunchConfig{})
				if !tc.works {
					require.ErrorIs(t, err, ErrPunchFailed)
					require.Equal(t, 2*time.Second, time.Since(at), "a failed punch costs exactly DialTimeout")
					return
				}
				require.NoError(t, err)
				t.Logf("handshake done %v after the punch moment", time.Since(at))
				_ = conn.CloseWithError(0, "")
			})
		})
	}
}
