package tracker

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker/registrar"
)

const proxyHeader = "X-Forwarded-For"

// reg0QUIC is the origin address of unsignedRegistration.
const reg0QUIC = "127.0.0.1:9000"

// proxied is a tracker behind a proxy we pretend to be: requests say where they come from in
// X-Forwarded-For, so one test process can be many hosts.
func proxied(t *testing.T) *Tracker {
	t.Helper()
	cfg := testConfig(t)
	cfg.TrustProxyHeader = proxyHeader
	return startTracker(t, cfg)
}

// fromHost sets the proxy header on every request.
type fromHost struct{ ip string }

func (f fromHost) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(proxyHeader, f.ip)
	return http.DefaultTransport.RoundTrip(r)
}

// clientFrom is a client whose requests come from ip as far as the tracker can tell.
func clientFrom(tr *Tracker, ip string) *trackerclient.Client {
	return &trackerclient.Client{BaseURL: tr.URL(), HTTPClient: &http.Client{Transport: fromHost{ip}}}
}

// announceFrom is peer i announcing addr from host ip.
func announceFrom(t *testing.T, tr *Tracker, ip string, i int, addr string) (proto.AnnounceResponse, error) {
	t.Helper()
	a := testAnnounce("live", i)
	a.Addr = addr
	return clientFrom(tr, ip).Announce(ctxT(t), a)
}

func neighbourAddrs(resp proto.AnnounceResponse) map[string]string {
	out := map[string]string{}
	for _, n := range resp.Neighbours {
		out[n.PeerID] = n.Addr
	}
	return out
}

func TestAnnounceOfAnAddressNotOnTheAnnouncingHostIsRefused(t *testing.T) {
	tr := proxied(t)
	require.NoError(t, client(tr).RegisterStream(ctxT(t), testRegistration(t, "live")))
	for _, tc := range []struct {
		name, from, addr string
		want             error
		code             int
	}{
		{"a third party's address", "198.51.100.7", "203.0.113.80:443", trackerclient.ErrForbidden, http.StatusForbidden},
		{"loopback from a remote host", "198.51.100.7", "127.0.0.1:4242", trackerclient.ErrForbidden, http.StatusForbidden},
		{"broadcast", "198.51.100.7", "255.255.255.255:4242", trackerclient.ErrBadRequest, http.StatusBadRequest},
		{"multicast", "198.51.100.7", "224.0.0.251:5353", trackerclient.ErrBadRequest, http.StatusBadRequest},
		{"host name", "198.51.100.7", "victim.example.org:4242", trackerclient.ErrBadRequest, http.StatusBadRequest},
		{"ipv6 third party", "2001:db8::7", "[2001:db8::99]:4242", trackerclient.ErrForbidden, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := announceFrom(t, tr, tc.from, 1, tc.addr)
			require.ErrorIs(t, err, tc.want)
			var apiErr *trackerclient.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.code, apiErr.Status, apiErr.Message)
		})
	}
	st, err := client(tr).Stream(ctxT(t), "live", testKey)
	require.NoError(t, err)
	require.Zero(t, st.SwarmSize, "no refused announce joined the swarm")

	// Its own address, or an empty host, is fine; loopback may name loopback.
	resp, err := announceFrom(t, tr, "198.51.100.7", 1, "198.51.100.7:4242")
	require.NoError(t, err)
	require.Empty(t, resp.Neighbours)
	_, err = announceFrom(t, tr, "2001:db8::8", 2, "[::]:4242")
	require.NoError(t, err)
	_, err = client(tr).Announce(ctxT(t), testAnnounce("live", 3)) // 127.0.0.1 naming 127.0.0.1
	require.NoError(t, err)
	resp, err = announceFrom(t, tr, "192.0.2.1", 4, "192.0.2.1:1")
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		testPeerID(1): "198.51.100.7:4242", testPeerID(2): "[2001:db8::8]:4242", testPeerID(3): "127.0.0.1:20003",
	}, neighbourAddrs(resp))
}

