package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// The announce load test: real HTTP over loopback against one tracker or a fleet. It runs only
// when -load.duration is set, e.g. (make bench-tracker):
//
//	go test -run '^TestAnnounceLoad$' -count 1 -v ./tracker -args -load.duration 10s -load.trackers 2
//
// It prints announces a second, latency quantiles, KV writes per announce and the CPU the whole
// process used (trackers, NATS servers and the load generator share it), with the machine's load.
var (
	loadDuration    = flag.Duration("load.duration", 0, "announce load test: measured interval (0 skips TestAnnounceLoad)")
	loadTrackers    = flag.Int("load.trackers", 1, "announce load test: tracker replicas; more than one share a three-node NATS cluster (R3 buckets)")
	loadConcurrency = flag.Int("load.concurrency", 64, "announce load test: announces in flight (keep-alive HTTP connections)")
	loadPeers       = flag.Int("load.peers", 20000, "announce load test: peers in the swarm, each announcing in turn")
	loadChange      = flag.Float64("load.change", 0.1, "announce load test: share of announces that change what a neighbour choice reads (free slots, depths)")
	loadWarm        = flag.Bool("load.warm", true, "announce load test: every peer announces once before the measured interval")
)

// loadPeer is one simulated peer: its two announce bodies (the state it toggles between when
// something changes) and the tracker it talks to.
type loadPeer struct {
	bodies [2][]byte
	state  int
}

func loadBodies(stream string, i int) [2][]byte {
	secret, id := testPeer(i)
	parents := []string{testPeerID(i / 2), testPeerID(i / 3), "", testPeerID(i / 5)}
	if i == 0 {
		parents = []string{"", "", "", ""}
	}
	var out [2][]byte
	for v := range 2 {
		req := proto.AnnounceRequest{
			PeerState: proto.PeerState{
				PeerID: id, Stream: stream, StreamKey: testKey,
				// One peer per host, on made-up addresses (AllowForeignAddr): a real audience.
				Addr:      fmt.Sprintf("10.%d.%d.%d:4433", i>>16&255, i>>8&255, i&255),
				UploadBps: 3_000_000, Depths: []int{1 + i%5, 2 + i%3, -1, 1 + v}, Parents: parents,
				FreeSlots: (i + v) % 4,
				Quality:   proto.PeerQuality{BufferMs: 4000, FallbackShare: 0.01},
			},
			PeerSecret: secret,
		}
		b, err := json.Marshal(req)
		if err != nil {
			panic(err)
		}
		out[v] = b
	}
	return out
}

func TestAnnounceLoad(t *testing.T) {
	if *loadDuration <= 0 {
		t.Skip("set -load.duration (make bench-tracker) to run the announce load test")
	}
	n := *loadTrackers
	cfg := func() Config {
		c := testConfig(t)
		c.AllowForeignAddr = true
		return c
	}
	var trackers []*Tracker
	if n == 1 {
		trackers = append(trackers, startTracker(t, cfg()))
	} else {
		cluster := startNATSCluster(t, 3)
		for i := range n {
			c := cfg()
			c.NATSURL, c.Replicas = cluster.url(i%3), 3
			trackers = append(trackers, startTracker(t, c))
		}
	}
	ctx := context.Background()
	require.NoError(t, client(trackers[0]).RegisterStream(ctx, testRegistration(t, "live")))
	for _, tr := range trackers {
		require.Eventually(t, func() bool { _, err := client(tr).Stream(ctx, "live", testKey); return err == nil }, 10*time.Second, 10*time.Millisecond)
	}

	peers := make([]loadPeer, *loadPeers)
	for i := range peers {
		peers[i].bodies = loadBodies("live", i)
	}
	conc := *loadConcurrency
	httpc := &http.Client{Transport: &http.Transport{
		MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}, Timeout: 10 * time.Second}
	urls := make([]string, n)
	for i, tr := range trackers {
		urls[i] = tr.URL() + proto.TrackerAnnouncePath
	}
	announce := func(i int, body []byte) (time.Duration, error) {
		start := time.Now()
		resp, err := httpc.Post(urls[i%n], "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("peer %d: status %d", i, resp.StatusCode)
		}
		return time.Since(start), err
	}

	// Worker w announces peers w, w+conc, w+2*conc, ... in turn, so every peer announces at the
	// same cadence, always to the same tracker (peer i to tracker i mod n).
	run := func(d time.Duration, warm bool) (lat []time.Duration, errs int64, elapsed time.Duration) {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			nErrs   atomic.Int64
			firstEr atomic.Value
		)
		deadline := time.Now().Add(d)
		start := time.Now()
		for w := range conc {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 1))
				local := make([]time.Duration, 0, 1<<12)
				var mine []int
				for i := w; i < len(peers); i += conc {
					mine = append(mine, i)
				}
				for k := 0; len(mine) > 0; k++ {
					if warm && k == len(mine) || !warm && time.Now().After(deadline) {
						break
					}
					i := mine[k%len(mine)]
					p := &peers[i]
					if !warm && rng.Float64() < *loadChange {
						p.state ^= 1
					}
					l, err := announce(i, p.bodies[p.state])
					if err != nil {
						nErrs.Add(1)
						firstEr.CompareAndSwap(nil, err.Error())
						continue
					}
					local = append(local, l)
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			})
		}
		wg.Wait()
		if e := firstEr.Load(); e != nil {
			t.Logf("first error: %s", e)
		}
		return lat, nErrs.Load(), time.Since(start)
	}

	if *loadWarm {
		lat, errs, el := run(0, true)
		require.Zero(t, errs)
		t.Logf("warm-up: %d peers announced once in %v", len(lat), el.Round(time.Millisecond))
	}
	cpu0 := processCPU()
	lat, errs, elapsed := run(*loadDuration, false)
	cpu := processCPU() - cpu0
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(10 * time.Microsecond)
	}
	var writes, seen float64
	for _, tr := range trackers {
		writes += counterValue(t, tr.metrics.kvWrites)
	}
	seen = float64(len(lat))
	load, _ := exec.Command("uptime").Output()
	summary := fmt.Sprintf("trackers %d, concurrency %d, peers %d, change %.2f: %d announces in %v = %.0f/s, errors %d, latency p50 %v p99 %v max %v, KV writes %.0f (%.2f per announce, warm-up included); this process used %.2f cores, %.0f µs CPU per announce (trackers, NATS and load generator); %s",
		n, conc, len(peers), *loadChange, len(lat), elapsed.Round(time.Millisecond), seen/elapsed.Seconds(), errs,
		q(0.5), q(0.99), q(1), writes, writes/(seen+float64(len(peers))),
		cpu.Seconds()/elapsed.Seconds(), float64(cpu.Microseconds())/seen, strings.TrimSpace(string(load)))
	t.Log(summary)

	// One swarm: every tracker lists every peer, if every peer announced within the peer TTL
	// (when the machine is too slow for the swarm, peers age out between their announces).
	if cadence := time.Duration(float64(elapsed) * float64(len(peers)) / seen); cadence > trackers[0].cfg.PeerTTL*3/4 {
		t.Logf("each peer announced every %v, near or past the peer TTL %v: not checking that every tracker lists all of them", cadence.Round(time.Millisecond), trackers[0].cfg.PeerTTL)
		return
	}
	for _, tr := range trackers {
		require.Eventually(t, func() bool {
			st, err := client(tr).Stream(ctx, "live", testKey)
			return err == nil && st.SwarmSize == len(peers)
		}, 10*time.Second, 50*time.Millisecond, "tracker %s does not list the whole swarm", tr.URL())
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
