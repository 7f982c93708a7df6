package tracker

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
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
// It prints announces a second, latency quantiles, KV writes per announce, and the CPU per announce
// of this process (trackers and NATS servers) and of the load client's process, with the
// machine's load.
var (
	loadDuration    = flag.Duration("load.duration", 0, "announce load test: measured interval (0 skips TestAnnounceLoad)")
	loadTrackers    = flag.Int("load.trackers", 1, "announce load test: tracker replicas; more than one share a three-node NATS cluster (R3 buckets)")
	loadConcurrency = flag.Int("load.concurrency", 64, "announce load test: announces in flight (keep-alive HTTP/1.1 connections)")
	loadPeers       = flag.Int("load.peers", 20000, "announce load test: peers in the swarm, each announcing in turn")
	loadChange      = flag.Float64("load.change", 0.1, "announce load test: share of announces that change what a neighbour choice reads (free slots, depths)")
	loadWarm        = flag.Bool("load.warm", true, "announce load test: every peer announces once before the measured interval")
)

// loadBodies are peer i's two announce bodies: the states it toggles between when something
// changes.
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

	// The client runs in a process of its own (loadclient_test.go), so this process's CPU over
	// the measured interval is the trackers' and the NATS servers' alone.
	clientCfg := loadClientConfig{Peers: *loadPeers, Concurrency: *loadConcurrency, Duration: *loadDuration, Change: *loadChange, Warm: *loadWarm}
	for _, tr := range trackers {
		clientCfg.URLs = append(clientCfg.URLs, tr.URL()+proto.TrackerAnnouncePath)
	}
	res, cpu, machine := runLoadClientProcess(t, clientCfg)
	if res.FirstErr != "" {
		t.Logf("first error: %s", res.FirstErr)
	}

	var writes float64
	for _, tr := range trackers {
		writes += counterValue(t, tr.metrics.kvWrites)
	}
	seen, secs := float64(res.Announces), res.Elapsed.Seconds()
	load, _ := exec.Command("uptime").Output()
	round := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	t.Logf("trackers %d, concurrency %d, peers %d, change %.2f: %d announces in %v = %.0f/s, errors %d, latency p50 %v p99 %v max %v, KV writes %.0f (%.2f per announce, warm-up included)",
		n, *loadConcurrency, *loadPeers, *loadChange, res.Announces, res.Elapsed.Round(time.Millisecond), seen/secs, res.Errors,
		round(res.P50), round(res.P99), round(res.Max), writes, writes/(seen+float64(*loadPeers)))
	t.Logf("CPU: trackers and NATS servers %.2f cores, %.1f µs per announce; load client %.2f cores, %.1f µs per announce",
		cpu.Seconds()/secs, float64(cpu.Microseconds())/seen, res.CPU.Seconds()/secs, float64(res.CPU.Microseconds())/seen)
	if machine >= 0 {
		t.Logf("machine: %d cores, %.2f busy over the interval, %.2f of them other processes'; %s",
			runtime.NumCPU(), machine.Seconds()/secs, (machine-cpu-res.CPU).Seconds()/secs, strings.TrimSpace(string(load)))
	} else {
		t.Logf("machine: %d cores; %s", runtime.NumCPU(), strings.TrimSpace(string(load)))
	}
	require.Zero(t, res.Errors, "announces failed")

	// One swarm: every tracker lists every peer, if every peer announced within the peer TTL
	// (when the machine is too slow for the swarm, peers age out between their announces).
	if cadence := time.Duration(float64(res.Elapsed) * float64(*loadPeers) / seen); cadence > trackers[0].cfg.PeerTTL*3/4 {
		t.Logf("each peer announced every %v, near or past the peer TTL %v: not checking that every tracker lists all of them", cadence.Round(time.Millisecond), trackers[0].cfg.PeerTTL)
		return
	}
	for _, tr := range trackers {
		require.Eventually(t, func() bool {
			st, err := client(tr).Stream(ctx, "live", testKey)
			return err == nil && st.SwarmSize == *loadPeers
		}, 10*time.Second, 50*time.Millisecond, "tracker %s does not list the whole swarm", tr.URL())
	}
}

// runLoadClientProcess runs the load client (TestAnnounceLoadClient in this test binary) and
// returns its result, the CPU this process used over the client's measured interval and the
// CPU the whole machine used meanwhile (-1 where /proc/stat cannot tell).
func runLoadClientProcess(t *testing.T, cfg loadClientConfig) (loadResult, time.Duration, time.Duration) {
	rawCfg, err := json.Marshal(cfg)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAnnounceLoadClient$", "-test.count", "1", "-test.timeout", "0")
	cmd.Env = append(os.Environ(), loadClientEnv+"="+string(rawCfg))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var (
		res       loadResult
		cpu0, cpu time.Duration
		mach0     time.Duration
		machine   time.Duration = -1
		measuring bool
		gotRes    bool
		other     []string
	)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		switch line := sc.Text(); {
		case line == loadLineMeasuring:
			cpu0, mach0, measuring = processCPU(), machineCPU(), true
		case strings.HasPrefix(line, loadLineResult) && measuring:
			cpu = processCPU() - cpu0
			if mach := machineCPU(); mach >= 0 && mach0 >= 0 {
				machine = mach - mach0
			}
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, loadLineResult)), &res))
			gotRes = true
		default:
			other = append(other, line)
		}
	}
	require.NoError(t, cmd.Wait(), "the load client failed:\n%s", strings.Join(other, "\n"))
	require.True(t, gotRes, "the load client reported no result:\n%s", strings.Join(other, "\n"))
	return res, cpu, machine
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the CPU time all processes of the machine have used (the first line of
// /proc/stat: every state but idle and iowait); -1 where there is no /proc/stat.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return -1
	}
	var busy int64
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return -1
		}
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is counted in user already
			busy += v
		}
	}
	const userHZ = 100 // the kernel's USER_HZ on every Linux architecture Go runs on
	return time.Duration(busy) * time.Second / userHZ
}