func TestAllowForeignAddrAcceptsSimulatedAddresses(t *testing.T) {
	cfg := testConfig(t)
	cfg.AllowForeignAddr = true
	tr := startTracker(t, cfg)
	require.NoError(t, client(tr).RegisterStream(ctxT(t), testRegistration(t, "live")))
	a := testAnnounce("live", 1)
	a.Addr = "10.0.0.7:4433"
	_, err := client(tr).Announce(ctxT(t), a)
	require.NoError(t, err)
	a.Addr = "255.255.255.255:4433"
	_, err = client(tr).Announce(ctxT(t), a)
	require.ErrorIs(t, err, trackerclient.ErrBadRequest, "broadcast stays refused")
}

func TestAnnounceUnderAnotherPeersIDWithoutItsSecretIsRefusedAndDoesNotMoveIt(t *testing.T) {
	tr := proxied(t)
	require.NoError(t, client(tr).RegisterStream(ctxT(t), testRegistration(t, "live")))
	_, err := announceFrom(t, tr, "198.51.100.1", 1, "198.51.100.1:4242")
	require.NoError(t, err)

	// The attacker knows peer 1's id (every neighbour answer shows it) but not its secret.
	hijack := testAnnounce("live", 1)
	hijack.Addr = "198.51.100.66:4242"
	attackerSecret, _ := testPeer(666)
	hijack.PeerSecret = attackerSecret
	_, err = clientFrom(tr, "198.51.100.66").Announce(ctxT(t), hijack)
	require.ErrorIs(t, err, trackerclient.ErrForbidden)
	require.ErrorIs(t, err, trackerclient.ErrForbidden)
	require.Contains(t, err.Error(), "does not belong")

	resp, err := announceFrom(t, tr, "198.51.100.2", 2, "198.51.100.2:4242")
	require.NoError(t, err)
	require.Equal(t, map[string]string{testPeerID(1): "198.51.100.1:4242"}, neighbourAddrs(resp), "peer 1 keeps its address")
}

