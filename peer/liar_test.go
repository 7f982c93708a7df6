package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/player"
	"github.com/crowdsurf/crowdsurf/proto"
)

// liar is a hostile neighbour written against our own proto: it listens like a peer, completes
// the handshake with a plausible HELLO (depth 1 everywhere, plenty of free slots), accepts every
// SUBSCRIBE and keeps itself alive with STATUS heartbeats, but never pushes a chunk. On connect it
// sends the HAVEs that haves returns, to drag the victim's idea of the stream elsewhere.
type liar struct {
	id         [16]byte
	addr       string
	subscribed atomic.Int32
	conns      atomic.Int32

	mu       sync.Mutex
	requests map[chunkKey]int // REQUESTs received, per chunk
}

// requested is how many REQUESTs for key the liar received.
func (l *liar) requested(key chunkKey) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests[key]
}

func startLiar(t *testing.T, depths []uint8, haves func() []proto.Message) *liar {
	t.Helper()
	ln, addr := rawListener(t)
	l := &liar{addr: addr, requests: make(map[chunkKey]int)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	_, _ = rand.Read(l.id[:])
	id := l.id
	wg.Go(func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			l.conns.Add(1)
			wg.Go(func() { l.serve(ctx, conn, id, depths, haves) })
		}
	})
	return l
}

func (l *liar) serve(ctx context.Context, conn *quic.Conn, id [16]byte, depths []uint8, haves func() []proto.Message) {
	defer conn.CloseWithError(0, "")
	ctrl, err := conn.AcceptStream(ctx)
	if err != nil {
		return
	}
	if _, err := readMessage(ctrl); err != nil {
		return
	}
	var mu sync.Mutex
	write := func(m proto.Message) error {
		mu.Lock()
		defer mu.Unlock()
		return writeMessage(ctrl, m)
	}
	if write(&proto.Hello{MinVersion: proto.MinVersion, MaxVersion: proto.MaxVersion, PeerID: id, Stream: testStream,
		Depths: depths, FreeSlots: 16}) != nil {
		return
	}
	if haves != nil {
		for _, m := range haves() {
			if write(m) != nil {
				return
			}
		}
	}
	go func() {
		t := time.NewTicker(300 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-conn.Context().Done():
				return
			case <-t.C:
				if write(&proto.Status{Depths: depths, FreeSlots: 16}) != nil {
					return
				}
				if haves != nil {
					for _, m := range haves() {
						if write(m) != nil {
							return
						}
					}
				}
			}
		}
	}()
	for {
		m, err := readMessage(ctrl)
		if err != nil {
			return
		}
		if r, ok := m.(*proto.Request); ok {
			l.mu.Lock()
			l.requests[chunkKey{r.Seq, r.Index}]++
			l.mu.Unlock()
		}
		if sub, ok := m.(*proto.Subscribe); ok {
			l.subscribed.Add(1)
			if write(&proto.SubscribeAck{Stripe: sub.Stripe, Accepted: true, Depth: depths[sub.Stripe]}) != nil {
				return
			}
		}
	}
}

// futureHaves claims thousands of segments that do not exist yet, and every chunk index of the
// next two segments: what froze a viewer and made another send 65,539 requests to the CDN.
func futureHaves(o *testOrigin) func() []proto.Message {
	return func() []proto.Message {
		newest, _ := o.window.Newest()
		var ranges []proto.ChunkRange
		for seq := newest + 1; seq <= newest+2; seq++ {
			for first := uint32(0); first < proto.MaxChunksPerSegment; first += 4096 {
				ranges = append(ranges, proto.ChunkRange{Seq: seq, First: first, Count: 4096})
			}
		}
		for seq := newest + 3; seq < newest+3000; seq++ {
			ranges = append(ranges, proto.ChunkRange{Seq: seq, First: 0, Count: 64})
		}
		return haveMessages(ranges)
	}
}

// cdnCounter counts the CDN requests per segment seq in front of the test origin's HTTP.
type cdnCounter struct {
	mu     sync.Mutex
	perSeq map[uint64]int
	total  int
}

