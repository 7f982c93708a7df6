package loadtest

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats-server/v2/server/ats"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/memnet"
	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

// The scale lab's flags (`make scale`, SCALE_FLAGS); without -lab.peers TestScaleLab skips.
var (
	labPeers    = flag.Int("lab.peers", 0, "TestScaleLab: viewers in the swarm (0 skips the test)")
	labDuration = flag.Duration("lab.duration", 60*time.Second, "TestScaleLab: measured interval, simulated")
	labChurn    = flag.Float64("lab.churn", 0, "TestScaleLab: percent of the peers leaving per minute, each replaced at once")
	labJoin     = flag.Duration("lab.join", 0, "TestScaleLab: spread the joins over this simulated time (0: all at once)")
	labNAT      = flag.String("lab.nat", "", "TestScaleLab: NAT mix, e.g. 50%:cone,30%:symmetric,20%:public (empty: all public)")
	labUplink   = flag.String("lab.uplink", "3Mbit", "TestScaleLab: peers' uplinks, as loadtest --uplink")
	labBitrate  = flag.String("lab.bitrate", "1Mbit", "TestScaleLab: stream bit rate")
	labLatency  = flag.Duration("lab.latency", 20*time.Millisecond, "TestScaleLab: one-way latency of every mesh link")
	labJSON     = flag.String("lab.json", "", "TestScaleLab: write the report as JSON to this file")
	labHTML     = flag.String("lab.html", "", "TestScaleLab: write the HTML report to this file")
	labHeap     = flag.String("lab.heapprofile", "", "TestScaleLab: write a heap profile half way through the run to this file")
	labLL       = flag.Bool("lab.ll", false, "TestScaleLab: players play ll.m3u8 in low-latency mode, as loadtest --ll")
	labStart    = flag.Duration("lab.startwait", 0, "TestScaleLab: as loadtest --start-neighbour-wait")
	labChunkDur = flag.Duration("lab.chunkduration", 0, "TestScaleLab: as loadtest --chunk-duration (0: the origin's default; negative: every chunk 8 KiB)")
	labLog      = flag.String("lab.log", "", "TestScaleLab: write every component's debug log (JSON lines, simulated times) to this file")
)

// runLab runs cfg's load test in a synctest bubble (see lab.go) and returns its report with the
// lab's figures: simulated against wall time.
func runLab(t *testing.T, cfg Config) *Report {
	t.Helper()
	// nats-server's access-time ticker (package ats) selects on a channel made at init,
	// outside any bubble: started from inside, it would never wait durably and the bubble's
	// clock would stop. Holding one registration from out here keeps it out of the bubble.
	ats.Register()
	defer ats.Unregister()

	// Nothing in the bubble may open a real socket: count them once a simulated second.
	socketsBefore := openSockets(t)
	socketsMax := socketsBefore
	progress := cfg.OnProgress
	cfg.OnProgress = func(line string) {
		socketsMax = max(socketsMax, openSockets(t))
		if progress != nil {
			progress(line)
		}
	}

	wallStart := wallNow()
	cpuStart := processUsage().CPU
	var r *Report
	var simulated time.Duration
	synctest.Test(t, func(t *testing.T) {
		cfg.inMemory = memnet.New(memnet.Config{})
		defer cfg.inMemory.Close()
		start := time.Now()
		lt, err := New(cfg)
		require.NoError(t, err)
		runErr := lt.Run(context.Background())
		lt.closeIdleConns()
		simulated = time.Since(start)
		require.NoError(t, runErr)
		r = lt.Report()
		require.NotNil(t, r)
	})
	wall := wallNow().Sub(wallStart)
	require.Equal(t, socketsBefore, socketsMax, "the lab opened real sockets")
	r.StartedAt = wallStart.UTC()
	r.Parameters.Net = "sim (virtual time)"
	cfg, err := cfg.withDefaults()
	require.NoError(t, err)
	r.Lab = newLabFigures(r, cfg, simulated, wall, processUsage().CPU-cpuStart)
	r.Notes = append(r.Notes, "scale lab: the run's times (durations, latencies, startup, live latency) are simulated; cores are CPU seconds per simulated second")
	return r
}