func TestSecretsAreNeverStoredNorShown(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	require.NoError(t, client(tr).RegisterStream(ctxT(t), testRegistration(t, "live")))
	a := testAnnounce("live", 1)
	_, err := client(tr).Announce(ctxT(t), a)
	require.NoError(t, err)
	var e jetstream.KeyValueEntry
	require.Eventually(t, func() bool { // the write follows the answer (writer.go)
		e, err = tr.peersKV.Get(ctxT(t), peerKey(swarmID{"live", testKey}, a.PeerID))
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the announce was never stored")
	require.Contains(t, string(e.Value()), a.PeerID)
	require.NotContains(t, string(e.Value()), a.PeerSecret)
	resp, err := client(tr).Announce(ctxT(t), testAnnounce("live", 2))
	require.NoError(t, err)
	b, err := json.Marshal(resp)
	require.NoError(t, err)
	require.NotContains(t, string(b), a.PeerSecret)
}

func TestPeersPerHostAreCappedButLoopbackIsExempt(t *testing.T) {
	tr := proxied(t)
	require.NoError(t, client(tr).RegisterStream(ctxT(t), testRegistration(t, "live")))
	for i := range 8 {
		resp, err := announceFrom(t, tr, "198.51.100.9", i, fmt.Sprintf("198.51.100.9:%d", 5000+i))
		require.NoError(t, err)
		require.True(t, resp.Listed)
	}
	// The ninth peer of one host (a carrier's NAT, or an attacker) is answered, so it can play,
	// but never handed out.
	resp, err := announceFrom(t, tr, "198.51.100.9", 8, "198.51.100.9:5008")
	require.NoError(t, err)
	require.False(t, resp.Listed)
	require.Len(t, resp.Neighbours, 8)
	require.Equal(t, reg0QUIC, resp.Origin.QUICAddr)
	resp, err = announceFrom(t, tr, "198.51.100.9", 3, "198.51.100.9:6003")
	require.NoError(t, err)
	require.True(t, resp.Listed, "a known peer may still re-announce, even on a new port")
	for i := 100; i < 120; i++ {
		resp, err := client(tr).Announce(ctxT(t), testAnnounce("live", i))
		require.NoError(t, err, "loopback peer %d", i)
		require.True(t, resp.Listed, "loopback peer %d", i)
		require.NotContains(t, neighbourAddrs(resp), testPeerID(8))
	}
	st, err := client(tr).Stream(ctxT(t), "live", testKey)
	require.NoError(t, err)
	require.Equal(t, 28, st.SwarmSize)
}

func TestProxyHeaderIsIgnoredUnlessTrusted(t *testing.T) {
	tr := startTracker(t, testConfig(t)) // no TrustProxyHeader
	require.NoError(t, client(tr).RegisterStream(ctxT(t), testRegistration(t, "live")))
	_, err := announceFrom(t, tr, "198.51.100.7", 1, "198.51.100.7:4242")
	require.ErrorIs(t, err, trackerclient.ErrForbidden, "the header is the client's word, and the connection is 127.0.0.1")
}

func TestHijackingRegistrationIsRefusedAndTheStreamKeepsItsOrigin(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	c, ctx := client(tr), ctxT(t)
	real := testRegistration(t, "live")
	require.NoError(t, c.RegisterStream(ctx, real))

	attacker := unsignedRegistration("live")
	attacker.QUICAddr, attacker.HTTPURL = "203.0.113.66:4433", "http://203.0.113.66"
	_, attackerPriv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)

	unsigned := attacker
	unsigned.PublicKey, unsigned.IssuedAtMs = testKey, time.Now().UnixMilli()
	signedByAttacker := signNow(attacker, attackerPriv)
	signedByAttacker.PublicKey = testKey // the real key, which is public, with the attacker's signature
	oldSignature := attacker
	oldSignature.PublicKey, oldSignature.IssuedAtMs, oldSignature.Signature = testKey, real.IssuedAtMs+1, real.Signature

	for _, tc := range []struct {
		name string
		reg  proto.StreamRegistration
		want error
	}{
		{"unsigned", unsigned, trackerclient.ErrForbidden},
		{"signed by another key", signedByAttacker, trackerclient.ErrForbidden},
		{"the real signature on other addresses", oldSignature, trackerclient.ErrForbidden},
		{"a replay of the last registration", real, trackerclient.ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, c.RegisterStream(ctx, tc.reg), tc.want)
		})
	}

	// A replay of an older one, after the origin renewed.
	renewed := testRegistration(t, "live")
	require.NoError(t, c.RegisterStream(ctx, renewed))
	err = c.RegisterStream(ctx, real)
	require.ErrorIs(t, err, trackerclient.ErrForbidden)
	require.Contains(t, err.Error(), "stale registration")

	resp, err := c.Announce(ctx, testAnnounce("live", 1))
	require.NoError(t, err)
	require.Equal(t, proto.OriginInfo{QUICAddr: real.QUICAddr, HTTPURL: real.HTTPURL, PublicKey: testKey}, resp.Origin)
	st, err := c.Stream(ctx, "live", "")
	require.NoError(t, err)
	require.Equal(t, renewed, st.StreamRegistration)
}

func TestRegistrationsOutsideTheSkewWindowAreRefused(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	c, ctx := client(tr), ctxT(t)
	for _, at := range []time.Time{time.Now().Add(-time.Hour), time.Now().Add(time.Hour)} {
		reg := unsignedRegistration("live")
		reg.Sign(testPriv, at)
		err := c.RegisterStream(ctx, reg)
		require.ErrorIs(t, err, trackerclient.ErrForbidden, "signed at %v", at)
		require.Contains(t, err.Error(), "from the tracker's clock")
	}
}

