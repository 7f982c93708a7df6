package tracker

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker/registrar"
)

// testConfig is a tracker on 127.0.0.1 port 0, embedded in-memory NATS, no rate limit.
func testConfig(t *testing.T) Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return Config{HTTPListener: ln, RateLimit: rate.Inf}
}

// startTracker runs a tracker until the test ends and waits until it has loaded its state.
func startTracker(t *testing.T, cfg Config) *Tracker {
	t.Helper()
	tr, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("tracker did not stop within 15s")
		}
	})
	select {
	case <-tr.Ready():
	case err := <-done:
		t.Fatalf("tracker stopped before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("tracker not ready within 10s")
	}
	return tr
}

// testPriv is the stream's key in the tests; testKey its public half as watch links spell it.
var (
	testPriv = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	testKey  = proto.FormatPublicKey(testPriv.Public().(ed25519.PublicKey))
)

// lastIssued keeps the tests' registrations strictly newer than each other even within one
// millisecond, as an origin's are (it signs one every few seconds).
var lastIssued atomic.Int64

// signNow signs reg with priv at the current time, strictly after every earlier signNow.
func signNow(reg proto.StreamRegistration, priv ed25519.PrivateKey) proto.StreamRegistration {
	now := time.Now().UnixMilli()
	for {
		last := lastIssued.Load()
		ms := max(now, last+1)
		if lastIssued.CompareAndSwap(last, ms) {
			reg.Sign(priv, time.UnixMilli(ms))
			return reg
		}
	}
}

func unsignedRegistration(name string) proto.StreamRegistration {
	return proto.StreamRegistration{
		Name: name, QUICAddr: "127.0.0.1:9000", HTTPURL: "http://127.0.0.1:8080",
		Stripes: 4, SegmentDurationMs: 2000, BitrateBps: 3_000_000,
	}
}

// testRegistration is stream name under testPriv, signed now.
func testRegistration(t *testing.T, name string) proto.StreamRegistration {
	t.Helper()
	return signNow(unsignedRegistration(name), testPriv)
}

// testPeer is peer i's secret and id.
func testPeer(i int) (secret, id string) {
	s := sha256.Sum256(fmt.Appendf(nil, "peer-%d", i))
	pid := proto.PeerIDFromSecret(s)
	return hex.EncodeToString(s[:]), hex.EncodeToString(pid[:])
}

func testPeerID(i int) string { _, id := testPeer(i); return id }

func testAnnounce(stream string, i int) proto.AnnounceRequest {
	secret, id := testPeer(i)
	return proto.AnnounceRequest{
		PeerState: proto.PeerState{
			PeerID: id, Stream: stream, StreamKey: testKey, Addr: fmt.Sprintf("127.0.0.1:%d", 20000+i),
			UploadBps: 1_000_000, Depths: []int{1, 2, -1, 1}, FreeSlots: i % 3,
		},
		PeerSecret: secret,
	}
}

// registerNATS writes reg, signed by priv, straight into the tracker's NATS as an origin does.
func registerNATS(t *testing.T, natsURL string, priv ed25519.PrivateKey, reg proto.StreamRegistration) {
	t.Helper()
	r, err := registrar.New(registrar.Config{NATSURL: natsURL, Key: priv})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.Register(ctxT(t), reg))
}

