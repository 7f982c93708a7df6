package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Hostile nodes for the bounds tests: written against our own proto, dialling from a loopback
// IP of their choice (Linux routes all of 127/8 to lo), each connection from a new socket.

// listenOn opens a UDP socket on ip (e.g. "127.0.0.2"), closed with the test.
func listenOn(t testing.TB, ip string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	return pc
}

// rawConn is a hostile connection that completed the mesh handshake, or tried.
type rawConn struct {
	conn *quic.Conn
	ctrl *quic.Stream
	id   [16]byte
}

// rawDial connects from a new socket on ip to the node at to and says HELLO with a new peer id.
// An error means the node refused us (before or after QUIC's handshake).
func rawDial(t testing.TB, ip string, to net.Addr, depths []uint8, free uint16) (*rawConn, error) {
	t.Helper()
	return rawDialVersion(t, ip, to, depths, free, proto.MaxVersion)
}

// rawDialVersion is rawDial speaking protocol versions up to maxVersion.
func rawDialVersion(t testing.TB, ip string, to net.Addr, depths []uint8, free uint16, maxVersion uint16) (*rawConn, error) {
	t.Helper()
	tr := &quic.Transport{Conn: listenOn(t, ip)}
	t.Cleanup(func() { tr.Close() })
	_, cliTLS, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, to.(*net.UDPAddr), cliTLS, meshQUICConfig())
	if err != nil {
		return nil, err
	}
	rc := &rawConn{conn: conn}
	_, _ = rand.Read(rc.id[:])
	if rc.ctrl, err = conn.OpenStreamSync(ctx); err != nil {
		return nil, err
	}
	if err := writeMessage(rc.ctrl, &proto.Hello{MinVersion: proto.MinVersion, MaxVersion: maxVersion,
		PeerID: rc.id, Stream: testStream, Depths: depths, FreeSlots: free}); err != nil {
		return nil, err
	}
	_ = rc.ctrl.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := readMessage(rc.ctrl); err != nil {
		return nil, err
	}
	_ = rc.ctrl.SetReadDeadline(time.Time{})
	return rc, nil
}

var noDepths = []uint8{proto.NoDepth, proto.NoDepth, proto.NoDepth, proto.NoDepth}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestStreamFloodKeepsRootHeapBounded replays the measured attack: 40 connections each open
// 1,000 one-byte chunk streams and never finish them. It once took an origin from 71 MB to
// 1.28 GB. The heap (root and attackers both live in this process) must grow less than 50 MB,
// and the root must still serve an honest viewer.
func TestStreamFloodKeepsRootHeapBounded(t *testing.T) {
	o := newTestOrigin(t, 2)
	before := heapInUse()

	const conns, streamsEach = 40, 1000
	var opened atomic.Int64
	var wg sync.WaitGroup
	attackers := make([]*rawConn, conns)
	for i := range conns {
		rc, err := rawDial(t, "127.0.0.1", o.root.Addr(), noDepths, 0)
		require.NoError(t, err, "attacker %d", i)
		attackers[i] = rc
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			for range streamsEach {
				s, err := rc.conn.OpenUniStreamSync(ctx)
				if err != nil {
					return // the root grants no more streams: what we hold is all we get
				}
				_, _ = s.Write([]byte{proto.ChunkFrameVersion})
				opened.Add(1)
			}
		})
	}
	wg.Wait()
	during := heapInUse()
	growth := int64(during) - int64(before)
	t.Logf("stream flood: %d connections opened %d streams; heap in use %.1f MB before, %.1f MB during (%+.1f MB)",
		conns, opened.Load(), float64(before)/1e6, float64(during)/1e6, float64(growth)/1e6)
	require.LessOrEqual(t, opened.Load(), int64(conns*maxUniStreams), "no connection opens more than maxUniStreams at once")
	require.Less(t, growth, int64(50<<20))
	require.Equal(t, 40, o.root.Stats().Neighbours)

	// The root still feeds an honest viewer.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	viewer := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	<-o.playAsync(ctx, 0, 6, nil)
	require.Eventually(t, func() bool { return allComplete(viewer, 2, 6) }, 5*time.Second, 20*time.Millisecond, "%+v", viewer.Stats())
	requireSegmentsIdentical(t, viewer, 2, 6)
	require.Positive(t, viewer.Stats().BytesFromOrigin-viewer.Stats().BytesFromHTTP, "chunks came from the root over QUIC")
	for _, rc := range attackers {
		_ = rc.conn.CloseWithError(0, "")
	}
}

