package simnet_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

// natLink gives every packet a few milliseconds on the wire, so a test can tell "arrived
// late" from "dropped".
var natLink = simnet.HostConfig{Latency: 5 * time.Millisecond}

func behind(kind simnet.NATKind) simnet.HostConfig {
	cfg := natLink
	cfg.NAT = simnet.NAT{Kind: kind}
	return cfg
}

func send(t *testing.T, from *simnet.Host, to net.Addr, msg string) {
	t.Helper()
	_, err := from.WriteTo([]byte(msg), to)
	require.NoError(t, err)
}

// recv reads one datagram, failing the test after a second (simulated, in a bubble).
func recv(t *testing.T, h *simnet.Host) (string, netip.AddrPort) {
	t.Helper()
	require.NoError(t, h.SetReadDeadline(time.Now().Add(time.Second)))
	buf := make([]byte, 1500)
	n, from, err := h.ReadFrom(buf)
	require.NoError(t, err)
	return string(buf[:n]), from.(*net.UDPAddr).AddrPort()
}

// settle lets every packet in flight arrive or be dropped.
func settle() {
	time.Sleep(50 * time.Millisecond)
	synctest.Wait()
}

func bubble(t *testing.T, f func(t *testing.T, n *simnet.Network)) {
	synctest.Test(t, func(t *testing.T) {
		n := simnet.New(simnet.Config{Seed: 42})
		defer n.Close()
		f(t, n)
	})
}

func TestConeNATUsesOnePortForEveryDestination(t *testing.T) {
	bubble(t, func(t *testing.T, n *simnet.Network) {
		home := newHost(t, n, behind(simnet.NATCone))
		x, y := newHost(t, n, natLink), newHost(t, n, natLink)
		require.Equal(t, simnet.NATCone, home.NAT())
		require.NotEqual(t, home.Addr().Addr(), home.PublicIP(), "a NATed host's own address is private")

		send(t, home, x.LocalAddr(), "hi x")
		send(t, home, y.LocalAddr(), "hi y")
		_, seenByX := recv(t, x)
		_, seenByY := recv(t, y)
		require.Equal(t, home.PublicIP(), seenByX.Addr())
		require.Equal(t, seenByX, seenByY, "endpoint-independent mapping")

		// The mapping is stable while it is used.
		send(t, home, x.LocalAddr(), "again")
		_, again := recv(t, x)
		require.Equal(t, seenByX, again)
	})
}

func TestSymmetricNATGivesEachDestinationItsOwnPort(t *testing.T) {
	bubble(t, func(t *testing.T, n *simnet.Network) {
		home := newHost(t, n, behind(simnet.NATSymmetric))
		x := newHost(t, n, natLink)
		// Same IP, another port: a symmetric NAT maps per addr:port, not per IP.
		xOther := newHost(t, n, simnet.HostConfig{Addr: netip.AddrPortFrom(x.Addr().Addr(), 3479), Latency: natLink.Latency})

		send(t, home, x.LocalAddr(), "a")
		send(t, home, xOther.LocalAddr(), "b")
		_, seen1 := recv(t, x)
		_, seen2 := recv(t, xOther)
		require.Equal(t, home.PublicIP(), seen1.Addr())
		require.Equal(t, seen1.Addr(), seen2.Addr())
		require.NotEqual(t, seen1.Port(), seen2.Port(), "a new external port per destination")

		send(t, home, x.LocalAddr(), "a again")
		_, again := recv(t, x)
		require.Equal(t, seen1, again, "one destination keeps its mapping")
	})
}