func client(tr *Tracker) *trackerclient.Client {
	return &trackerclient.Client{BaseURL: tr.URL()}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAnnounceReturnsNeighboursAndOrigin(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	c, ctx := client(tr), ctxT(t)
	reg := testRegistration(t, "live")
	require.NoError(t, c.RegisterStream(ctx, reg))

	for i := 0; i < 5; i++ {
		resp, err := c.Announce(ctx, testAnnounce("live", i))
		require.NoError(t, err)
		require.Len(t, resp.Neighbours, i, "peer %d should see every earlier peer", i)
	}
	resp, err := c.Announce(ctx, testAnnounce("live", 5))
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, n := range resp.Neighbours {
		ids[n.PeerID] = true
		require.NotEqual(t, testPeerID(5), n.PeerID)
	}
	require.Equal(t, map[string]bool{testPeerID(0): true, testPeerID(1): true, testPeerID(2): true, testPeerID(3): true, testPeerID(4): true}, ids)
	require.Equal(t, proto.OriginInfo{QUICAddr: reg.QUICAddr, HTTPURL: reg.HTTPURL, PublicKey: reg.PublicKey}, resp.Origin)
	require.Equal(t, 4, resp.Stripes)
	require.Equal(t, int64(3000), resp.AnnounceIntervalMs)

	st, err := c.Stream(ctx, "live", testKey)
	require.NoError(t, err)
	require.Equal(t, 6, st.SwarmSize)
	require.Equal(t, int64(6_000_000), st.UploadBps)
	require.Len(t, st.DepthHistogram, 4)
	require.Equal(t, proto.StripeDepths{Stripe: 0, Peers: []int{0, 6}}, st.DepthHistogram[0])
	require.Equal(t, proto.StripeDepths{Stripe: 1, Peers: []int{0, 0, 6}}, st.DepthHistogram[1])
	require.Equal(t, proto.StripeDepths{Stripe: 2, Unattached: 6}, st.DepthHistogram[2])

	list, err := c.Streams(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "live", list[0].Name)
}

func TestAnnounceFillsInSourceAddressForUnspecifiedHost(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	c, ctx := client(tr), ctxT(t)
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "live")))
	a := testAnnounce("live", 1)
	a.Addr = ":4242"
	_, err := c.Announce(ctx, a)
	require.NoError(t, err)
	resp, err := c.Announce(ctx, testAnnounce("live", 2))
	require.NoError(t, err)
	require.Len(t, resp.Neighbours, 1)
	require.Equal(t, "127.0.0.1:4242", resp.Neighbours[0].Addr)
}

func TestSilentPeersExpire(t *testing.T) {
	cfg := testConfig(t)
	cfg.PeerTTL, cfg.AnnounceInterval = 2*time.Second, 500*time.Millisecond
	tr := startTracker(t, cfg)
	c, ctx := client(tr), ctxT(t)
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "live")))
	for i := 0; i < 3; i++ {
		_, err := c.Announce(ctx, testAnnounce("live", i))
		require.NoError(t, err)
	}
	st, err := c.Stream(ctx, "live", testKey)
	require.NoError(t, err)
	require.Equal(t, 3, st.SwarmSize)

	// peer-0 keeps announcing; the other two fall silent and must be forgotten.
	// The condition runs off the test goroutine: it collects failures instead of calling FailNow.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		resp, err := c.Announce(ctx, testAnnounce("live", 0))
		if !assert.NoError(ct, err) {
			return
		}
		st, err := c.Stream(ctx, "live", testKey)
		if !assert.NoError(ct, err) {
			return
		}
		assert.Equal(ct, 1, st.SwarmSize)
		assert.Empty(ct, resp.Neighbours)
	}, 8*time.Second, 200*time.Millisecond)
}

func postRaw(t *testing.T, url, body string) (int, proto.ErrorResponse) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var e proto.ErrorResponse
	if resp.StatusCode != http.StatusOK {
		require.NoError(t, json.Unmarshal(b, &e), "error body %q must be JSON", b)
		require.NotEmpty(t, e.Error)
	}
	return resp.StatusCode, e
}