// TestHalfOpenControlFrameIsClosedWithinTheDeadline: a control frame whose header promises
// 65,535 bytes and then sends 10 must not hold the connection open.
func TestHalfOpenControlFrameIsClosedWithinTheDeadline(t *testing.T) {
	o := newTestOrigin(t, 2)
	rc, err := rawDial(t, "127.0.0.1", o.root.Addr(), noDepths, 0)
	require.NoError(t, err)
	frame := []byte{byte(proto.TypeHave), 0xff, 0xff}
	frame = append(frame, make([]byte, 10)...)
	start := time.Now()
	_, err = rc.ctrl.Write(frame)
	require.NoError(t, err)
	select {
	case <-rc.conn.Context().Done():
	case <-time.After(controlFrameTimeout + 2*time.Second):
		t.Fatal("the root kept a connection whose control frame never finished")
	}
	took := time.Since(start)
	t.Logf("half-open frame: connection closed after %v", took)
	require.GreaterOrEqual(t, took, controlFrameTimeout-100*time.Millisecond, "not before the deadline")
	var ae *quic.ApplicationError
	require.ErrorAs(t, context.Cause(rc.conn.Context()), &ae)
	require.Equal(t, codeViolation, ae.ErrorCode)
}

// limitedOrigin is a test origin whose per-IP rules apply on loopback.
func limitedOrigin(t *testing.T, lim Limits) *testOrigin {
	lim.LimitLoopback = true
	return newTestOriginWith(t, 2, func(c *Config) { c.Limits = lim })
}

// TestPerIPConnectionCapHoldsAndOtherIPsStillConnect: one IP gets MaxConnsPerIP connections; the
// next are refused before the handshake, and a viewer on another IP connects all the same.
func TestPerIPConnectionCapHoldsAndOtherIPsStillConnect(t *testing.T) {
	o := limitedOrigin(t, Limits{MaxConnsPerIP: 4, NewConnsPerSec: 100, NewConnsBurst: 100})
	for i := range 4 {
		_, err := rawDial(t, "127.0.0.2", o.root.Addr(), noDepths, 0)
		require.NoError(t, err, "connection %d", i)
	}
	for range 3 {
		_, err := rawDial(t, "127.0.0.2", o.root.Addr(), noDepths, 0)
		var te *quic.TransportError
		require.ErrorAs(t, err, &te, "a fifth connection from one IP is refused")
		require.Equal(t, quic.ConnectionRefused, te.ErrorCode)
	}
	require.Equal(t, 3.0, counterValue(o.root.guard.refused.WithLabelValues(refusedPerIP)))

	cfg := o.peerConfig(t, o.root.Addr().String())
	cfg.PacketConn = listenOn(t, "127.0.0.3")
	viewer := startNode(t, cfg)
	require.Eventually(t, func() bool { return viewer.Stats().Neighbours == 1 }, 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return o.root.Stats().Neighbours == 5 }, 5*time.Second, 20*time.Millisecond)
}

// TestNewConnectionRateHoldsPerIP: connections that come and go still spend the IP's tokens.
func TestNewConnectionRateHoldsPerIP(t *testing.T) {
	o := limitedOrigin(t, Limits{MaxConnsPerIP: 100, NewConnsPerSec: 0.5, NewConnsBurst: 3})
	for i := range 3 {
		rc, err := rawDial(t, "127.0.0.2", o.root.Addr(), noDepths, 0)
		require.NoError(t, err, "connection %d", i)
		require.NoError(t, rc.conn.CloseWithError(0, ""))
	}
	_, err := rawDial(t, "127.0.0.2", o.root.Addr(), noDepths, 0)
	require.Error(t, err, "the burst is spent")
	require.Equal(t, 1.0, counterValue(o.root.guard.refused.WithLabelValues(refusedRate)))
	_, err = rawDial(t, "127.0.0.3", o.root.Addr(), noDepths, 0)
	require.NoError(t, err, "another IP has its own bucket")
}