func TestNATDropsUnsolicitedPacketsAndLetsRepliesThrough(t *testing.T) {
	for _, kind := range []simnet.NATKind{simnet.NATCone, simnet.NATSymmetric} {
		t.Run(kind.String(), func(t *testing.T) {
			bubble(t, func(t *testing.T, n *simnet.Network) {
				home := newHost(t, n, behind(kind))
				x, stranger := newHost(t, n, natLink), newHost(t, n, natLink)
				xOtherPort := newHost(t, n, simnet.HostConfig{Addr: netip.AddrPortFrom(x.Addr().Addr(), 9), Latency: natLink.Latency})

				// Nothing reaches a NATed host before it has sent anything, not even at its
				// private address.
				send(t, stranger, net.UDPAddrFromAddrPort(netip.AddrPortFrom(home.PublicIP(), 49152)), "knock")
				send(t, stranger, home.LocalAddr(), "knock")
				settle()
				require.Zero(t, home.Stats().PacketsReceived)
				require.Equal(t, uint64(1), home.Stats().DroppedFiltered)

				send(t, home, x.LocalAddr(), "hello")
				_, mapped := recv(t, x)
				send(t, x, net.UDPAddrFromAddrPort(mapped), "reply")
				msg, from := recv(t, home)
				require.Equal(t, "reply", msg)
				require.Equal(t, x.Addr(), from, "the host sees the real sender")

				// Filtering is by address and port: another host, or x's IP from
				// another port, may not use the mapping.
				send(t, stranger, net.UDPAddrFromAddrPort(mapped), "me too")
				send(t, xOtherPort, net.UDPAddrFromAddrPort(mapped), "me too")
				settle()
				require.Equal(t, uint64(1), home.Stats().PacketsReceived)
				require.Equal(t, uint64(3), home.Stats().DroppedFiltered)
			})
		})
	}
}

func TestNATMappingExpiresWithoutOutboundTraffic(t *testing.T) {
	bubble(t, func(t *testing.T, n *simnet.Network) {
		cfg := behind(simnet.NATCone)
		cfg.NAT.Timeout = 30 * time.Second
		home := newHost(t, n, cfg)
		x := newHost(t, n, natLink)

		send(t, home, x.LocalAddr(), "hello")
		_, mapped := recv(t, x)
		reply := func() bool {
			before := home.Stats().PacketsReceived
			send(t, x, net.UDPAddrFromAddrPort(mapped), "reply")
			settle()
			if home.Stats().PacketsReceived == before {
				return false
			}
			recv(t, home)
			return true
		}

		// Outbound traffic keeps the mapping; inbound traffic does not.
		time.Sleep(20 * time.Second)
		send(t, home, x.LocalAddr(), "keepalive")
		recv(t, x)
		time.Sleep(20 * time.Second)
		require.True(t, reply(), "40 s after the first packet, 20 s after the keepalive")
		time.Sleep(5 * time.Second)
		require.True(t, reply())
		time.Sleep(6 * time.Second) // 31 s after the keepalive; the replies did not refresh it
		require.False(t, reply(), "the mapping expired")

		// Sending again opens a new mapping, on a new port.
		send(t, home, x.LocalAddr(), "back")
		_, remapped := recv(t, x)
		require.Equal(t, mapped.Addr(), remapped.Addr())
		require.NotEqual(t, mapped.Port(), remapped.Port())
	})
}

func TestNATHostAddressesAreChecked(t *testing.T) {
	n := testNetwork(t)
	pub := newHost(t, n, simnet.HostConfig{})
	_, err := n.NewHost(simnet.HostConfig{NAT: simnet.NAT{Kind: simnet.NATCone, PublicIP: pub.Addr().Addr()}})
	require.ErrorIs(t, err, simnet.ErrAddrInUse, "a router cannot take a public host's IP")
	home := newHost(t, n, simnet.HostConfig{NAT: simnet.NAT{Kind: simnet.NATCone}})
	_, err = n.NewHost(simnet.HostConfig{Addr: netip.AddrPortFrom(home.PublicIP(), 1)})
	require.ErrorIs(t, err, simnet.ErrAddrInUse, "nor a public host a router's")
	// Private addresses may repeat: nothing routes to them.
	private := netip.MustParseAddrPort("192.168.1.2:4433")
	a := newHost(t, n, simnet.HostConfig{Addr: private, NAT: simnet.NAT{Kind: simnet.NATCone}})
	b := newHost(t, n, simnet.HostConfig{Addr: private, NAT: simnet.NAT{Kind: simnet.NATSymmetric}})
	require.NotEqual(t, a.PublicIP(), b.PublicIP())
	require.Len(t, n.Hosts(), 4)
	require.NoError(t, a.Close())
	require.Len(t, n.Hosts(), 3)

	_, err = n.NewHost(simnet.HostConfig{NAT: simnet.NAT{Kind: 7}})
	require.Error(t, err)
}