func TestBadRequestsGetClientErrorsWithMessage(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	require.NoError(t, client(tr).RegisterStream(ctxT(t), testRegistration(t, "live")))
	announce := tr.URL() + proto.TrackerAnnouncePath
	good := func(mut func(*proto.AnnounceRequest)) string {
		a := testAnnounce("live", 1)
		mut(&a)
		b, err := json.Marshal(a)
		require.NoError(t, err)
		return string(b)
	}
	for _, tc := range []struct {
		name, url, body string
		want            int
		msg             string
	}{
		{"malformed json", announce, `{"peer_id":`, 400, "bad announce"},
		{"unknown stream", announce, good(func(a *proto.AnnounceRequest) { a.Stream = "nope" }), 404, "unknown stream"},
		{"bad address", announce, good(func(a *proto.AnnounceRequest) { a.Addr = "not-an-address" }), 400, "addr"},
		{"unknown key", announce, good(func(a *proto.AnnounceRequest) { a.StreamKey = proto.FormatPublicKey(make([]byte, 32)) }), 404, "unknown stream"},
		{"negative budget", announce, good(func(a *proto.AnnounceRequest) { a.UploadBps = -1 }), 400, "upload_bps"},
		{"more depths than stripes", announce, good(func(a *proto.AnnounceRequest) { a.Depths = []int{1, 1, 1, 1, 1} }), 400, "stripes"},
		{"far too many stripes", announce, good(func(a *proto.AnnounceRequest) { a.Depths = make([]int, 100) }), 400, "stripes"},
		{"over-long peer id", announce, good(func(a *proto.AnnounceRequest) { a.PeerID = strings.Repeat("x", 65) }), 400, "peer id"},
		{"body too large", announce, `{"peer_id":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "larger than"},
		{"bad registration", tr.URL() + proto.TrackerStreamsPath, `{"name":"x","public_key":"AAAA"}`, 400, "public key"},
		{"registration too large", tr.URL() + proto.TrackerStreamsPath, `{"name":"` + strings.Repeat("x", proto.MaxRegistrationBytes) + `"}`, 400, "too large"},
		{"unknown route", tr.URL() + "/v1/nothing", `{}`, 404, "Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, e := postRaw(t, tc.url, tc.body)
			require.Equal(t, tc.want, code, "error %q", e.Error)
			require.Contains(t, e.Error, tc.msg)
		})
	}

	// The client hands the server's message on and matches the sentinel.
	_, err := client(tr).Announce(ctxT(t), testAnnounce("nope", 1))
	require.ErrorIs(t, err, trackerclient.ErrUnknownStream)
	require.Contains(t, err.Error(), `unknown stream "nope"`)
}

func TestRateLimitAnswers429(t *testing.T) {
	cfg := testConfig(t)
	cfg.RateLimit, cfg.RateBurst = 5, 5
	tr := startTracker(t, cfg)
	ok, limited := 0, 0
	for range 30 {
		resp, err := http.Get(tr.URL() + proto.TrackerStreamsPath)
		require.NoError(t, err)
		_ = resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("unexpected status %d", resp.StatusCode)
		}
	}
	require.GreaterOrEqual(t, ok, 5, "the burst must pass")
	require.Positive(t, limited)
	_, err := client(tr).Streams(ctxT(t))
	require.ErrorIs(t, err, trackerclient.ErrRateLimited)
	// /healthz is not rate-limited: operators' probes must not be refused.
	resp, err := http.Get(tr.URL() + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestRegisterTokenIsRequiredWhenSet(t *testing.T) {
	cfg := testConfig(t)
	cfg.RegisterToken = "s3cret"
	tr := startTracker(t, cfg)
	c, ctx := client(tr), ctxT(t)
	err := c.RegisterStream(ctx, testRegistration(t, "live"))
	var apiErr *trackerclient.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusUnauthorized, apiErr.Status)
	c.RegisterToken = "s3cret"
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "live")))
}

func TestStreamRegisteredOverNATSIsAnnounceable(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	ctx := ctxT(t)
	registerNATS(t, tr.NATSURL(), testPriv, unsignedRegistration("cam.1"))
	require.Eventually(t, func() bool {
		_, err := client(tr).Announce(ctx, testAnnounce("cam.1", 1))
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
}

func TestTwoTrackersOnOneNATSGiveTheSameAnswers(t *testing.T) {
	a := startTracker(t, testConfig(t))
	cfgB := testConfig(t)
	cfgB.NATSURL = a.NATSURL()
	b := startTracker(t, cfgB)
	ctx := ctxT(t)
	registerNATS(t, a.NATSURL(), testPriv, unsignedRegistration("live"))

	require.Eventually(t, func() bool {
		_, err := client(a).Announce(ctx, testAnnounce("live", 1))
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		st, err := client(b).Stream(ctx, "live", testKey)
		return err == nil && st.SwarmSize == 1
	}, 5*time.Second, 50*time.Millisecond)
	resp, err := client(b).Announce(ctx, testAnnounce("live", 2))
	require.NoError(t, err)
	require.Len(t, resp.Neighbours, 1)
	require.Equal(t, testPeerID(1), resp.Neighbours[0].PeerID)
	require.Equal(t, "127.0.0.1:20001", resp.Neighbours[0].Addr)
	// And back: the peer that announced to b is a neighbour in a's answers.
	require.Eventually(t, func() bool {
		resp, err := client(a).Announce(ctx, testAnnounce("live", 1))
		return err == nil && len(resp.Neighbours) == 1 && resp.Neighbours[0].PeerID == testPeerID(2)
	}, 5*time.Second, 50*time.Millisecond)
}

func TestRestartWithDataDirKeepsStreams(t *testing.T) {
	dir := t.TempDir()
	reg := testRegistration(t, "live")

	cfg := testConfig(t)
	cfg.DataDir = dir
	first, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	<-first.Ready()
	require.NoError(t, client(first).RegisterStream(ctxT(t), reg))
	cancel()
	require.NoError(t, <-done)

	cfg = testConfig(t)
	cfg.DataDir = dir
	second := startTracker(t, cfg)
	st, err := client(second).Stream(ctxT(t), "live", testKey)
	require.NoError(t, err)
	require.Equal(t, reg, st.StreamRegistration)
}

func TestWithoutDataDirAStreamDoesNotSurviveRestart(t *testing.T) {
	// The counterpart of the test above: in-memory state really is gone, so that test proves
	// something.
	first := startTracker(t, testConfig(t))
	require.NoError(t, client(first).RegisterStream(ctxT(t), testRegistration(t, "live")))
	second := startTracker(t, testConfig(t))
	_, err := client(second).Stream(ctxT(t), "live", testKey)
	require.ErrorIs(t, err, trackerclient.ErrUnknownStream)
}

func TestHealthzAndMetrics(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	c, ctx := client(tr), ctxT(t)
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "live")))
	_, err := c.Announce(ctx, testAnnounce("live", 1))
	require.NoError(t, err)
	_, _ = c.Announce(ctx, testAnnounce("nope", 1))

	resp, err := http.Get(tr.URL() + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = http.Get(tr.URL() + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(body), `crowdsurf_tracker_announces_total{result="ok"} 1`)
	require.Contains(t, string(body), `crowdsurf_tracker_announces_total{result="unknown_stream"} 1`)
	require.Contains(t, string(body), "crowdsurf_tracker_peers 1")
	require.Contains(t, string(body), "crowdsurf_tracker_streams 1")
}

func TestNewRejectsAnnounceIntervalNotShorterThanTTL(t *testing.T) {
	_, err := New(Config{PeerTTL: time.Second, AnnounceInterval: 2 * time.Second})
	require.ErrorIs(t, err, ErrBadConfig)
}

func TestIPLimiterStaysBounded(t *testing.T) {
	l := newIPLimiter(1, 1, 100)
	now := time.Now()
	for i := range 1000 {
		require.True(t, l.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256), now))
	}
	require.LessOrEqual(t, l.size(), 100)
	require.False(t, l.allow("10.0.3.231", now), "the newest address has used its burst")
}

func TestStreamExpiresWhenOriginStopsRenewing(t *testing.T) {
	cfg := testConfig(t)
	cfg.StreamTTL = time.Second
	tr := startTracker(t, cfg)
	c, ctx := client(tr), ctxT(t)
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "live")))
	_, err := c.Stream(ctx, "live", testKey)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := c.Announce(ctx, testAnnounce("live", 1))
		return errors.Is(err, trackerclient.ErrUnknownStream)
	}, 5*time.Second, 100*time.Millisecond)
}

func TestConcurrentAnnouncesToTwoReplicas(t *testing.T) {
	a := startTracker(t, testConfig(t))
	cfgB := testConfig(t)
	cfgB.NATSURL = a.NATSURL()
	b := startTracker(t, cfgB)
	ctx := ctxT(t)
	require.NoError(t, client(a).RegisterStream(ctx, testRegistration(t, "live")))
	require.Eventually(t, func() bool { _, err := client(b).Stream(ctx, "live", testKey); return err == nil }, 5*time.Second, 20*time.Millisecond)

	const peers, rounds = 40, 5
	errs := make(chan error, peers)
	for i := range peers {
		go func() {
			c := client(a)
			if i%2 == 1 {
				c = client(b)
			}
			var err error
			for range rounds {
				var resp proto.AnnounceResponse
				if resp, err = c.Announce(ctx, testAnnounce("live", i)); err != nil {
					break
				}
				for _, n := range resp.Neighbours {
					if n.PeerID == testPeerID(i) {
						err = fmt.Errorf("peer %d got itself as neighbour", i)
					}
				}
			}
			errs <- err
		}()
	}
	for range peers {
		require.NoError(t, <-errs)
	}
	for _, tr := range []*Tracker{a, b} {
		require.Eventually(t, func() bool {
			st, err := client(tr).Stream(ctx, "live", testKey)
			return err == nil && st.SwarmSize == peers
		}, 5*time.Second, 20*time.Millisecond)
	}
}

// BenchmarkAnnounce measures one announce over loopback HTTP through the Go client in a swarm of
// 1000 peers (a write, when the announce needs one, is queued; it follows the answer).
func BenchmarkAnnounce(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	tr, err := New(Config{HTTPListener: ln, RateLimit: rate.Inf})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-tr.Ready()
	c := client(tr)
	require.NoError(b, c.RegisterStream(ctx, signNow(unsignedRegistration("live"), testPriv)))
	for i := range 1000 {
		_, err := c.Announce(ctx, testAnnounce("live", i))
		require.NoError(b, err)
	}
	i := 0
	for b.Loop() {
		_, err := c.Announce(ctx, testAnnounce("live", i%1000))
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}
