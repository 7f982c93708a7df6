package peer

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/netns"
	"github.com/crowdsurf/crowdsurf/internal/testrun"
	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/player"
	"github.com/crowdsurf/crowdsurf/segwindow"
	"github.com/crowdsurf/crowdsurf/tracker"
)

// TestSwarmThroughKernelNAT runs the whole NAT traversal through real Linux NAT: a public
// namespace holds the tracker (HTTP API and its two observer ports) and the origin (mesh root
// and CDN endpoint); two homes sit behind nftables masquerade routers with the usual WAN rule
// dropping unsolicited inbound flows, a third behind masquerade fully-random (symmetric). Every
// socket of a viewer, its announces and CDN requests included, is opened in its home namespace,
// so the tracker sees the routers' addresses and checks them as it would on the internet. The
// two cone viewers must become neighbours through a tracker-coordinated punch and feed each
// other; the symmetric viewer must still play, fed by the origin (it can reach nobody else).
// Every player plays without a stall. Root, ip and nft are needed; it runs only with
// CROWDSURF_NETNS=1 (make test sets it when run as root) and fails, saying why, if it cannot.
func TestSwarmThroughKernelNAT(t *testing.T) {
	if os.Getenv("CROWDSURF_NETNS") == "" {
		t.Skip("set CROWDSURF_NETNS=1 to run (builds network namespaces: root, ip and nft needed)")
	}
	require.NoError(t, netns.Check(), "CROWDSURF_NETNS=1 asks for the kernel NAT test, but this machine cannot run it")
	lab, err := netns.New(fmt.Sprintf("cw%d", os.Getpid()%100000))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, lab.Close()) })
	pub := lab.Public()
	udp := func(ns, addr string) net.PacketConn {
		pc, err := lab.ListenUDP(ns, addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = pc.Close() })
		return pc
	}
	tcp := func(ns, addr string) net.Listener {
		ln, err := lab.ListenTCP(ns, addr)
		require.NoError(t, err)
		return ln
	}

	// The tracker, as on the internet: no foreign addresses, announces checked against the
	// source, which is each home router's WAN address.
	tr, err := tracker.New(tracker.Config{
		HTTPListener:     tcp(pub, netns.PublicIP+":7070"),
		AnnounceInterval: time.Second,
		RateLimit:        rate.Inf,
		RateBurst:        1,
		ObserverConns:    []net.PacketConn{udp(pub, netns.PublicIP+":3478"), udp(pub, netns.PublicIP+":3479")},
	})
	require.NoError(t, err)
	testrun.Background(t, "tracker", 10*time.Second, tr.Run)
	<-tr.Ready()

	// The origin: mesh root and CDN endpoint on the public segment.
	key := testIdentity(t)
	o := &testOrigin{t: t, key: key, pub: key.Public().(ed25519.PublicKey)}
	o.window = segwindow.New(segwindow.Config{Stream: testStream, PlaylistLength: 6, TargetDuration: testSegDur})
	e := echo.New()
	segwindow.NewServer(func(s string) (*segwindow.Window, bool) { return o.window, s == testStream },
		segwindow.ServerOptions{}).Register(e)
	o.http = httptest.NewUnstartedServer(e)
	o.http.Listener = tcp(pub, netns.PublicIP+":8080")
	o.http.Start()
	t.Cleanup(o.http.Close)
	rootCfg := testConfig(t, o.pub)
	rootCfg.Root, rootCfg.Identity, rootCfg.SeedCopies, rootCfg.HTTPListener = true, key, 1, nil
	rootCfg.PacketConn = udp(pub, netns.PublicIP+":4433")
	o.root = startNode(t, rootCfg)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	require.NoError(t, (&trackerclient.Client{BaseURL: tr.URL(), HTTPClient: &http.Client{Transport: &http.Transport{DialContext: lab.Dialer(pub)}}}).RegisterStream(ctx, *o.registration(key)))
	cancel()

	viewer := func(rule string) (*Node, *player.Player) {
		home, err := lab.AddHome(rule, true)
		require.NoError(t, err)
		cfg := testConfig(t, o.pub)
		// Bound to the unspecified address, as `crowdsurf peer` is: the tracker fills in the
		// host from the announce's source (the router), and hands out the reflexive address.
		cfg.PacketConn = udp(home.Host, "0.0.0.0:0")
		cfg.TrackerURL = "http://" + netns.PublicIP + ":7070"
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: lab.Dialer(home.Host), Proxy: nil}}
		n := startNode(t, cfg)
		p, err := player.New(player.Config{URL: n.HLSURL(), SkipMediaCheck: true})
		require.NoError(t, err)
		return n, p
	}
	cone1, p1 := viewer(netns.Masquerade)
	cone2, p2 := viewer(netns.Masquerade)
	sym, p3 := viewer(netns.MasqueradeRandom)

	playCtx, stopPlaying := context.WithCancel(t.Context())
	done := o.playAsync(playCtx, 0, 400, nil)
	defer func() { stopPlaying(); <-done }()
	require.Eventually(t, func() bool {
		s1, s2, s3 := cone1.Stats(), cone2.Stats(), sym.Stats()
		return s1.BytesFromPeers > 0 && s2.BytesFromPeers > 0 && s1.Links.Punched > 0 && s2.Links.Punched > 0 &&
			s3.SegmentsComplete >= 10
	}, 60*time.Second, 200*time.Millisecond, "cone1 %+v\ncone2 %+v\nsymmetric %+v", cone1.Stats(), cone2.Stats(), sym.Stats())
	// The players start once the mesh has formed, as viewers who open the stream a moment
	// after their peer joined (this harness's 500 ms segments leave a player 1.5 s of buffer,
	// too little to sit through the first second of a joining peer), and play 10 s.
	players := []*player.Player{p1, p2, p3}
	for _, p := range players {
		testrun.Background(t, "player", 10*time.Second, p.Run)
	}
	require.Eventually(t, func() bool {
		for _, p := range players {
			if p.Status().Segments < 20 {
				return false
			}
		}
		return true
	}, 40*time.Second, 200*time.Millisecond, "players: %+v %+v %+v", p1.Status(), p2.Status(), p3.Status())

	for name, n := range map[string]*Node{"cone1": cone1, "cone2": cone2, "symmetric": sym} {
		s := n.Stats()
		t.Logf("%s: nat %s, reflexive %s, from peers %d, origin %d (http %d), punches %d/%d, orders %d, links %+v",
			name, s.NATKind, s.ReflexiveAddr, s.BytesFromPeers, s.BytesFromOrigin, s.BytesFromHTTP,
			s.PunchesSucceeded, s.PunchesAttempted, s.PunchOrders, s.Links)
	}
	require.Equal(t, "cone", cone1.Stats().NATKind.String())
	require.Equal(t, "cone", cone2.Stats().NATKind.String())
	require.Equal(t, "symmetric", sym.Stats().NATKind.String())
	require.Zero(t, sym.Stats().Links.Punched, "nobody punches with a symmetric NAT")
	for i, p := range players {
		st := p.Status()
		require.Positive(t, st.Segments, "player %d played", i)
		require.Zero(t, st.Stalls, "player %d did not stall: %+v", i, st)
	}
}
