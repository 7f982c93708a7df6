//go:build unix

package simnet_test

import (
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

// swarm is hosts with a reader each, counting what they receive.
func benchSwarm(b *testing.B, n *simnet.Network, size int, cfg simnet.HostConfig) ([]*simnet.Host, *sync.WaitGroup) {
	hosts := make([]*simnet.Host, size)
	var readers sync.WaitGroup
	for i := range hosts {
		hosts[i] = newHost(b, n, cfg)
		readers.Go(func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := hosts[i].ReadFrom(buf); err != nil {
					return
				}
			}
		})
	}
	return hosts, &readers
}

// BenchmarkPacketRate pushes packets between 200 hosts as fast as 8 writers
// can and reports how many packets/s the network delivers end to end
// (WriteTo, scheduler, socket buffer, ReadFrom).
func BenchmarkPacketRate(b *testing.B) {
	n := simnet.New(simnet.Config{Seed: 1})
	hosts, readers := benchSwarm(b, n, 200, simnet.HostConfig{Latency: time.Millisecond, Uplink: 1_000_000_000})
	payload := make([]byte, 1200)
	const writers = 8

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := w; i < b.N; i += writers {
				src := hosts[rng.IntN(len(hosts))]
				dst := hosts[rng.IntN(len(hosts))]
				if _, err := src.WriteTo(payload, dst.LocalAddr()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Eventually(b, func() bool {
		s := n.TotalStats()
		return s.PacketsReceived+s.PacketsDropped == uint64(b.N)
	}, time.Minute, time.Millisecond)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "packets/s")
	require.Zero(b, n.TotalStats().PacketsDropped)
	require.NoError(b, n.Close())
	readers.Wait()
}

// BenchmarkSwarmLoad runs the load the loadtest needs: 200 hosts each
// sending 100 packets/s of 1200 bytes (about 1 Mbit/s) to random peers over
// 1 Mbit+ links with latency, for one second per iteration. It reports the
// CPU the whole process spends (load generation and readers included) in
// cores, so the share left for quic-go and the peers can be read off.
func BenchmarkSwarmLoad(b *testing.B) {
	n := simnet.New(simnet.Config{Seed: 1})
	hosts, readers := benchSwarm(b, n, 200, simnet.HostConfig{Uplink: 2_000_000, Downlink: 10_000_000, Latency: 20 * time.Millisecond})
	payload := make([]byte, 1200)
	const pacers = 4

	var cpu0 syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &cpu0))
	b.ResetTimer()
	start := time.Now()
	var sent int
	for range b.N {
		var wg sync.WaitGroup
		for p := range pacers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(p), 9))
				ticker := time.NewTicker(10 * time.Millisecond)
				defer ticker.Stop()
				for range 100 { // one second
					for i := p; i < len(hosts); i += pacers {
						dst := hosts[rng.IntN(len(hosts))]
						if _, err := hosts[i].WriteTo(payload, dst.LocalAddr()); err != nil {
							b.Error(err)
							return
						}
					}
					<-ticker.C
				}
			})
		}
		wg.Wait()
		sent += 100 * len(hosts)
	}
	require.Eventually(b, func() bool {
		s := n.TotalStats()
		return s.PacketsReceived+s.PacketsDropped == uint64(sent)
	}, time.Minute, time.Millisecond)
	elapsed := time.Since(start)
	b.StopTimer()
	var cpu1 syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &cpu1))
	cpu := time.Duration(cpu1.Utime.Nano() + cpu1.Stime.Nano() - cpu0.Utime.Nano() - cpu0.Stime.Nano())
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "packets/s")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cpu-cores")
	s := n.TotalStats()
	b.ReportMetric(float64(s.PacketsDropped)/float64(sent), "drop-ratio")
	require.NoError(b, n.Close())
	readers.Wait()
}
