package origin

import (
	"context"
	"crypto/ed25519"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/testrun"
	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker"
)

// startTestTracker runs a real tracker that wants token for registrations over HTTP.
func startTestTracker(t *testing.T, token string) *tracker.Tracker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tr, err := tracker.New(tracker.Config{HTTPListener: ln, RateLimit: rate.Inf, RegisterToken: token})
	require.NoError(t, err)
	testrun.Background(t, "tracker", 15*time.Second, tr.Run)
	select {
	case <-tr.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("tracker not ready within 10s")
	}
	return tr
}

// requireRegistered publishes a few seconds into o and waits until the tracker holds the
// stream under the origin's key, signed by it, with the origin's mesh address.
func requireRegistered(t *testing.T, o *testOrigin, tr *tracker.Tracker, key ed25519.PrivateKey, name string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	published := make(chan error, 1)
	go func() {
		_, err := publish(ctx, o.rtsp+"/"+name, publishOpts{video: true, seconds: 6})
		published <- err
	}()
	pub := proto.FormatPublicKey(key.Public().(ed25519.PublicKey))
	c := &trackerclient.Client{BaseURL: tr.URL()}
	var st proto.StreamStatus
	require.Eventually(t, func() bool {
		var err error
		st, err = c.Stream(ctx, name, pub)
		return err == nil
	}, 10*time.Second, 100*time.Millisecond, "the origin's registration never reached the tracker")
	require.NoError(t, st.Verify())
	require.Equal(t, pub, st.PublicKey)
	require.Equal(t, o.advertisedAddr(o.meshConn.LocalAddr()), st.QUICAddr)
	cancel()
	<-published
}

func TestOriginRegistersSignedWithTheRegisterTokenOverHTTP(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	tr := startTestTracker(t, "s3cret")
	cfg, _ := testConfig(t)
	cfg.TrackerURL, cfg.RegisterToken = tr.URL(), "s3cret"
	requireRegistered(t, startOrigin(t, cfg), tr, cfg.Key, "tokencam")
}

func TestOriginRegistersSignedOverNATS(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	tr := startTestTracker(t, "s3cret") // the token guards HTTP only
	cfg, _ := testConfig(t)
	cfg.NATSURL = tr.NATSURL()
	requireRegistered(t, startOrigin(t, cfg), tr, cfg.Key, "natscam")
}
