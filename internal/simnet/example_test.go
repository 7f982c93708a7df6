package simnet_test

import (
	"fmt"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

// A viewer on a 2 Mbit/s uplink with 20 ms to the core sends to an origin on
// a fat link. Each host is a net.PacketConn: hand it to a quic.Transport as
// its Conn, e.g. &quic.Transport{Conn: viewer}.
func Example() {
	n := simnet.New(simnet.Config{})
	defer n.Close()

	origin, _ := n.NewHost(simnet.HostConfig{Uplink: 100 * simnet.Mbps, Latency: 5 * time.Millisecond})
	viewer, _ := n.NewHost(simnet.HostConfig{Uplink: 2 * simnet.Mbps, Downlink: 20 * simnet.Mbps, Latency: 20 * time.Millisecond})

	_, _ = origin.WriteTo([]byte("hello"), viewer.LocalAddr())
	buf := make([]byte, 1500)
	k, from, _ := viewer.ReadFrom(buf)
	fmt.Println(string(buf[:k]), "from", from)
	fmt.Println("origin sent", origin.Stats().BytesSent, "bytes")
	// Output:
	// hello from 10.0.0.1:4433
	// origin sent 5 bytes
}
