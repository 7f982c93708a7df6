package tracker

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats-server/v2/server/ats"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/memnet"
	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/tracker/registrar"
)

// TestInProcessTrackerRunsOnTheBubblesClock runs a whole tracker (HTTP on an in-memory
// listener, its NATS server without a port, the origin's registration in-process) inside a
// synctest bubble: a peer that stops announcing leaves the swarm after PeerTTL of the bubble's
// clock, which the bubble reaches at once because nothing waits on a real socket.
func TestInProcessTrackerRunsOnTheBubblesClock(t *testing.T) {
	// nats-server's access-time ticker (package ats) selects on a channel made at init, outside
	// any bubble; a goroutine blocked there would stop the bubble's clock. Holding one
	// registration from outside keeps that goroutine outside too.
	ats.Register()
	defer ats.Unregister()

	wallStart := time.Now()
	synctest.Test(t, func(t *testing.T) {
		mem := memnet.New(memnet.Config{})
		ln, err := mem.Listen()
		require.NoError(t, err)
		tr, err := New(Config{HTTPListener: ln, RateLimit: rate.Inf, NATSInProcess: true, PeerTTL: 10 * time.Second, AllowForeignAddr: true})
		require.NoError(t, err)
		require.Empty(t, tr.NATSURL(), "an in-process NATS server has no URL to give out")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tr.Run(ctx) }()
		<-tr.Ready()

		reg, err := registrar.New(registrar.Config{Options: tr.NATSOptions(), Key: testPriv})
		require.NoError(t, err)
		require.NoError(t, reg.Register(ctx, unsignedRegistration("live")))
		synctest.Wait() // until the tracker's view has taken the registration from NATS

		hc := &http.Client{Transport: &http.Transport{DialContext: mem.DialContext}}
		c := &trackerclient.Client{BaseURL: tr.URL(), HTTPClient: hc}
		_, err = c.Announce(ctx, testAnnounce("live", 0))
		require.NoError(t, err)
		synctest.Wait() // and the announce
		st, err := c.Stream(ctx, "live", testKey)
		require.NoError(t, err)
		require.Equal(t, 1, st.SwarmSize)

		time.Sleep(15 * time.Second) // past PeerTTL, announcing no more
		st, err = c.Stream(ctx, "live", testKey)
		require.NoError(t, err)
		require.Equal(t, 0, st.SwarmSize, "the peer's entry expired on the bubble's clock")

		reg.Close()
		hc.CloseIdleConnections()
		cancel()
		require.NoError(t, <-done)
	})
	require.Less(t, time.Since(wallStart), 10*time.Second, "15 simulated seconds must not take 15 real ones")
}
