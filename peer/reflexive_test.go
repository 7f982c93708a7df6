package peer

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker"
)

// runObserver serves binding requests on conns until the test ends.
func runObserver(t *testing.T, conns ...net.PacketConn) []net.Addr {
	t.Helper()
	o, err := tracker.NewObserver(tracker.ObserverConfig{Conns: conns})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	addrs := make([]net.Addr, len(conns))
	for i, c := range conns {
		addrs[i] = c.LocalAddr()
	}
	return addrs
}

func transportOn(t *testing.T, pc net.PacketConn) *quic.Transport {
	t.Helper()
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestDiscoverReflexiveOnLoopbackIsPublic(t *testing.T) {
	observers := runObserver(t, loopbackUDP(t), loopbackUDP(t))
	for _, bind := range []string{"127.0.0.1:0", ":0"} {
		t.Run(bind, func(t *testing.T) {
			pc, err := net.ListenPacket("udp", bind)
			require.NoError(t, err)
			tr := transportOn(t, pc)
			res, err := DiscoverReflexive(context.Background(), tr, ReflexiveConfig{Observers: observers})
			require.NoError(t, err)
			require.Equal(t, proto.NATPublic, res.Kind)
			require.Equal(t, pc.LocalAddr().(*net.UDPAddr).Port, int(res.Addr.Port()))
			require.Equal(t, netip.MustParseAddr("127.0.0.1"), res.Addr.Addr())
			require.Equal(t, []netip.AddrPort{res.Addr, res.Addr}, res.Observed)
		})
	}
}

// simObservers puts the tracker's two observer ports on one public simnet IP.
func simObservers(t *testing.T, n *simnet.Network) []net.Addr {
	t.Helper()
	ip := netip.MustParseAddr("10.99.0.1")
	var conns []net.PacketConn
	for _, port := range []uint16{3478, 3479} {
		h, err := n.NewHost(simnet.HostConfig{Addr: netip.AddrPortFrom(ip, port), Latency: 10 * time.Millisecond})
		require.NoError(t, err)
		conns = append(conns, h)
	}
	return runObserver(t, conns...)
}

func simNetwork(t *testing.T) *simnet.Network {
	t.Helper()
	n := simnet.New(simnet.Config{Seed: 9})
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func simHost(t *testing.T, n *simnet.Network, kind simnet.NATKind) *simnet.Host {
	t.Helper()
	h, err := n.NewHost(simnet.HostConfig{Latency: 10 * time.Millisecond, NAT: simnet.NAT{Kind: kind}})
	require.NoError(t, err)
	return h
}

func TestDiscoverReflexiveTellsNATKindsApart(t *testing.T) {
	for _, tc := range []struct {
		nat  simnet.NATKind
		want proto.NATKind
	}{
		{simnet.NATNone, proto.NATPublic},
		{simnet.NATCone, proto.NATCone},
		{simnet.NATSymmetric, proto.NATSymmetric},
	} {
		t.Run(tc.nat.String(), func(t *testing.T) {
			n := simNetwork(t)
			observers := simObservers(t, n)
			h := simHost(t, n, tc.nat)
			res, err := DiscoverReflexive(context.Background(), transportOn(t, h), ReflexiveConfig{Observers: observers})
			require.NoError(t, err)
			require.Equal(t, tc.want, res.Kind)
			require.Equal(t, h.PublicIP(), res.Addr.Addr())
			require.Equal(t, res.Observed[0], res.Addr)
			if tc.nat == simnet.NATNone {
				require.Equal(t, h.Addr(), res.Addr)
			} else {
				require.NotEqual(t, h.Addr(), res.Addr, "a NATed host's own address is private")
			}
		})
	}
}

func TestDiscoverReflexiveTimesOutWhenNoObserverAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := simnet.New(simnet.Config{Seed: 1})
		defer n.Close()
		silent, err := n.NewHost(simnet.HostConfig{})
		require.NoError(t, err)
		h, err := n.NewHost(simnet.HostConfig{NAT: simnet.NAT{Kind: simnet.NATCone}})
		require.NoError(t, err)
		tr := &quic.Transport{Conn: h}
		defer tr.Close()

		start := time.Now()
		res, err := DiscoverReflexive(context.Background(), tr, ReflexiveConfig{
			Observers: []net.Addr{silent.LocalAddr()}, Timeout: 300 * time.Millisecond, Retransmit: 50 * time.Millisecond,
		})
		require.ErrorIs(t, err, ErrNoBindingResponse)
		require.Equal(t, 300*time.Millisecond, time.Since(start))
		require.Equal(t, proto.NATUnknown, res.Kind)
		require.False(t, res.Addr.IsValid())
		time.Sleep(time.Second)
		synctest.Wait()
		// Sent at 0, 50 and 150 ms (the wait doubles); nothing after the timeout.
		require.Equal(t, uint64(3), silent.Stats().PacketsReceived)
	})
}

