package loadtest

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// The scale lab (lab_test.go, `make scale`) runs this same load test inside a testing/synctest
// bubble: the mesh on simnet, every HTTP server and client (the CDN, the tracker's API, each
// peer's local HLS and its player) on an in-memory network (internal/memnet), and the tracker's
// NATS in-process. Nothing waits on a real socket, so the bubble's clock moves only when every
// goroutine waits, and stands still while the CPU works: a thousand peers then behave as if each
// had a machine of its own, and the report's times are simulated ones. This file is the lab's
// side of the wiring; the rest of the load test does not know whether it runs in a bubble.

// listenHTTP opens a listener for one of the run's HTTP servers: loopback TCP, or the lab's
// in-memory network.
func (c Config) listenHTTP() (net.Listener, error) {
	if c.inMemory != nil {
		return c.inMemory.Listen()
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// sharedTransport is newSharedTransport dialling on the run's network.
func (c Config) sharedTransport() *http.Transport {
	tr := newSharedTransport()
	if c.inMemory != nil {
		tr.DialContext = c.inMemory.DialContext
		tr.Proxy = nil // an HTTP_PROXY from the environment would be dialled for real
	}
	return tr
}

// closeIdleConns ends the HTTP clients' kept-alive connections once the run is over. In the
// lab their reading goroutines would otherwise wait for ever, and a bubble ends only when
// every goroutine in it has.
func (lt *LoadTest) closeIdleConns() {
	lt.playerTransport.CloseIdleConnections()
	lt.fallbackClient.CloseIdleConnections()
}

// LabFigures say how a scale-lab run used the machine, and how its second half measures up to
// the scale targets. The report's measures are in simulated time, which stands still while the
// CPU works: they are what the swarm would show if every peer had a machine of its own, however
// long the run took here.
type LabFigures struct {
	// SimulatedS is the bubble's clock over the whole run: warm-up, measured interval and
	// shutdown.
	SimulatedS float64 `json:"simulated_s"`
	// WallS is the real time the same took.
	WallS float64 `json:"wall_s"`
	// CPUPerSimulatedS is the process's CPU seconds per simulated second: the cores a run in
	// real time would have needed on one machine.
	CPUPerSimulatedS float64 `json:"cpu_per_simulated_s"`
	// HopMs is one tree hop's least delay (hopTime); LogHops is ceil(log2(peers)), the depth
	// of a binary tree over the swarm; P99InLogHops is the second half's delivery p99 over
	// LogHops hops.
	HopMs        float64 `json:"hop_ms"`
	LogHops      int     `json:"log_hops"`
	P99InLogHops float64 `json:"p99_in_log_hops"`
	// Targets are the scale targets (issue 10) as this run met them or not.
	Targets []LabTarget `json:"targets"`
}

// LabTarget is one scale target and the run's figure against it.
type LabTarget struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// The scale targets, over the second half of a run: what a formed swarm of a thousand peers
// must do (1 Mbit/s stream, 3 Mbit/s uplinks, 20 ms). Under churn the swarm is never quite
// formed, so only stalls and a looser offload apply.
const (
	targetOriginCopies  = 2.5
	targetOffload       = 0.995
	targetOffloadChurn  = 0.99
	targetDeliveryP99Ms = 800
	targetP99InLogHops  = 2.5
)

// hopTime is what one tree hop adds to a chunk's delivery at the least: the link's one-way
// latency plus the chunk's serialisation on the parent's uplink (the median peer's).
func (c Config) hopTime() time.Duration {
	uplinks := make([]int64, 0, c.Peers)
	for i := range c.Peers {
		if u := c.Uplink.Assign(i); u > 0 {
			uplinks = append(uplinks, u)
		}
	}
	hop := c.Latency
	if len(uplinks) > 0 {
		slices.Sort(uplinks)
		median := uplinks[len(uplinks)/2]
		// The whole frame crosses the link: the chunk's data and its longest header.
		frame := c.chunkSize() + proto.MaxChunkHeader
		hop += time.Duration(float64(frame*8) / float64(median) * float64(time.Second))
	}
	return hop
}

// newLabFigures sums up a lab run of cfg (with defaults) that took simulated time in the bubble,
// wall time and cpu here.
func newLabFigures(r *Report, cfg Config, simulated, wall, cpu time.Duration) *LabFigures {
	l := &LabFigures{
		SimulatedS:       simulated.Seconds(),
		WallS:            wall.Seconds(),
		CPUPerSimulatedS: ratio(cpu.Seconds(), simulated.Seconds()),
		HopMs:            float64(cfg.hopTime()) / float64(time.Millisecond),
		LogHops:          max(1, int(math.Ceil(math.Log2(float64(cfg.Peers))))),
	}
	h := r.SecondHalf
	p99 := h.DeliveryLatencyMs.P99
	l.P99InLogHops = ratio(p99, float64(l.LogHops)*l.HopMs)
	add := func(name, want, got string, met bool) {
		l.Targets = append(l.Targets, LabTarget{Name: name, Want: want, Got: got, Met: met})
	}
	offloadWant := targetOffload
	if cfg.ChurnPct > 0 {
		offloadWant = targetOffloadChurn
	}
	if cfg.ChurnPct == 0 {
		add("origin copies", fmt.Sprintf("<= %.1f", targetOriginCopies), fmt.Sprintf("%.2f", h.OriginCopies), h.OriginCopies <= targetOriginCopies)
	}
	want := fmt.Sprintf(">= %.1f %%", 100*offloadWant)
	// With every copy the origin seeds counted against it, offload cannot pass 1 - seeds/N.
	if ceiling := 1 - float64(cfg.SeedCopies)/float64(cfg.Peers); ceiling < offloadWant {
		want += fmt.Sprintf(", above the ceiling of %.1f %% at %d peers", 100*ceiling, cfg.Peers)
	}
	add("offload", want, fmt.Sprintf("%.2f %%", 100*h.Offload), h.Offload >= offloadWant)
	if cfg.ChurnPct == 0 {
		add("delivery p99", fmt.Sprintf("<= %d ms", targetDeliveryP99Ms), fmt.Sprintf("%.0f ms", p99), p99 <= targetDeliveryP99Ms)
		add("delivery p99 in hops", fmt.Sprintf("<= %.1f x %d hops of %.0f ms", targetP99InLogHops, l.LogHops, l.HopMs),
			fmt.Sprintf("%.2f x", l.P99InLogHops), l.P99InLogHops <= targetP99InLogHops)
	}
	add("stalls", "0", fmt.Sprintf("%d", h.Stalls), h.Stalls == 0)
	return l
}

// rows are the summary table's lab lines.
func (l *LabFigures) rows() [][2]string {
	if l == nil {
		return nil
	}
	targets := make([]string, len(l.Targets))
	for i, t := range l.Targets {
		verdict := "met"
		if !t.Met {
			verdict = "MISSED"
		}
		targets[i] = fmt.Sprintf("%s %s (want %s) %s", t.Name, t.Got, t.Want, verdict)
	}
	return [][2]string{
		{"scale lab", fmt.Sprintf("virtual time (testing/synctest): %.0f simulated s took %.0f s of wall time (%.1f x real time), %.2f CPU s per simulated s; every time above is simulated",
			l.SimulatedS, l.WallS, ratio(l.WallS, l.SimulatedS), l.CPUPerSimulatedS)},
		{"scale targets", "second half: " + strings.Join(targets, "; ")},
	}
}