// TestNewConnectionTokensRefillAndBansExpire pins the admission's clock rules in a bubble.
func TestNewConnectionTokensRefillAndBansExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdmission(Limits{LimitLoopback: true, MaxConnsPerIP: 2, NewConnsPerSec: 1, NewConnsBurst: 2, BanFor: time.Minute})
		ip := ipOf(&net.UDPAddr{IP: net.ParseIP("127.0.0.9"), Port: 1})
		t1, err := a.admit(ip)
		require.NoError(t, err)
		t2, err := a.admit(ip)
		require.NoError(t, err)
		_, err = a.admit(ip)
		require.ErrorIs(t, err, ErrRefused, "two connections per IP")
		t1.closed()
		t2.closed()
		_, err = a.admit(ip)
		require.ErrorIs(t, err, ErrRefused, "no token left")
		require.True(t, a.verifySourceAddress(&net.UDPAddr{IP: net.ParseIP("127.0.0.9"), Port: 2}), "a busy IP proves its address first")
		time.Sleep(time.Second)
		t3, err := a.admit(ip)
		require.NoError(t, err, "a token a second")
		t3.closed()

		require.True(t, a.ban(ip))
		time.Sleep(59 * time.Second)
		_, err = a.admit(ip)
		require.ErrorIs(t, err, ErrRefused, "banned for a minute")
		time.Sleep(2 * time.Second)
		_, err = a.admit(ip)
		require.NoError(t, err, "the ban has expired")

		loop := newAdmission(Limits{})
		require.False(t, loop.ban(ip), "loopback is exempt by default")
	})
}

// TestBannedIPWithNewPortAndIDIsRefusedBeforeItsChunksAreVerified: after a forged chunk, the
// same IP from a new socket with a new peer id does not get a connection at all.
func TestBannedIPWithNewPortAndIDIsRefusedBeforeItsChunksAreVerified(t *testing.T) {
	o := newTestOrigin(t, 2)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	cfg := testConfig(t, o.pub)
	cfg.Limits.LimitLoopback = true
	victim := startNode(t, cfg)

	forged := o.chunk(1, 0)
	forged.Sign(otherKey)
	send := func(rc *rawConn) {
		s, err := rc.conn.OpenUniStreamSync(context.Background())
		require.NoError(t, err)
		_, _ = s.Write(forged.Append(nil))
		_ = s.Close()
	}
	rc, err := rawDial(t, "127.0.0.2", victim.Addr(), noDepths, 0)
	require.NoError(t, err)
	send(rc)
	select {
	case <-rc.conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a forged chunk did not get its sender disconnected")
	}
	require.Equal(t, int64(1), victim.Stats().ChunksRejected)

	for range 5 {
		_, err := rawDial(t, "127.0.0.2", victim.Addr(), noDepths, 0)
		var te *quic.TransportError
		require.ErrorAs(t, err, &te, "a banned IP gets no handshake")
		require.Equal(t, quic.ConnectionRefused, te.ErrorCode)
	}
	require.Equal(t, 5.0, counterValue(victim.guard.refused.WithLabelValues(refusedBanned)))
	require.Equal(t, int64(1), victim.Stats().ChunksRejected, "nothing more was verified")

	_, err = rawDial(t, "127.0.0.3", victim.Addr(), noDepths, 0)
	require.NoError(t, err, "other IPs are not banned")
}