// A fake observer drops each first request and answers a copy with a stranger's txid before
// the right one: the peer retransmits with the same txid and ignores what it did not ask for.
func TestDiscoverReflexiveRetransmitsAndIgnoresStrangers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := simnet.New(simnet.Config{Seed: 1})
		defer n.Close()
		obs, err := n.NewHost(simnet.HostConfig{Latency: 5 * time.Millisecond})
		require.NoError(t, err)
		forged := netip.MustParseAddrPort("192.0.2.66:666")
		go func() {
			buf := make([]byte, 1500)
			seen := map[proto.TxID]bool{}
			for {
				k, from, err := obs.ReadFrom(buf)
				if err != nil {
					return
				}
				m, _, err := proto.ParseBinding(buf[:k])
				if err != nil {
					continue
				}
				req := m.(*proto.BindingRequest)
				if !seen[req.TxID] {
					seen[req.TxID] = true
					continue
				}
				stranger := &proto.BindingResponse{TxID: proto.TxID{1}, Observed: forged}
				_, _ = obs.WriteTo(stranger.Append(nil), from)
				_, _ = obs.WriteTo((&proto.Punch{}).Append(nil), from)
				resp := &proto.BindingResponse{TxID: req.TxID, Observed: from.(*net.UDPAddr).AddrPort()}
				_, _ = obs.WriteTo(resp.Append(nil), from)
			}
		}()
		h, err := n.NewHost(simnet.HostConfig{Latency: 5 * time.Millisecond})
		require.NoError(t, err)
		tr := &quic.Transport{Conn: h}
		defer tr.Close()
		start := time.Now()
		res, err := DiscoverReflexive(context.Background(), tr, ReflexiveConfig{
			Observers: []net.Addr{obs.LocalAddr()}, Retransmit: 50 * time.Millisecond,
		})
		require.NoError(t, err)
		require.Equal(t, h.Addr(), res.Addr)
		require.Equal(t, proto.NATPublic, res.Kind)
		// The retransmission at 50 ms is answered one 20 ms round trip later.
		require.Equal(t, 70*time.Millisecond, time.Since(start))
		require.Equal(t, uint64(2), obs.Stats().PacketsReceived)
	})
}

func TestDiscoverReflexiveWithOneObserverCannotClassifyANAT(t *testing.T) {
	n := simNetwork(t)
	observers := simObservers(t, n)
	h := simHost(t, n, simnet.NATCone)
	res, err := DiscoverReflexive(context.Background(), transportOn(t, h), ReflexiveConfig{Observers: observers[:1]})
	require.NoError(t, err)
	require.Equal(t, h.PublicIP(), res.Addr.Addr())
	require.Equal(t, proto.NATUnknown, res.Kind)
}

// Binding traffic shares the socket with QUIC: a node keeps dialling on the same Transport.
func TestDiscoverReflexiveLeavesQUICWorking(t *testing.T) {
	n := simNetwork(t)
	observers := simObservers(t, n)
	server := simHost(t, n, simnet.NATNone)
	srvTLS, cliTLS, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	ln, err := transportOn(t, server).Listen(srvTLS, meshQUICConfig())
	require.NoError(t, err)
	go func() {
		for {
			if _, err := ln.Accept(context.Background()); err != nil {
				return
			}
		}
	}()

	tr := transportOn(t, simHost(t, n, simnet.NATCone))
	_, err = DiscoverReflexive(context.Background(), tr, ReflexiveConfig{Observers: observers})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, server.LocalAddr(), cliTLS, meshQUICConfig())
	require.NoError(t, err)
	require.NoError(t, conn.CloseWithError(0, ""))
}

func TestNodeReportsItsReflexiveAddressAndNATKind(t *testing.T) {
	o := newTestOrigin(t, 2)

	t.Run("loopback", func(t *testing.T) {
		cfg := o.peerConfig(t)
		cfg.Observers = runObserver(t, loopbackUDP(t), loopbackUDP(t))
		node := startNode(t, cfg)
		require.Eventually(t, func() bool { return node.Stats().NATKind == proto.NATPublic }, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, cfg.PacketConn.LocalAddr().String(), node.Stats().ReflexiveAddr)
	})

	t.Run("behind a cone NAT", func(t *testing.T) {
		n := simNetwork(t)
		observers := simObservers(t, n)
		cfg := o.peerConfig(t)
		h := simHost(t, n, simnet.NATCone)
		cfg.PacketConn = h
		cfg.Observers = observers
		cfg.ReflexiveInterval = 100 * time.Millisecond
		node := startNode(t, cfg)
		require.Eventually(t, func() bool { return node.Stats().NATKind == proto.NATCone }, 5*time.Second, 10*time.Millisecond)
		refl, err := netip.ParseAddrPort(node.Stats().ReflexiveAddr)
		require.NoError(t, err)
		require.Equal(t, h.PublicIP(), refl.Addr())

		_, body := httpGetBody(t, "http://"+cfg.HTTPListener.Addr().String()+"/stats")
		require.Contains(t, body, `"nat_kind":"cone"`)
		require.Contains(t, body, `"reflexive_addr":"`+refl.String()+`"`)
		_, metrics := httpGetBody(t, "http://"+cfg.HTTPListener.Addr().String()+"/metrics")
		require.Contains(t, metrics, `crowdsurf_peer_nat_kind{kind="cone"} 1`)

		// The node keeps asking, which keeps its mapping towards the observer alive.
		sent := h.Stats().PacketsSent
		require.Eventually(t, func() bool { return h.Stats().PacketsSent >= sent+4 }, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, refl.String(), node.Stats().ReflexiveAddr, "a kept mapping keeps its port")
	})
}
