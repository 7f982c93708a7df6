package loadtest

import (
	"fmt"
	"net"
	"net/http"
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

// LabFigures say how a scale-lab run used the machine. The report's measures are in simulated
// time, which stands still while the CPU works: they are what the swarm would show if every
// peer had a machine of its own, however long the run took here.
type LabFigures struct {
	// SimulatedS is the bubble's clock over the whole run: warm-up, measured interval and
	// shutdown.
	SimulatedS float64 `json:"simulated_s"`
	// WallS is the real time the same took.
	WallS float64 `json:"wall_s"`
	// CPUPerSimulatedS is the process's CPU seconds per simulated second: the cores a run in
	// real time would have needed on one machine.
	CPUPerSimulatedS float64 `json:"cpu_per_simulated_s"`
}

// rows are the summary table's lab line.
func (l *LabFigures) rows() [][2]string {
	if l == nil {
		return nil
	}
	return [][2]string{{"scale lab", fmt.Sprintf("virtual time (testing/synctest): %.0f simulated s took %.0f s of wall time (%.1f x real time), %.2f CPU s per simulated s; every time above is simulated",
		l.SimulatedS, l.WallS, ratio(l.WallS, l.SimulatedS), l.CPUPerSimulatedS)}}
}