// squatter holds a connection to the root, subscribes to every stripe, keeps talking (STATUS
// every 300 ms, so it is never dropped as silent) and forwards nothing. It counts the seed
// slots the root granted it.
func squatter(t *testing.T, ctx context.Context, ip string, root net.Addr, held *atomic.Int32) {
	rc, err := rawDial(t, ip, root, noDepths, 0)
	if err != nil {
		return // refused: fine, that is a squatter fewer
	}
	for s := range 4 {
		require.NoError(t, writeMessage(rc.ctrl, &proto.Subscribe{Stripe: uint8(s)}))
	}
	go func() {
		for {
			m, err := readMessage(rc.ctrl)
			if err != nil {
				return
			}
			if ack, ok := m.(*proto.SubscribeAck); ok && ack.Accepted {
				held.Add(1)
			}
		}
	}()
	go func() { // read and drop what the root pushes
		for {
			s, err := rc.conn.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, s)
			s.ReleaseStreamCredit() // meshQUICConfig requires it
		}
	}()
	go func() {
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = rc.conn.CloseWithError(0, "")
				return
			case <-tick.C:
				if writeMessage(rc.ctrl, &proto.Status{Depths: noDepths}) != nil {
					return
				}
			}
		}
	}()
}

// TestSquattersCannotTakeMoreThanTheirIPsShareOfSeedSlots: 16 connections from one IP subscribe
// to every stripe of the root and forward nothing; honest viewers on other IPs still get seed
// slots and a parent on every stripe.
func TestSquattersCannotTakeMoreThanTheirIPsShareOfSeedSlots(t *testing.T) {
	o := limitedOrigin(t, Limits{MaxConnsPerIP: 16, NewConnsPerSec: 100, NewConnsBurst: 100})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var held atomic.Int32
	for range 16 {
		squatter(t, ctx, "127.0.0.2", o.root.Addr(), &held)
	}
	require.Eventually(t, func() bool { return o.root.Stats().Children == 2 }, 5*time.Second, 20*time.Millisecond,
		"the squatters take their share at once: %+v", o.root.Stats())

	var viewers []*Node
	for _, ip := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		cfg := o.peerConfig(t, o.root.Addr().String())
		cfg.PacketConn = listenOn(t, ip)
		for _, v := range viewers {
			cfg.Bootstrap = append(cfg.Bootstrap, v.Addr().String())
		}
		viewers = append(viewers, startNode(t, cfg))
	}
	done := o.playAsync(ctx, 0, 16, nil)
	rootID := o.root.PeerID()
	for _, v := range viewers {
		require.Eventually(t, func() bool { return v.Stats().Parents == 4 }, 10*time.Second, 20*time.Millisecond,
			"an honest viewer has a parent on every stripe: %+v", v.Stats())
	}
	fromRoot := 0
	for _, v := range viewers {
		for _, p := range v.Stats().ParentIDs {
			if p == rootID {
				fromRoot++
			}
		}
	}
	t.Logf("squatters hold %d seed slots, honest viewers %d, root children %d", held.Load(), fromRoot, o.root.Stats().Children)
	require.LessOrEqual(t, held.Load(), int32(seedShare(4, 2)), "16 connections of one IP hold its share, no more")
	require.GreaterOrEqual(t, fromRoot, 4, "the honest viewers hold the other seed slots")
	<-done
	for _, v := range viewers {
		require.Eventually(t, func() bool { return allComplete(v, 10, 16) }, 5*time.Second, 20*time.Millisecond, "%+v", v.Stats())
	}
}

// deafConn is a client socket that never hears an answer: its handshakes stay in progress at the
// server until they time out, the cheapest way to pile Initials up on it.
type deafConn struct{ net.PacketConn }

func (d deafConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if _, _, err := d.PacketConn.ReadFrom(b); err != nil {
			return 0, nil, err
		}
	}
}

