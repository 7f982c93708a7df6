package tracker

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// natsCluster is a JetStream cluster of nats-server instances in this process, routed to each
// other on loopback, as a fleet of trackers would share in production.
type natsCluster struct {
	servers []*server.Server
}

// startNATSCluster starts n clustered servers and waits until JetStream has a meta leader. Each
// server routes to every other one; the route ports are reserved first so every server can name
// them all.
func startNATSCluster(tb testing.TB, n int) *natsCluster {
	tb.Helper()
	routePorts := make([]int, n)
	for i := range routePorts {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(tb, err)
		routePorts[i] = ln.Addr().(*net.TCPAddr).Port
		require.NoError(tb, ln.Close())
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &natsCluster{}
	for i := range n {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("crowdsurf-nats-%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   tb.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "crowdsurf",
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		})
		require.NoError(tb, err)
		go srv.Start()
		require.True(tb, srv.ReadyForConnections(10*time.Second), "NATS node %d not ready", i)
		c.servers = append(c.servers, srv)
	}
	tb.Cleanup(func() {
		for _, s := range c.servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	require.Eventually(tb, func() bool {
		for _, s := range c.servers {
			if s.Running() && s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "no JetStream meta leader")
	for _, s := range c.servers {
		require.Eventually(tb, func() bool { return s.JetStreamIsCurrent() }, 20*time.Second, 50*time.Millisecond)
	}
	return c
}

// url is the cluster's client URL list, node i first: a client connects to node i and fails
// over to the others.
func (c *natsCluster) url(i int) string {
	urls := []string{c.servers[i].ClientURL()}
	for j, s := range c.servers {
		if j != i {
			urls = append(urls, s.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// stop shuts node i down, as a crashed machine would go.
func (c *natsCluster) stop(i int) {
	c.servers[i].Shutdown()
	c.servers[i].WaitForShutdown()
}