// openSockets counts the process's open sockets.
func openSockets(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// wallNow reads the real clock: inside a bubble time.Now is the bubble's.
func wallNow() time.Time {
	var tv syscall.Timeval
	if err := syscall.Gettimeofday(&tv); err != nil {
		return time.Time{}
	}
	return time.Unix(tv.Unix())
}

// labProgress prints the load test's progress line with the wall time it took to get there, and
// writes the heap profile (-lab.heapprofile) at the progress line half way through the run.
func labProgress(t *testing.T, half int) func(string) {
	start := wallNow()
	last := time.Time{}
	lines := 0
	return func(line string) {
		lines++
		if lines == half && *labHeap != "" {
			writeHeapProfile(t, *labHeap)
		}
		now := wallNow()
		if now.Sub(last) < 5*time.Second {
			return
		}
		last = now
		fmt.Fprintf(os.Stderr, "%s (wall %.0f s)\n", line, now.Sub(start).Seconds())
	}
}

func writeHeapProfile(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("-lab.heapprofile: %v", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Errorf("-lab.heapprofile: %v", err)
	}
}

// TestLabSwarmFormsAndDelivers is the scale lab at its smallest: twenty peers for twenty
// simulated seconds, with the real peer, tracker and player code on simulated links. The swarm
// must form (peers feed each other, trees deeper than the origin's children) and every player
// must start and play clean segments. No timing target: those belong to `make scale`.
func TestLabSwarmFormsAndDelivers(t *testing.T) {
	cfg := Config{Peers: 20, Duration: 20 * time.Second}
	r := runLab(t, cfg)
	cfg, err := cfg.withDefaults()
	require.NoError(t, err)
	jsonBytes, html := writeReports(t, r)
	requireSaneReport(t, r, cfg, jsonBytes, html)

	require.Positive(t, r.Detail.BytesFromPeers, "peers fed each other")
	require.Greater(t, r.Offload, 0.5, "more of the stream came from peers than from the origin: %+v", r.Detail)
	require.Positive(t, r.DeliveryLatencyMs.Samples)
	deepest := 0
	for _, b := range r.DepthHistogram {
		if b.Count > 0 {
			deepest = max(deepest, b.Depth)
		}
	}
	require.GreaterOrEqual(t, deepest, 2, "some peers sit below other peers: %+v", r.DepthHistogram)
	require.NotNil(t, r.Lab)
	require.GreaterOrEqual(t, r.Lab.SimulatedS, cfg.Duration.Seconds(), "the simulated clock covered the run")
	require.Contains(t, html, "scale lab")
}

// TestScaleLab is `make scale`: the load test at -lab.peers peers in virtual time. It writes
// the same JSON and HTML report as `crowdsurf loadtest` and prints its summary; it asserts only
// that the run completed (the targets are read off the report).
func TestScaleLab(t *testing.T) {
	if *labPeers == 0 {
		t.Skip("the scale lab runs with -lab.peers N (make scale)")
	}
	cfg := Config{
		Peers: *labPeers, Duration: *labDuration, ChurnPct: *labChurn, Join: *labJoin, Latency: *labLatency,
		LL: *labLL, StartNeighbourWait: *labStart, ChunkDuration: *labChunkDur,
		OnProgress: labProgress(t, int(labDuration.Seconds()/2)),
	}
	if *labLog != "" {
		f, err := os.Create(*labLog)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cfg.Logger = slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var err error
	if cfg.BitrateBps, err = ParseRate(*labBitrate); err != nil {
		t.Fatalf("-lab.bitrate: %v", err)
	}
	if cfg.Uplink, err = ParseUplink(*labUplink); err != nil {
		t.Fatalf("-lab.uplink: %v", err)
	}
	if *labNAT != "" {
		if cfg.NAT, err = simnet.ParseNATMix(*labNAT); err != nil {
			t.Fatalf("-lab.nat: %v", err)
		}
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // as `crowdsurf loadtest` does
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// At GOGC=400 a thousand peers' heap (about 4 MB live each) would grow to some 20 GB
		// before a collection; past half the machine's memory the collector works harder instead.
		var si syscall.Sysinfo_t
		if err := syscall.Sysinfo(&si); err == nil {
			debug.SetMemoryLimit(int64(si.Totalram) * int64(si.Unit) / 2)
		}
	}
	r := runLab(t, cfg)
	require.NoError(t, r.WriteSummary(os.Stdout))
	if *labJSON != "" {
		require.NoError(t, r.WriteJSONFile(*labJSON))
	}
	if *labHTML != "" {
		require.NoError(t, r.WriteHTMLFile(*labHTML))
	}
}