func TestSquatterUnderAnotherKeyCannotBlockTheRealOrigin(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	c, ctx := client(tr), ctxT(t)
	_, squatterPriv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	squat := unsignedRegistration("live")
	squat.QUICAddr = "203.0.113.66:4433"
	squat = signNow(squat, squatterPriv)
	require.NoError(t, c.RegisterStream(ctx, squat), "anyone may register a name under their own key")

	real := testRegistration(t, "live")
	require.NoError(t, c.RegisterStream(ctx, real), "the real origin is not kept out")
	require.NoError(t, c.RegisterStream(ctx, signNow(squat, squatterPriv)), "renewing the squat changes nothing")

	// Viewers name the key from their watch link and land in the real swarm.
	resp, err := c.Announce(ctx, testAnnounce("live", 1))
	require.NoError(t, err)
	require.Equal(t, real.QUICAddr, resp.Origin.QUICAddr)
	// A squatter's viewer is in another swarm: neither sees the other.
	squatViewer := testAnnounce("live", 2)
	squatViewer.StreamKey = squat.PublicKey
	resp, err = c.Announce(ctx, squatViewer)
	require.NoError(t, err)
	require.Equal(t, squat.QUICAddr, resp.Origin.QUICAddr)
	require.Empty(t, resp.Neighbours)

	_, err = c.Stream(ctx, "live", "")
	require.ErrorIs(t, err, trackerclient.ErrConflict, "a bare name is ambiguous now")
	st, err := c.Stream(ctx, "live", testKey)
	require.NoError(t, err)
	require.Equal(t, 1, st.SwarmSize)
}

func TestReplayedRegistrationOverNATSIsIgnored(t *testing.T) {
	tr := startTracker(t, testConfig(t))
	ctx := ctxT(t)
	real := testRegistration(t, "live")
	require.NoError(t, client(tr).RegisterStream(ctx, real))
	renewed := testRegistration(t, "live")
	require.NoError(t, client(tr).RegisterStream(ctx, renewed))

	// Someone with NATS access writes the older registration back, and a forged one.
	val, err := json.Marshal(real)
	require.NoError(t, err)
	_, err = tr.streamsKV.Put(ctx, streamKVKey(real), val)
	require.NoError(t, err)
	forged := renewed
	forged.QUICAddr = "203.0.113.66:4433"
	val, err = json.Marshal(forged)
	require.NoError(t, err)
	_, err = tr.streamsKV.Put(ctx, streamKVKey(forged), val)
	require.NoError(t, err)
	// A marker written after them shows when the view has seen both.
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	registerNATS(t, tr.NATSURL(), otherPriv, unsignedRegistration("marker"))
	require.Eventually(t, func() bool {
		_, err := client(tr).Stream(ctx, "marker", "")
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)

	st, err := client(tr).Stream(ctx, "live", testKey)
	require.NoError(t, err)
	require.Equal(t, renewed, st.StreamRegistration)
}

func streamKVKey(reg proto.StreamRegistration) string {
	return registrar.StreamKey(reg.Name, mustKey(reg.PublicKey))
}

func TestStreamsAreBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxStreams = 2
	tr := startTracker(t, cfg)
	c, ctx := client(tr), ctxT(t)
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "a")))
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "b")))
	require.ErrorIs(t, c.RegisterStream(ctx, testRegistration(t, "c")), trackerclient.ErrUnavailable)
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "a")), "renewals still pass")
}

func TestRegisterTokenWorksEndToEnd(t *testing.T) {
	cfg := testConfig(t)
	cfg.RegisterToken = "s3cret"
	tr := startTracker(t, cfg)
	c, ctx := client(tr), ctxT(t)
	require.ErrorIs(t, c.RegisterStream(ctx, testRegistration(t, "live")), trackerclient.ErrUnauthorized)
	c.RegisterToken = "wrong"
	require.ErrorIs(t, c.RegisterStream(ctx, testRegistration(t, "live")), trackerclient.ErrUnauthorized)
	c.RegisterToken = "s3cret" // what the origin's --register-token sets
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "live")))
	_, err := c.Announce(ctx, testAnnounce("live", 1))
	require.NoError(t, err, "announces need no token")
}