// TestInitialFloodIsAnsweredWithRetry: handshakes that never finish pile up; past RetryAbove, new
// Initials get a stateless Retry, the handshakes in progress stay bounded, and an honest viewer
// (which answers the Retry) still connects.
func TestInitialFloodIsAnsweredWithRetry(t *testing.T) {
	o := newTestOrigin(t, 2)
	before := heapInUse()
	tr := &quic.Transport{Conn: deafConn{listenOn(t, "127.0.0.1")}}
	t.Cleanup(func() { tr.Close() })
	_, cliTLS, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	const initials = 500
	var wg sync.WaitGroup
	for range initials {
		wg.Go(func() { _, _ = tr.Dial(ctx, o.root.Addr().(*net.UDPAddr), cliTLS, meshQUICConfig()) })
	}
	retries := o.root.guard.retries
	require.Eventually(t, func() bool { return counterValue(retries) >= initials/2 }, 5*time.Second, 10*time.Millisecond,
		"retries %v", counterValue(retries))
	inProgress := o.root.guard.inProgress()
	during := heapInUse()
	t.Logf("initial flood: %d handshakes started, %v Retries, %d in progress; heap %.1f MB before, %.1f MB during",
		initials, counterValue(retries), inProgress, float64(before)/1e6, float64(during)/1e6)
	require.LessOrEqual(t, inProgress, 16, "handshakes in progress stay at RetryAbove")
	require.Less(t, int64(during)-int64(before), int64(50<<20))

	viewer := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	require.Eventually(t, func() bool { return viewer.Stats().Neighbours == 1 }, 5*time.Second, 20*time.Millisecond,
		"an honest viewer answers the Retry and connects")
	wg.Wait()
	require.Eventually(t, func() bool { return o.root.guard.inProgress() == 0 }, 2*handshakeTimeout, 50*time.Millisecond,
		"abandoned handshakes are forgotten")
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestIdleSeedChildGivesItsSlotToAnotherCandidate: squatters from four IPs take every seed slot
// (one each) and never take a child; after the grace, an honest viewer on a fifth IP gets one.
func TestIdleSeedChildGivesItsSlotToAnotherCandidate(t *testing.T) {
	oldGrace, oldEvery := seedGrace, displaceEvery
	seedGrace, displaceEvery = time.Second, time.Second
	t.Cleanup(func() { seedGrace, displaceEvery = oldGrace, oldEvery })
	o := newTestOriginWith(t, 1, func(c *Config) { c.Limits.LimitLoopback = true })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var held atomic.Int32
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		squatter(t, ctx, ip, o.root.Addr(), &held)
	}
	require.Eventually(t, func() bool { return o.root.Stats().Children == 4 }, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, int32(4), held.Load())

	cfg := o.peerConfig(t, o.root.Addr().String())
	cfg.PacketConn = listenOn(t, "127.0.0.6")
	viewer := startNode(t, cfg)
	done := o.playAsync(ctx, 0, 12, nil)
	rootID := o.root.PeerID()
	require.Eventually(t, func() bool { return slices.Contains(viewer.Stats().ParentIDs, rootID) }, 10*time.Second, 20*time.Millisecond,
		"the honest viewer took an idle seed slot")
	require.GreaterOrEqual(t, counterValue(o.root.guard.seedDisplaced), 1.0)
	require.LessOrEqual(t, o.root.Stats().Children, 4)
	<-done
}

func TestPerIPRulesKeyIPv6OnItsSlash64(t *testing.T) {
	a := ipOf(&net.UDPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 1})
	b := ipOf(&net.UDPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9"), Port: 2})
	c := ipOf(&net.UDPAddr{IP: net.ParseIP("2001:db8:1:3::1"), Port: 1})
	require.Equal(t, a, b, "one subscriber's /64 is one source")
	require.NotEqual(t, a, c)
	require.True(t, ipOf(&net.UDPAddr{IP: net.IPv6loopback, Port: 1}).IsLoopback())
	require.Equal(t, "192.0.2.7", ipOf(&net.UDPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}).String())
}

// TestFullRootRefusesNeighboursAndTheyBackOff: a root at MaxRootNeighbours with no useless
// neighbour refuses a new one, which then waits longer and longer before it dials again instead
// of costing the root a handshake every second.
func TestFullRootRefusesNeighboursAndTheyBackOff(t *testing.T) {
	o := newTestOriginWith(t, 2, func(c *Config) { c.MaxRootNeighbours = 1 })
	first := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	require.Eventually(t, func() bool { return first.Stats().Neighbours == 1 }, 5*time.Second, 20*time.Millisecond)
	second := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	require.Eventually(t, func() bool { return counterValue(o.root.guard.refused.WithLabelValues(refusedNeighbours)) >= 1 },
		5*time.Second, 20*time.Millisecond)
	start := time.Now()
	require.Never(t, func() bool { return second.Stats().Dials > 2 }, 5*time.Second, 50*time.Millisecond,
		"refused for room, a viewer dials again after 4 s, then 8 s (not every second)")
	t.Logf("in %v the refused viewer dialled %d times", time.Since(start).Round(time.Second), second.Stats().Dials)
	require.Equal(t, 1, o.root.Stats().Neighbours)
}

