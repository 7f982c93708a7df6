package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testrun"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

const (
	testStream     = "cam1"
	testSegDur     = 500 * time.Millisecond
	testChunks     = 5 // chunks per segment
	testChunkEvery = testSegDur / testChunks
)

var testEpoch = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// testOrigin is a fake origin: it cuts a synthetic stream into signed chunks on a live schedule,
// hands them to a root Node and keeps them in a window served over HTTP (the CDN path).
type testOrigin struct {
	t      testing.TB
	key    ed25519.PrivateKey
	pub    ed25519.PublicKey
	window *segwindow.Window
	http   *httptest.Server
	root   *Node
}

func newTestOrigin(t testing.TB, seedCopies int) *testOrigin {
	t.Helper()
	return newTestOriginWith(t, seedCopies, func(*Config) {})
}

// newTestOriginWith is newTestOrigin with the root's config adjusted by tweak.
func newTestOriginWith(t testing.TB, seedCopies int, tweak func(*Config)) *testOrigin {
	t.Helper()
	return newTestOriginKeyed(t, testIdentity(t), seedCopies, tweak)
}

// testIdentity is a fresh origin signing key.
func testIdentity(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return key
}

// newTestOriginKeyed is newTestOriginWith signing with key (for a Mux made before the origin).
func newTestOriginKeyed(t testing.TB, key ed25519.PrivateKey, seedCopies int, tweak func(*Config)) *testOrigin {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	o := &testOrigin{t: t, key: key, pub: pub}
	o.window = segwindow.New(segwindow.Config{Stream: testStream, PlaylistLength: 6, TargetDuration: testSegDur})
	e := echo.New()
	segwindow.NewServer(func(s string) (*segwindow.Window, bool) { return o.window, s == testStream },
		segwindow.ServerOptions{}).Register(e)
	o.http = httptest.NewServer(e)
	t.Cleanup(o.http.Close)
	cfg := testConfig(t, pub)
	cfg.Root = true
	cfg.Identity = key
	cfg.SeedCopies = seedCopies
	cfg.HTTPListener = nil
	tweak(&cfg)
	o.root = startNode(t, cfg)
	return o
}

// registration is the test origin's stream registration, signed with key (the origin's own, or
// another to forge one).
func (o *testOrigin) registration(key ed25519.PrivateKey) *proto.StreamRegistration {
	reg := &proto.StreamRegistration{Name: testStream, QUICAddr: o.root.Addr().String(), HTTPURL: o.http.URL, Stripes: 4,
		SegmentDurationMs: testSegDur.Milliseconds()}
	reg.Sign(key, time.Now())
	return reg
}

// segmentData is the recognisable payload of one chunk.
func segmentData(seq uint64, index int) []byte {
	b := make([]byte, 3000+index*500)
	for i := range b {
		b[i] = byte(seq*31 + uint64(index)*7 + uint64(i)%251)
	}
	return b
}

func (o *testOrigin) chunk(seq uint64, index int) *proto.Chunk {
	c := &proto.Chunk{
		ID:   proto.ChunkID{Stream: testStream, Seq: seq, Index: uint32(index)},
		Data: segmentData(seq, index),
	}
	if index == testChunks-1 {
		var total uint64
		for i := range testChunks {
			total += uint64(len(segmentData(seq, i)))
		}
		c.Flags |= proto.FlagLast
		c.Info = proto.SegmentInfo{
			ChunkCount:      testChunks,
			ByteLength:      total,
			Duration:        testSegDur,
			ProgramDateTime: testEpoch.Add(time.Duration(seq) * testSegDur),
		}
	}
	c.Sign(o.key)
	return c
}

// emit publishes one chunk to the root and the origin's HTTP window.
func (o *testOrigin) emit(c *proto.Chunk) {
	o.window.AddChunk(c)
	o.root.Publish(c)
}

// play emits segments from..to-1 live, chunk by chunk, and returns when done or ctx ends.
// skip, when set, says which chunks the root must not get (the swarm then has to fall back).
func (o *testOrigin) play(ctx context.Context, from, to uint64, skip func(seq uint64, index int) bool) {
	t := time.NewTicker(testChunkEvery)
	defer t.Stop()
	for seq := from; seq < to; seq++ {
		for i := range testChunks {
			c := o.chunk(seq, i)
			if skip != nil && skip(seq, i) {
				o.window.AddChunk(c)
			} else {
				o.emit(c)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
}

// playAsync plays in the background; the returned channel closes when playing ends.
func (o *testOrigin) playAsync(ctx context.Context, from, to uint64, skip func(uint64, int) bool) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.play(ctx, from, to, skip)
	}()
	return done
}

// expected is what a segment's bytes must be.
func expectedSegment(seq uint64) []byte {
	var b []byte
	for i := range testChunks {
		b = append(b, segmentData(seq, i)...)
	}
	return b
}

// rawListener is a mesh listener on loopback that no Node runs: tests write hostile nodes
// against our own proto on it. It returns the listener and its address.
func rawListener(t testing.TB) (*quic.Listener, string) {
	t.Helper()
	pc := loopbackUDP(t)
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close() })
	srvTLS, _, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	ln, err := tr.Listen(srvTLS, meshQUICConfig())
	require.NoError(t, err)
	return ln, pc.LocalAddr().String()
}

func loopbackUDP(t testing.TB) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	return pc
}

// testConfig is a node config on loopback, port 0, with short segments and a local HLS listener.
func testConfig(t testing.TB, originKey ed25519.PublicKey) Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("PEER_DEBUG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return Config{
		Logger:         logger,
		Stream:         testStream,
		OriginKey:      originKey,
		PacketConn:     loopbackUDP(t),
		HTTPListener:   ln,
		Stripes:        4,
		TargetDuration: testSegDur,
		PlaylistLength: 6,
	}
}

// peerConfig is a viewer's config that knows the test origin.
func (o *testOrigin) peerConfig(t testing.TB, bootstrap ...string) Config {
	cfg := testConfig(t, o.pub)
	cfg.OriginHTTP = o.http.URL
	cfg.Bootstrap = bootstrap
	return cfg
}

// startNode runs a node until the test ends and checks that Run returns cleanly.
func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	require.NoError(t, err)
	testrun.Background(t, "node "+n.PeerID(), 10*time.Second, n.Run)
	return n
}

// startStoppableNode is startNode with a stop function that ends the node at once.
func startStoppableNode(t testing.TB, cfg Config) (*Node, func()) {
	t.Helper()
	n, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.Run(ctx)
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return n, stop
}

// requireSegmentsIdentical checks that the node holds every segment of seqs, complete and
// byte-identical to what the origin produced.
func requireSegmentsIdentical(t testing.TB, n *Node, from, to uint64) {
	t.Helper()
	for seq := from; seq < to; seq++ {
		b, meta, ok := n.Window().Segment(seq)
		require.True(t, ok, "node %s misses segment %d", n.PeerID()[:8], seq)
		require.Equal(t, expectedSegment(seq), b, "node %s segment %d", n.PeerID()[:8], seq)
		require.Equal(t, testSegDur, meta.Duration)
	}
}

func allComplete(n *Node, from, to uint64) bool {
	for seq := from; seq < to; seq++ {
		if _, _, ok := n.Window().Segment(seq); !ok {
			return false
		}
	}
	return true
}

func httpGetBody(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func segURI(seq uint64) string { return fmt.Sprintf("%d.ts", seq) }
