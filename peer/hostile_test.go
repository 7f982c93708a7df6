package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// hostilePeer listens on its own socket like a real peer, answers HELLO properly and then sends
// one bad chunk stream on every connection it gets.
type hostilePeer struct {
	addr     string
	accepted atomic.Int32
}

func startHostilePeer(t *testing.T, payload []byte) *hostilePeer {
	t.Helper()
	ln, addr := rawListener(t)
	h := &hostilePeer{addr: addr}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var id [16]byte
	_, _ = rand.Read(id[:])
	go func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			h.accepted.Add(1)
			go func() {
				ctrl, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				if _, err := readMessage(ctrl); err != nil {
					return
				}
				hello := &proto.Hello{MinVersion: proto.MinVersion, MaxVersion: proto.MaxVersion, PeerID: id,
					Stream: testStream, Depths: []uint8{1, 1, 1, 1}, FreeSlots: 8}
				if err := writeMessage(ctrl, hello); err != nil {
					return
				}
				s, err := conn.OpenUniStreamSync(ctx)
				if err != nil {
					return
				}
				_, _ = s.Write(payload)
				_ = s.Close()
				<-conn.Context().Done()
			}()
		}
	}()
	return h
}

func TestHostilePeerChunksAreRejectedAndThePeerBanned(t *testing.T) {
	o := newTestOrigin(t, 2)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	forged := o.chunk(3, 0)
	forged.Sign(otherKey) // a valid frame, signed by someone else
	corrupted := o.chunk(3, 1)
	corrupted.Data = append([]byte(nil), corrupted.Data...)
	corrupted.Data[10] ^= 0xff // signed by the origin, then changed on the way
	oversized := make([]byte, proto.MaxChunkFrame+1000)
	copy(oversized, o.chunk(3, 2).Append(nil))

	hostiles := []*hostilePeer{
		startHostilePeer(t, forged.Append(nil)),
		startHostilePeer(t, corrupted.Append(nil)),
		startHostilePeer(t, oversized),
	}
	// The victim knows no origin and no honest peer: whatever it stores came from the hostiles.
	cfg := testConfig(t, o.pub)
	for _, h := range hostiles {
		cfg.Bootstrap = append(cfg.Bootstrap, h.addr)
	}
	victim := startNode(t, cfg)

	require.Eventually(t, func() bool { return victim.Stats().ChunksRejected == 3 }, 10*time.Second, 20*time.Millisecond,
		"%+v", victim.Stats())
	require.Eventually(t, func() bool { return victim.Stats().Neighbours == 0 }, 3*time.Second, 20*time.Millisecond)
	require.Empty(t, victim.Window().Seqs(), "nothing of a bad chunk may be stored")
	code, _ := httpGetBody(t, victim.HLSURL())
	require.Equal(t, 404, code, "nothing may be served")
	code, _ = httpGetBody(t, "http://"+cfg.HTTPListener.Addr().String()+"/live/"+testStream+"/3/0.chunk")
	require.Equal(t, 404, code)

	// Bootstrap addresses are normally re-dialled after a failure; banned ones never are.
	require.Never(t, func() bool {
		for _, h := range hostiles {
			if h.accepted.Load() > 1 {
				return true
			}
		}
		return false
	}, 2*dialBackoff+500*time.Millisecond, 50*time.Millisecond, "a banned peer was dialled again")
	require.Equal(t, int64(3), victim.Stats().ChunksRejected)
}

func TestBannedPeerCannotComeBack(t *testing.T) {
	o := newTestOrigin(t, 2)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	victim := startNode(t, testConfig(t, o.pub))

	// The hostile dials the victim itself, twice, from the same socket.
	pc := loopbackUDP(t)
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close() })
	_, cliTLS, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	var id [16]byte
	_, _ = rand.Read(id[:])
	forged := o.chunk(1, 0)
	forged.Sign(otherKey)
	connect := func() (*quic.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		conn, err := tr.Dial(ctx, victim.Addr().(*net.UDPAddr), cliTLS, meshQUICConfig())
		require.NoError(t, err)
		ctrl, err := conn.OpenStreamSync(ctx)
		require.NoError(t, err)
		require.NoError(t, writeMessage(ctrl, &proto.Hello{MinVersion: 1, MaxVersion: 1, PeerID: id, Stream: testStream,
			Depths: []uint8{0xff, 0xff, 0xff, 0xff}}))
		_, err = readMessage(ctrl)
		return conn, err
	}
	conn, err := connect()
	require.NoError(t, err)
	s, err := conn.OpenUniStreamSync(context.Background())
	require.NoError(t, err)
	_, _ = s.Write(forged.Append(nil))
	_ = s.Close()
	select {
	case <-conn.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the victim did not disconnect a peer that sent a forged chunk")
	}
	require.Equal(t, int64(1), victim.Stats().ChunksRejected)

	// Coming back: the handshake may complete, but the victim closes the connection at once.
	conn2, _ := connect()
	select {
	case <-conn2.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the victim kept a connection from a banned peer")
	}
	require.Empty(t, victim.Window().Seqs())
}
