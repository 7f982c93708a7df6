package loadtest

import (
	"fmt"
	"math"
	"net"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

// meshNet hands out the mesh sockets: real loopback UDP, or hosts on a simulated network.
type meshNet interface {
	// originConn is the mesh root's socket.
	originConn() (net.PacketConn, error)
	// peerConn is a viewer's socket with the given uplink (bits/s; 0 = a free rider), behind a
	// NAT of the given kind (sim only).
	peerConn(uplinkBps int64, nat simnet.NATKind) (net.PacketConn, error)
	// stats are the simulated network's counters (zero for UDP).
	stats() simnet.Stats

	close()
}

type udpNet struct{}

func (udpNet) originConn() (net.PacketConn, error) { return net.ListenPacket("udp", "127.0.0.1:0") }
func (udpNet) peerConn(int64, simnet.NATKind) (net.PacketConn, error) {
	return net.ListenPacket("udp", "127.0.0.1:0")
}
func (udpNet) stats() simnet.Stats { return simnet.Stats{} }
func (udpNet) close()              {}

const (
	// originUplinkBps is the origin's generous uplink on the simulated network: a data-centre
	// link that never limits the seeding.
	originUplinkBps = 1_000_000_000
	// freeRiderUplinkBps is what a "0" peer can still send: acknowledgements and control
	// messages, never a stripe.
	freeRiderUplinkBps = 256_000
)

// simNet puts every socket on one simulated network. Latency and loss are per link: a packet
// crosses the sender's and the receiver's access links, so each gets half the latency and the
// loss that makes the two together lose lossPct.
type simNet struct {
	n       *simnet.Network
	latency float64 // per access link, ns
	loss    float64 // per access link, probability
}

func newSimNet(cfg Config) *simNet {
	perLink := 1 - math.Sqrt(1-cfg.LossPct/100)
	return &simNet{
		n:       simnet.New(simnet.Config{}),
		latency: float64(cfg.Latency) / 2,
		loss:    perLink,
	}
}

func (s *simNet) host(uplink int64, nat simnet.NATKind) (net.PacketConn, error) {
	h, err := s.n.NewHost(simnet.HostConfig{
		Uplink:  uplink,
		Latency: durationNs(s.latency),
		Loss:    s.loss,
		NAT:     simnet.NAT{Kind: nat},
	})
	if err != nil {
		return nil, fmt.Errorf("loadtest: simulated host: %w", err)
	}
	return h, nil
}

func (s *simNet) originConn() (net.PacketConn, error) { return s.host(originUplinkBps, simnet.NATNone) }

func (s *simNet) peerConn(uplinkBps int64, nat simnet.NATKind) (net.PacketConn, error) {
	if uplinkBps <= 0 {
		uplinkBps = freeRiderUplinkBps
	}
	return s.host(uplinkBps, nat)
}

func (s *simNet) stats() simnet.Stats { return s.n.TotalStats() }
func (s *simNet) close()              { _ = s.n.Close() }