// TestSilentInboundNeighboursMakeRoomForAnHonestDial: connections that claim depth 1 everywhere
// and never deliver a chunk fill a viewer's table; once past the grace, an honest dial evicts one.
func TestSilentInboundNeighboursMakeRoomForAnHonestDial(t *testing.T) {
	old := evictGrace
	evictGrace = time.Second
	t.Cleanup(func() { evictGrace = old })
	o := newTestOrigin(t, 2)
	cfg := o.peerConfig(t)
	cfg.MaxNeighbours = 1 // it accepts two
	victim := startNode(t, cfg)
	var silent []*rawConn
	for range 2 {
		rc, err := rawDial(t, "127.0.0.1", victim.Addr(), []uint8{1, 1, 1, 1}, 4)
		require.NoError(t, err)
		silent = append(silent, rc)
	}
	require.Eventually(t, func() bool { return victim.Stats().Neighbours == 2 }, 5*time.Second, 20*time.Millisecond)
	time.Sleep(evictGrace) // the rule is about their age: nothing to await but the clock

	honest := startNode(t, o.peerConfig(t, victim.Addr().String()))
	require.Eventually(t, func() bool { return honest.Stats().Neighbours == 1 && victim.Stats().Evicted == 1 },
		5*time.Second, 20*time.Millisecond, "a silent squatter made room")
	evicted := 0
	for _, rc := range silent {
		select {
		case <-rc.conn.Context().Done():
			evicted++
		default:
		}
	}
	require.Equal(t, 1, evicted)
}