// quicListen serves QUIC on h: every connection's first stream is echoed.
func quicListen(t *testing.T, h *simnet.Host) *quic.Transport {
	t.Helper()
	serverTLS, _ := natTLS(t)
	tr := &quic.Transport{Conn: h}
	t.Cleanup(func() { _ = tr.Close() })
	ln, err := tr.Listen(serverTLS, &quic.Config{})
	require.NoError(t, err)
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				str, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				buf := make([]byte, 16)
				k, _ := str.Read(buf)
				_, _ = str.Write(buf[:k])
				_ = str.Close()
			}()
		}
	}()
	return tr
}

// dialEcho dials addr from tr and checks a stream round trip; it fails if the handshake
// does not finish within timeout.
func dialEcho(t *testing.T, tr *quic.Transport, addr net.Addr, timeout time.Duration) error {
	t.Helper()
	_, clientTLS := natTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := tr.Dial(ctx, addr, clientTLS, &quic.Config{HandshakeIdleTimeout: timeout})
	if err != nil {
		return err
	}
	defer conn.CloseWithError(0, "")
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str, err := conn.OpenStreamSync(ctx)
	require.NoError(t, err)
	_, err = str.Write([]byte("ping"))
	require.NoError(t, err)
	require.NoError(t, str.Close())
	got, err := io.ReadAll(str)
	require.NoError(t, err)
	require.Equal(t, "ping", string(got))
	return nil
}

var natTLSOnce struct {
	sync.Once
	server, client *tls.Config
}

// natTLS shares one certificate between every server and client of the NAT tests.
func natTLS(t *testing.T) (server, client *tls.Config) {
	natTLSOnce.Do(func() { natTLSOnce.server, natTLSOnce.client = testTLS(t) })
	return natTLSOnce.server.Clone(), natTLSOnce.client.Clone()
}

func TestQUICDialsOutFromBehindNATButNotIn(t *testing.T) {
	for _, kind := range []simnet.NATKind{simnet.NATCone, simnet.NATSymmetric} {
		t.Run(kind.String(), func(t *testing.T) {
			n := testNetwork(t)
			server := newHost(t, n, natLink)
			home := newHost(t, n, behind(kind))
			quicListen(t, server)
			tr := &quic.Transport{Conn: home}
			t.Cleanup(func() { _ = tr.Close() })
			require.NoError(t, dialEcho(t, tr, server.LocalAddr(), 5*time.Second))

			// A server behind a NAT that has sent nothing is unreachable.
			homeServer := newHost(t, n, behind(kind))
			quicListen(t, homeServer)
			client := &quic.Transport{Conn: newHost(t, n, natLink)}
			t.Cleanup(func() { _ = client.Close() })
			target := net.UDPAddrFromAddrPort(netip.AddrPortFrom(homeServer.PublicIP(), 49152))
			require.Error(t, dialEcho(t, client, target, 300*time.Millisecond))
			require.Positive(t, homeServer.Stats().DroppedFiltered)
		})
	}
}

// TestPunchedNATsConnect is hole punching in its simplest form: both hosts learn their
// mapping from a public observer, send one packet to each other's mapping, then one dials.
// Between cone NATs the first packet opens the filter for the other's; between symmetric
// NATs each packet leaves through a new mapping the other side never heard of.
func TestPunchedNATsConnect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  simnet.NATKind
		punch bool
		works bool
	}{
		{"cone", simnet.NATCone, true, true},
		{"cone without punch", simnet.NATCone, false, false},
		{"symmetric", simnet.NATSymmetric, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testNetwork(t)
			observer := newHost(t, n, natLink)
			a, b := newHost(t, n, behind(tc.kind)), newHost(t, n, behind(tc.kind))

			// Learn both mappings before any Transport reads the sockets.
			send(t, a, observer.LocalAddr(), "a")
			_, aMapped := recv(t, observer)
			send(t, b, observer.LocalAddr(), "b")
			_, bMapped := recv(t, observer)

			bTr := quicListen(t, b)
			aTr := &quic.Transport{Conn: a}
			t.Cleanup(func() { _ = aTr.Close() })
			if tc.punch {
				_, err := aTr.WriteTo([]byte{0x01, 'p'}, net.UDPAddrFromAddrPort(bMapped))
				require.NoError(t, err)
				_, err = bTr.WriteTo([]byte{0x01, 'p'}, net.UDPAddrFromAddrPort(aMapped))
				require.NoError(t, err)
			}

			err := dialEcho(t, aTr, net.UDPAddrFromAddrPort(bMapped), time.Second)
			if tc.works {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
		})
	}
}