// sybilSwarm builds, on a tracker behind our pretend proxy, a swarm of `established` real peers
// (distinct hosts, a tree per stripe, each naming its parents) attacked by `fakes` fake peers
// from `fakeHosts` hosts, then lets `newcomers` real peers join and returns the mean number of
// real peers among the neighbours each newcomer got in its first answer, and the most fakes in
// any one answer.
func sybilSwarm(t *testing.T, established, fakes, fakeHosts, newcomers int, colluding bool) (realPerAnswer float64, mostFakes, fakesAdmitted int) {
	t.Helper()
	tr := proxied(t)
	require.NoError(t, client(tr).RegisterStream(ctxT(t), testRegistration(t, "live")))
	rng := rand.New(rand.NewPCG(1, 2))
	realIP := func(i int) string { return fmt.Sprintf("100.%d.%d.10", 64+i/250, i%250) }
	fakeIP := func(h int) string { return fmt.Sprintf("198.18.%d.66", h) }

	// The real swarm: peer i's parent on each stripe is an earlier real peer (peer 0's is the
	// origin), so every non-leaf is vouched for by children on other hosts.
	const stripes = 4
	depth := make([][stripes]int, established)
	real := map[string]bool{}
	announceReal := func(i int, parents []string, depths []int, free int) proto.AnnounceResponse {
		a := testAnnounce("live", i)
		a.Addr, a.Parents, a.Depths, a.FreeSlots = realIP(i)+":4433", parents, depths, free
		resp, err := clientFrom(tr, realIP(i)).Announce(ctxT(t), a)
		require.NoError(t, err)
		real[a.PeerID] = true
		return resp
	}
	for i := range established {
		parents, depths := make([]string, stripes), make([]int, stripes)
		for s := range stripes {
			depth[i][s] = 1
			if i > 0 {
				p := rng.IntN(i)
				parents[s], depth[i][s] = testPeerID(p), depth[p][s]+1
			}
			depths[s] = depth[i][s]
		}
		announceReal(i, parents, depths, rng.IntN(3))
	}

	// The attack: fakes claim the best depth and every free slot; colluding ones also name each
	// other (on other hosts) as parents, which vouches for them.
	for f := range fakes {
		h := f % fakeHosts
		a := testAnnounce("live", 100_000+f)
		a.Addr = fmt.Sprintf("%s:%d", fakeIP(h), 10000+f)
		a.Depths, a.FreeSlots = []int{1, 1, 1, 1}, proto.TrackerMaxFreeSlots
		if colluding && f >= fakeHosts {
			other := f - fakeHosts + 1 // an earlier fake on the next host
			if other%fakeHosts == h {
				other--
			}
			a.Parents = []string{testPeerID(100_000 + other), testPeerID(100_000 + other), testPeerID(100_000 + other), testPeerID(100_000 + other)}
		}
		resp, err := clientFrom(tr, fakeIP(h)).Announce(ctxT(t), a)
		require.NoError(t, err)
		if resp.Listed {
			fakesAdmitted++
		}
	}
	if colluding { // the first fakes name parents too, now that the later ones exist
		for f := range fakeHosts {
			a := testAnnounce("live", 100_000+f)
			a.Addr = fmt.Sprintf("%s:%d", fakeIP(f), 10000+f)
			a.Depths, a.FreeSlots = []int{1, 1, 1, 1}, proto.TrackerMaxFreeSlots
			p := testPeerID(100_000 + (f+1)%fakeHosts)
			a.Parents = []string{p, p, p, p}
			_, err := clientFrom(tr, fakeIP(f)).Announce(ctxT(t), a)
			require.NoError(t, err)
		}
	}

	total, answers := 0, 0
	for n := range newcomers {
		i := established + n
		resp := announceReal(i, nil, nil, 2)
		require.Len(t, resp.Neighbours, 8)
		fake := 0
		for _, nb := range resp.Neighbours {
			if real[nb.PeerID] {
				total++
			} else {
				fake++
			}
		}
		mostFakes = max(mostFakes, fake)
		answers++
	}
	return float64(total) / float64(answers), mostFakes, fakesAdmitted
}