// TestMuxAppliesPerIPRulesAndTheRootsBans: an origin's roots accept at the Mux's socket; its
// per-IP cap holds there, and a root's ban refuses the IP at the Mux.
func TestMuxAppliesPerIPRulesAndTheRootsBans(t *testing.T) {
	key := testIdentity(t)
	mux, err := NewMux(MuxConfig{PacketConn: loopbackUDP(t), Identity: key, Limits: Limits{LimitLoopback: true, MaxConnsPerIP: 2}})
	require.NoError(t, err)
	t.Cleanup(func() { mux.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go mux.Run(ctx)
	ln, err := mux.Listen(testStream)
	require.NoError(t, err)
	o := newTestOriginKeyed(t, key, 2, func(c *Config) { c.PacketConn, c.Listener = nil, ln })

	var conns []*rawConn
	for range 2 {
		rc, err := rawDial(t, "127.0.0.2", mux.Addr(), noDepths, 0)
		require.NoError(t, err)
		conns = append(conns, rc)
	}
	_, err = rawDial(t, "127.0.0.2", mux.Addr(), noDepths, 0)
	require.Error(t, err, "a third connection from one IP")
	require.Equal(t, 1.0, counterValue(mux.guard.refused.WithLabelValues(refusedPerIP)))

	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	forged := o.chunk(1, 0)
	forged.Sign(otherKey)
	s, err := conns[0].conn.OpenUniStreamSync(ctx)
	require.NoError(t, err)
	_, _ = s.Write(forged.Append(nil))
	_ = s.Close()
	for _, rc := range conns {
		select {
		case <-rc.conn.Context().Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the ban did not close every connection of the IP")
		}
	}
	_, err = rawDial(t, "127.0.0.2", mux.Addr(), noDepths, 0)
	require.Error(t, err, "the banned IP is refused at the Mux")
	require.Equal(t, 1.0, counterValue(mux.guard.refused.WithLabelValues(refusedBanned)))
}

// TestFullViewerMakesRoomForANewcomer: a viewer whose neighbour table is full of attached,
// working neighbours (none of them useless) still lets a newcomer in, in place of its oldest
// neighbour that is no tree link of its own; its parents stay.
func TestFullViewerMakesRoomForANewcomer(t *testing.T) {
	old := spareGrace
	spareGrace = 300 * time.Millisecond
	t.Cleanup(func() { spareGrace = old })
	o := newTestOrigin(t, 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := o.playAsync(ctx, 0, 40, nil)
	root := o.root.Addr().String()
	freeRider := func(cfg Config) Config { cfg.MaxUploadBps = 1; return cfg } // no child slots: nobody's parent

	spare := startNode(t, freeRider(o.peerConfig(t, root)))
	require.Eventually(t, func() bool { return len(spare.Stats().ParentIDs) == 4 }, 10*time.Second, 20*time.Millisecond)
	cfg := freeRider(o.peerConfig(t, root, spare.Addr().String()))
	cfg.MaxNeighbours = 2 // it holds four: the root, the spare, two that dial it
	full := startNode(t, cfg)
	require.Eventually(t, func() bool { return full.Stats().Neighbours == 2 }, 10*time.Second, 20*time.Millisecond,
		"the spare is its oldest link but for the root")
	for range 2 {
		startNode(t, freeRider(o.peerConfig(t, full.Addr().String())))
	}
	require.Eventually(t, func() bool { return full.Stats().Neighbours == 4 && len(full.Stats().ParentIDs) == 4 },
		10*time.Second, 20*time.Millisecond)
	time.Sleep(spareGrace) // the rule is about their age: nothing to await but the clock

	newcomer := startNode(t, o.peerConfig(t, full.Addr().String()))
	require.Eventually(t, func() bool { return newcomer.Stats().Neighbours == 1 }, 5*time.Second, 20*time.Millisecond,
		"the newcomer got in")
	require.EqualValues(t, 1, full.Stats().Evicted)
	require.Eventually(t, func() bool { return spare.Stats().Neighbours == 1 }, 5*time.Second, 20*time.Millisecond,
		"the oldest spare link went (the spare keeps only the root)")
	require.Len(t, full.Stats().ParentIDs, 4, "its parents stay")
	cancel()
	<-done
}

// TestStatusSlotsOnlyToVersion2Neighbours: a neighbour that speaks protocol version 1 gets plain
// STATUS (it would take STATUS_SLOTS for an unknown message and hang up); one that speaks 2 gets
// STATUS_SLOTS with a slot count per stripe.
func TestStatusSlotsOnlyToVersion2Neighbours(t *testing.T) {
	o := newTestOrigin(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	types := func(rc *rawConn) <-chan proto.MessageType {
		out := make(chan proto.MessageType, 64)
		go func() {
			defer close(out)
			for ctx.Err() == nil {
				m, err := readMessage(rc.ctrl)
				if err != nil {
					return
				}
				if st, ok := m.(*proto.Status); ok && st.StripeSlots != nil && len(st.StripeSlots) != len(st.Depths) {
					return // not a valid STATUS_SLOTS: the channel closes and the test fails
				}
				select {
				case out <- m.Type():
				default:
				}
			}
		}()
		return out
	}
	v1, err := rawDialVersion(t, "127.0.0.1", o.root.Addr(), noDepths, 0, 1)
	require.NoError(t, err)
	v2, err := rawDialVersion(t, "127.0.0.1", o.root.Addr(), noDepths, 0, 2)
	require.NoError(t, err)
	got1, got2 := types(v1), types(v2)
	// A viewer taking the root's seed slots makes the root tell every neighbour its new status.
	startNode(t, o.peerConfig(t, o.root.Addr().String()))
	done := o.playAsync(ctx, 0, 10, nil)
	wait := func(got <-chan proto.MessageType, want, never proto.MessageType) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case typ, ok := <-got:
				require.True(t, ok, "the connection ended before a %s", want)
				require.NotEqual(t, never, typ)
				if typ == want {
					return
				}
			case <-deadline:
				t.Fatalf("no %s in 10 s", want)
			}
		}
	}
	wait(got1, proto.TypeStatus, proto.TypeStatusSlots)
	wait(got2, proto.TypeStatusSlots, proto.TypeStatus)
	cancel()
	<-done
}