func perSegmentCDN(t *testing.T, o *testOrigin) (*cdnCounter, string) {
	t.Helper()
	target, err := url.Parse(o.http.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	c := &cdnCounter{perSeq: make(map[uint64]int)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /live/STREAM/SEQ/INDEX.chunk or /live/STREAM/SEQ/all.chunks
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if len(parts) == 4 {
			if seq, err := strconv.ParseUint(parts[2], 10, 64); err == nil {
				c.mu.Lock()
				c.perSeq[seq]++
				c.total++
				c.mu.Unlock()
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func (c *cdnCounter) max() (seq uint64, n int, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, k := range c.perSeq {
		if k > n {
			seq, n = s, k
		}
	}
	return seq, n, c.total
}

// watch plays a node's local HLS like a viewer's player and returns its summary when ctx ends.
func watch(t *testing.T, ctx context.Context, n *Node) <-chan player.Summary {
	t.Helper()
	p, err := player.New(player.Config{URL: n.HLSURL(), SkipMediaCheck: true})
	require.NoError(t, err)
	out := make(chan player.Summary, 1)
	go func() {
		_ = p.Run(ctx)
		out <- p.Summary()
	}()
	return out
}

// TestLyingParentCannotFreezeAViewer is the attack that froze a viewer for 29 s: a neighbour that
// claims a shallow depth in HELLO and STATUS, accepts every SUBSCRIBE, heartbeats, and pushes
// nothing, after a HAVE of thousands of future segments. The victim must leave it on every stripe
// (a parent is kept for what it delivers), never believe the future, and its player must not stall.
func TestLyingParentCannotFreezeAViewer(t *testing.T) {
	o := newTestOrigin(t, 2)
	// One liar also claims the future (and is banned for it); the other only withholds, so the
	// delivery rule alone must find it.
	liars := []*liar{startLiar(t, []uint8{1, 1, 1, 1}, futureHaves(o)), startLiar(t, []uint8{1, 1, 1, 1}, nil)}
	// The victim meets the liars and the root first (the liars, claiming depth 1, rank before the
	// root); the honest viewer dials it a moment later, as a tracker's next answer would bring it.
	victim := startNode(t, o.peerConfig(t, liars[0].addr, liars[1].addr, o.root.Addr().String()))
	require.Eventually(t, func() bool { return liars[0].subscribed.Load()+liars[1].subscribed.Load() > 0 },
		5*time.Second, 10*time.Millisecond, "the victim never subscribed to a liar: the test would prove nothing")
	startNode(t, o.peerConfig(t, o.root.Addr().String(), victim.Addr().String()))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const segments = 24
	done := o.playAsync(ctx, 0, segments, nil)
	pctx, pcancel := context.WithCancel(ctx)
	summary := watch(t, pctx, victim)
	<-done
	pcancel()
	s := <-summary
	st := victim.Stats()
	t.Logf("victim: %d segments played, %d stalls (%.0f ms), startup %.0f ms; parents withheld %d, false HAVEs %d, liar subscriptions %d",
		s.Segments, s.Stalls, s.StallMs, s.StartupMs, st.ParentsWithheld, st.FalseHaves, liars[0].subscribed.Load()+liars[1].subscribed.Load())

	// Before the defences the victim completed no segment at all and its player stalled for 29 s
	// of 35. The bound is not zero because this harness's 500 ms segments give a player 1.5 s of
	// buffer, and on a loaded CI machine an unattacked viewer of this setup already stalls for a
	// few hundred milliseconds now and then; the 2 s segments of a real stream have 6 s.
	require.True(t, s.Started, "the victim's player never started: %+v", st)
	require.Less(t, s.StallRatio, 0.10, "the victim's player stalled: %+v / %+v", s, st)
	require.GreaterOrEqual(t, s.Segments, segments*3/4, "the player must keep playing")
	require.Positive(t, liars[0].subscribed.Load()+liars[1].subscribed.Load(), "the liars were never tried: the test proves nothing")
	require.Positive(t, st.ParentsWithheld, "a parent that never pushed must be left for what it did not deliver")
	require.Positive(t, st.FalseHaves, "HAVEs of segments a window ahead of the signed edge are lies")
	for _, l := range liars {
		require.NotContains(t, st.ParentIDs, hex.EncodeToString(l.id[:]), "a liar is still a parent at the end")
	}
	for _, id := range st.ParentIDs {
		require.NotEmpty(t, id, "every stripe has a parent at the end: %+v", st)
	}
	newest, _ := o.window.Newest()
	seqs := victim.Window().Seqs()
	require.NotEmpty(t, seqs)
	require.LessOrEqual(t, seqs[len(seqs)-1], newest, "nothing beyond the origin's edge may enter the window")
	requireSegmentsIdentical(t, victim, newest-4, newest)
}

// TestHaveFloodCannotAmplifyCDNRequests: HAVEs of chunk indexes 0-65,535 of the next two segments
// once made a victim with no honest neighbour send 65,539 requests to the CDN. The fallback asks
// only for chunks the origin's signatures prove exist, so each segment costs the CDN at most its
// chunk count plus cdnSlack requests, and the player does not stall.
func TestHaveFloodCannotAmplifyCDNRequests(t *testing.T) {
	o := newTestOrigin(t, 2)
	cdn, cdnURL := perSegmentCDN(t, o)
	l := startLiar(t, []uint8{1, 1, 1, 1}, futureHaves(o))
	cfg := o.peerConfig(t, l.addr)
	cfg.OriginHTTP = cdnURL
	victim := startNode(t, cfg)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const segments = 16
	done := o.playAsync(ctx, 0, segments, nil)
	pctx, pcancel := context.WithCancel(ctx)
	summary := watch(t, pctx, victim)
	<-done
	pcancel()
	s := <-summary
	seq, most, total := cdn.max()
	t.Logf("victim: %d segments, %d stalls; CDN requests: %d in all, at most %d for segment %d (%d chunks each)",
		s.Segments, s.Stalls, total, most, seq, testChunks)
	// A request in flight is counted by the node before the CDN sees it: once the stream has
	// ended the two counts meet.
	require.Eventually(t, func() bool {
		_, _, total = cdn.max()
		return int64(total) == victim.Stats().CDNRequests
	}, 3*time.Second, 20*time.Millisecond, "the node counts every CDN request it makes")
	require.LessOrEqual(t, most, testChunks+cdnSlack, "segment %d cost the CDN %d requests", seq, most)
	// The victim has nobody honest: it plays off the CDN alone, which at this harness's 500 ms
	// segments stalls briefly now and then even unattacked, so what is asserted is that it keeps
	// playing (stalls with an honest mesh: TestLyingParentCannotFreezeAViewer).
	require.GreaterOrEqual(t, s.Segments, segments*3/4, "%+v", s)
	require.Positive(t, l.conns.Load())
}

// TestFalseOriginIsRefused: depth 0 is the origin's place in every tree, and the origin proves it
// holds the stream key in the TLS handshake. A neighbour that claims depth 0 without that proof
// once ranked first everywhere and was treated as the root; now it is refused and never re-dialled.
func TestFalseOriginIsRefused(t *testing.T) {
	o := newTestOrigin(t, 2)
	impostor := startLiar(t, []uint8{0, 0, 0, 0}, nil)
	victim := startNode(t, o.peerConfig(t, impostor.addr, o.root.Addr().String()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := o.playAsync(ctx, 0, 8, nil)
	<-done
	require.Eventually(t, func() bool { return allComplete(victim, 4, 8) }, 5*time.Second, 20*time.Millisecond, "%+v", victim.Stats())
	require.Zero(t, impostor.subscribed.Load(), "nobody subscribes to a false origin")
	require.EqualValues(t, 1, impostor.conns.Load(), "a false origin is banned, not dialled again")
	st := victim.Stats()
	require.Equal(t, 1, st.Neighbours, "only the real origin is a neighbour: %+v", st)
	require.Positive(t, st.BytesFromOrigin)
}

// TestFallbackRefusesRedirectsToAnotherHost: whoever answers for the CDN path must not be able to
// aim every peer's requests at a third party.
func TestFallbackRefusesRedirectsToAnotherHost(t *testing.T) {
	o := newTestOrigin(t, 2)
	var thirdParty atomic.Int32
	victimSite := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { thirdParty.Add(1) }))
	t.Cleanup(victimSite.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".m3u8") {
			o.http.Config.Handler.ServeHTTP(w, r)
			return
		}
		http.Redirect(w, r, victimSite.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	cfg := o.peerConfig(t)
	cfg.OriginHTTP = redirector.URL
	n := startNode(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	<-o.playAsync(ctx, 0, 6, nil)
	require.Eventually(t, func() bool { return n.Stats().CDNRequests >= 3 }, 3*time.Second, 20*time.Millisecond, "%+v", n.Stats())
	require.Zero(t, thirdParty.Load(), "a redirect to another host was followed")
	require.Empty(t, n.Window().Seqs())
}

// TestHandshakeRefusalsAreClassified: a neighbour on another stream, with another stripe count or
// speaking another protocol version is refused with an error callers can tell apart.
func TestHandshakeRefusalsAreClassified(t *testing.T) {
	cases := []struct {
		name  string
		hello proto.Hello
		want  error
	}{
		{"other stream", proto.Hello{MinVersion: proto.MinVersion, MaxVersion: proto.MaxVersion, Stream: "cam2", Depths: []uint8{1, 1, 1, 1}}, ErrOtherStream},
		{"other stripe count", proto.Hello{MinVersion: proto.MinVersion, MaxVersion: proto.MaxVersion, Stream: testStream, Depths: []uint8{1, 1}}, ErrStripeCount},
		{"future version", proto.Hello{MinVersion: proto.MaxVersion + 1, MaxVersion: proto.MaxVersion + 1, Stream: testStream, Depths: []uint8{1, 1, 1, 1}}, proto.ErrUnsupportedVersion},
		{"false origin", proto.Hello{MinVersion: proto.MinVersion, MaxVersion: proto.MaxVersion, Stream: testStream, Depths: []uint8{0, 0, 0, 0}}, ErrFalseOrigin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A raw server answering with the case's HELLO.
			ln, addr := rawListener(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			go func() {
				conn, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				ctrl, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				if _, err := readMessage(ctrl); err != nil {
					return
				}
				hello := tc.hello
				_, _ = rand.Read(hello.PeerID[:])
				_ = writeMessage(ctrl, &hello)
				<-ctx.Done()
			}()

			n, err := New(testConfig(t, testIdentity(t).Public().(ed25519.PublicKey)))
			require.NoError(t, err)
			t.Cleanup(func() { n.tr.Close() })
			udp, err := net.ResolveUDPAddr("udp", addr)
			require.NoError(t, err)
			conn, err := n.tr.Dial(ctx, udp, n.tlsClient, n.quicConf)
			require.NoError(t, err)
			ctrl, err := conn.OpenStreamSync(ctx)
			require.NoError(t, err)
			err = n.handshake(n.newNeighbour(conn, ctrl, true), true)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

// TestBanListIsBounded: a stream of hostile ids and ports cannot grow the ban list for ever.
func TestBanListIsBounded(t *testing.T) {
	b := newBanList()
	for i := range 3 * maxBans {
		var id [16]byte
		id[0], id[1] = byte(i), byte(i>>8)
		b.banPeer(id)
		b.banAddr("127.0.0.1:" + strconv.Itoa(i))
	}
	require.Len(t, b.peers, maxBans)
	require.Len(t, b.addrs, maxBans)
	require.True(t, b.addr("127.0.0.1:"+strconv.Itoa(3*maxBans-1)), "the newest ban is kept")
}