func TestThousandFakePeersFromTenHostsLeaveNewcomersMostlyRealNeighbours(t *testing.T) {
	// 30 real peers watch, 1,000 fakes from 10 hosts claim depth 1 and every free slot, then 30
	// real newcomers join (every real peer on its own host).
	realPer, mostFakes, admitted := sybilSwarm(t, 30, 1000, 10, 30, false)
	t.Logf("fakes admitted %d of 1000; real neighbours per newcomer answer %.2f of 8; most fakes in one answer %d", admitted, realPer, mostFakes)
	require.Equal(t, 80, admitted, "8 per host")
	require.GreaterOrEqual(t, realPer, 6.0)
}

func TestFakePeersVouchingForEachOtherGetAtMostOnePickPerHost(t *testing.T) {
	// Fakes that name each other (on other hosts) as parents are vouched for: the tracker cannot
	// tell them from a real subtree, because nothing but the origin knows who really receives
	// from whom. What bounds them is hosts: at most 8 peers per host, and one pick per host per
	// answer while other hosts are left.
	for _, tc := range []struct{ hosts int }{{3}, {10}} {
		t.Run(fmt.Sprintf("%d hosts", tc.hosts), func(t *testing.T) {
			realPer, mostFakes, admitted := sybilSwarm(t, 30, 1000, tc.hosts, 30, true)
			t.Logf("colluding fakes from %d hosts: admitted %d of 1000; real neighbours per newcomer answer %.2f of 8; most fakes in one answer %d", tc.hosts, admitted, realPer, mostFakes)
			require.Equal(t, 8*tc.hosts, admitted)
			require.LessOrEqual(t, mostFakes, tc.hosts)
			require.GreaterOrEqual(t, realPer, float64(8-tc.hosts))
		})
	}
}

func TestClientIPIsTheLastAddressOfTheTrustedHeader(t *testing.T) {
	tr := &Tracker{cfg: Config{TrustProxyHeader: proxyHeader}}
	r, err := http.NewRequest(http.MethodGet, "http://tracker/", nil)
	require.NoError(t, err)
	r.RemoteAddr = "10.0.0.1:5555"
	require.Equal(t, "10.0.0.1", tr.clientIP(r), "no header: the connection's address")
	r.Header.Add(proxyHeader, "203.0.113.9, 198.51.100.4")
	require.Equal(t, "198.51.100.4", tr.clientIP(r), "what the client wrote first does not count")
	r.Header.Add(proxyHeader, "192.0.2.44")
	require.Equal(t, "192.0.2.44", tr.clientIP(r))
	r.Header.Set(proxyHeader, "garbage")
	require.Equal(t, "10.0.0.1", tr.clientIP(r))
	untrusting := &Tracker{}
	require.Equal(t, "10.0.0.1", untrusting.clientIP(r))
}

func TestSwarmsAreBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxPeersPerSwarm = 3
	tr := startTracker(t, cfg)
	c, ctx := client(tr), ctxT(t)
	require.NoError(t, c.RegisterStream(ctx, testRegistration(t, "live")))
	for i := range 3 {
		_, err := c.Announce(ctx, testAnnounce("live", i))
		require.NoError(t, err)
	}
	resp, err := c.Announce(ctx, testAnnounce("live", 3))
	require.NoError(t, err)
	require.False(t, resp.Listed, "answered, not listed")
	resp, err = c.Announce(ctx, testAnnounce("live", 1))
	require.NoError(t, err)
	require.True(t, resp.Listed, "members still re-announce")
	st, err := c.Stream(ctx, "live", testKey)
	require.NoError(t, err)
	require.Equal(t, 3, st.SwarmSize)
}
