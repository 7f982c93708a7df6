package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
)

// What `make bench-peer` measures: one real viewer process (bin/crowdsurf peer) in a formed swarm,
// its CPU and RSS read from /proc. Everything else runs as the real binaries too: a tracker, an
// origin fed over RTSP by a clip of --peer.video (+64 kbit/s AAC) that ffmpeg encodes once, and
// --peer.neighbours more viewers, all on loopback UDP. Every viewer checks every chunk's signature
// (no shared cache: these are separate processes). Skipped unless -peer.bench is given.
var (
	peerBench      = flag.Bool("peer.bench", false, "run TestPeerProcessCost (make bench-peer)")
	peerBin        = flag.String("peer.bin", "bin/crowdsurf", "the crowdsurf binary that runs the tracker, the origin and the other viewers")
	peerViewerBin  = flag.String("peer.viewer-bin", "bin/crowdsurf-peer", "the binary of the measured viewer: the viewer's build, what viewers download")
	peerVideo      = flag.String("peer.video", "1900k", "video bit rate of the clip (ffmpeg -b:v); with TS overhead and audio the stream is about 2 Mbit/s")
	peerNeighbours = flag.Int("peer.neighbours", 8, "other viewers in the swarm")
	peerWarmup     = flag.Duration("peer.warmup", 20*time.Second, "time the measured viewer runs before the window (the swarm forms)")
	peerWindow     = flag.Duration("peer.window", 30*time.Second, "the measured window")
	peerEnv        = flag.String("peer.env", "", "extra environment of the measured viewer, space-separated NAME=VALUE (e.g. 'GOMAXPROCS=1 GOGC=200')")
	peerFloor      = flag.Bool("peer.floor", false, "also measure a bare quic-go receiver of the same bytes in the window (bench_floor_test.go)")
	peerPin        = flag.Bool("peer.pin", false, "run the measured viewer (and -peer.floor's receiver) alone on CPU 1 and the swarm's processes on CPU 0 (taskset), as on a viewer's own machine, where the swarm does not share its core")
	peerCPUProfile = flag.String("peer.cpuprofile", "", "write a CPU profile of the measured viewer over the window to this file (taken through its --debug-addr)")
	peerArgs       = flag.String("peer.args", "", "extra flags of the measured viewer, space-separated (e.g. '--cores 2 --max-upload 20M')")
	peerChunkSize  = flag.Int("peer.chunk-size", origin.DefaultChunkSize, "the origin's --chunk-size; -peer.floor's receiver gets streams of the frames the origin cuts at the viewer's bit rate")
	peerChunkDur   = flag.Duration("peer.chunk-duration", origin.DefaultChunkDuration, "the origin's --chunk-duration (0: every chunk at -peer.chunk-size)")
	peerRelay      = flag.Bool("peer.relay", false, "make the measured viewer a relay: it joins first, alone with the origin, so it takes a seed slot on every stripe (depth 1), and the neighbours join below it (bench_relay_test.go)")
)

func TestPeerProcessCost(t *testing.T) {
	if !*peerBench {
		t.Skip("a benchmark of one viewer process (about a minute): make bench-peer, or -args -peer.bench")
	}
	bin, err := filepath.Abs(*peerBin)
	require.NoError(t, err)
	_, err = os.Stat(bin)
	require.NoError(t, err, "build it first: make build")
	viewerBin, err := filepath.Abs(*peerViewerBin)
	require.NoError(t, err)
	_, err = os.Stat(viewerBin)
	require.NoError(t, err, "build it first: make build")
	_, err = exec.LookPath("ffmpeg")
	require.NoError(t, err, "the clip is encoded with ffmpeg")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	clip := encodeClip(t, dir, *peerVideo)
	trackerHTTP := freeAddr(t, "tcp")
	originHTTP, originRTSP, originMesh := freeAddr(t, "tcp"), freeAddr(t, "tcp"), freeAddr(t, "udp")
	if *peerPin {
		_, err := exec.LookPath("taskset")
		require.NoError(t, err, "-peer.pin runs the processes under taskset (util-linux)")
		require.GreaterOrEqual(t, runtime.NumCPU(), 2, "-peer.pin needs two CPUs")
	}
	start := func(name string, args ...string) *exec.Cmd {
		line := pinned("0", bin, args...)
		if name == "viewer" {
			line = pinned("1", viewerBin, args...)
		}
		cmd := exec.CommandContext(ctx, line[0], line[1:]...)
		if name == "viewer" {
			// The runtime's own line per GC: the heap it kept, for the figures below.
			cmd.Env = append(append(os.Environ(), "GODEBUG=gctrace=1"), strings.Fields(*peerEnv)...)
		}
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { cancel(); _ = cmd.Wait(); _ = logf.Close() })
		return cmd
	}
	start("tracker", "tracker", "--http", trackerHTTP, "--observe", "-", "--log-level", "warn")
	waitHTTP(t, "http://"+trackerHTTP+"/healthz")
	start("origin", "origin", "--key", filepath.Join(dir, "origin.key"), "--publish-key", "bench",
		"--tracker", "http://"+trackerHTTP, "--http", originHTTP, "--rtsp", originRTSP, "--mesh", originMesh,
		"--udp", "-", "--log-level", "warn",
		"--chunk-size", strconv.Itoa(*peerChunkSize), "--chunk-duration", peerChunkDur.String())
	waitHTTP(t, "http://"+originHTTP+"/healthz")
	pub, err := testcard.New(testcard.Config{URL: "rtsp://" + originRTSP + "/bench", User: "any", Pass: "bench", Clip: clip})
	require.NoError(t, err)
	go func() { _ = pub.Run(ctx) }()
	link := watchLink(t, "http://"+originHTTP)

	// The neighbours' /stats are read only with -peer.relay (their delivery from the relay), but
	// their addresses are known either way.
	neighbourHTTP := make([]string, *peerNeighbours)
	startNeighbours := func() {
		for i := range neighbourHTTP {
			neighbourHTTP[i] = freeAddr(t, "tcp")
			start(fmt.Sprintf("neighbour%d", i), "peer", "--http", neighbourHTTP[i], "--mesh", "127.0.0.1:0", "--log-level", "warn", link)
		}
	}
	peerHTTP := freeAddr(t, "tcp")
	viewerArgs := []string{"peer", "--http", peerHTTP, "--mesh", "127.0.0.1:0", "--log-level", "warn"}
	var debugAddr string
	if *peerCPUProfile != "" {
		debugAddr = freeAddr(t, "tcp")
		viewerArgs = append(viewerArgs, "--debug-addr", debugAddr)
	}
	viewerArgs = append(append(viewerArgs, strings.Fields(*peerArgs)...), link)
	var viewer *exec.Cmd
	if *peerRelay {
		viewer = start("viewer", viewerArgs...)
		waitSeeded(t, peerHTTP)
		startNeighbours()
	} else {
		startNeighbours()
		time.Sleep(5 * time.Second) // the neighbours find each other first, as a swarm the viewer joins
		viewer = start("viewer", viewerArgs...)
	}
	time.Sleep(*peerWarmup)
	floorPid, floorFrame := 0, 0
	var floorBps int64
	if *peerFloor {
		floorBps = peerStats(t, peerHTTP).BitrateBps
		require.Positive(t, floorBps, "the viewer knows no bitrate yet: a longer -peer.warmup")
		floorFrame = benchChunkFrame(floorBps)
		floorPid = startFloor(t, ctx, float64(floorBps)/8, floorFrame)
		time.Sleep(3 * time.Second) // its handshakes, before the window
	}
	profiled := make(chan error, 1)
	if debugAddr != "" {
		go func() { profiled <- fetchCPUProfile(debugAddr, *peerWindow, *peerCPUProfile) }()
	}

	pid := viewer.Process.Pid
	before, err := procCPU(pid)
	require.NoError(t, err)
	var floorBefore time.Duration
	if floorPid != 0 {
		floorBefore, err = procCPU(floorPid)
		require.NoError(t, err)
	}
	statsBefore := peerStats(t, peerHTTP)
	var swarmBefore []peer.Stats
	if *peerRelay {
		swarmBefore = neighbourStats(t, neighbourHTTP)
	}
	switchesBefore := procContextSwitches(pid)
	var rssSum, rssMax int64
	samples := 0
	began := time.Now()
	for time.Since(began) < *peerWindow {
		time.Sleep(time.Second)
		rss, err := procRSS(pid)
		require.NoError(t, err, "the viewer process ended")
		rssSum += rss
		rssMax = max(rssMax, rss)
		samples++
	}
	after, err := procCPU(pid)
	require.NoError(t, err)
	elapsed := time.Since(began)
	switchesAfter := procContextSwitches(pid)
	var floorCPU float64
	if floorPid != 0 {
		floorAfter, err := procCPU(floorPid)
		require.NoError(t, err, "the floor's receiver ended")
		floorCPU = (floorAfter - floorBefore).Seconds() / elapsed.Seconds()
	}
	statsAfter := peerStats(t, peerHTTP)
	var swarmAfter []peer.Stats
	if *peerRelay {
		swarmAfter = neighbourStats(t, neighbourHTTP)
	}

	cpu := (after - before).Seconds() / elapsed.Seconds()
	received := receivedBytes(statsAfter) - receivedBytes(statsBefore)
	t.Logf("viewer process over %.1f s of a formed swarm (after %v of warm-up): %s %s",
		elapsed.Seconds(), *peerWarmup, filepath.Base(viewerBin), strings.Join(viewerArgs[:len(viewerArgs)-1], " "))
	t.Logf("  cpu         %.2f %% of a core (%.2f s); %s", 100*cpu, (after - before).Seconds(),
		describeSwitches(switchesBefore, switchesAfter, elapsed))
	anon, errA := procStatusKB(pid, "RssAnon:")
	file, errF := procStatusKB(pid, "RssFile:")
	require.NoError(t, errA)
	require.NoError(t, errF)
	t.Logf("  rss         mean %.1f MiB, max %.1f MiB (peak of the whole run %.1f MiB); at the end %.1f MiB anonymous (heap, stacks), %.1f MiB of the binary's pages",
		float64(rssSum)/float64(samples)/(1<<20), float64(rssMax)/(1<<20), float64(mustHWM(t, pid))/(1<<20),
		float64(anon)/(1<<20), float64(file)/(1<<20))
	t.Logf("  last GC     %s", lastGCTrace(t, filepath.Join(dir, "viewer.log")))
	t.Logf("  stream      %.2f Mbit/s received (%.2f from peers, %.2f from the origin's mesh, %.2f over HTTP), %.2f Mbit/s sent to peers",
		mbps(received, elapsed), mbps(statsAfter.BytesFromPeers-statsBefore.BytesFromPeers, elapsed),
		mbps(statsAfter.BytesFromOrigin-statsBefore.BytesFromOrigin, elapsed), mbps(statsAfter.BytesFromHTTP-statsBefore.BytesFromHTTP, elapsed),
		mbps(statsAfter.BytesToPeers-statsBefore.BytesToPeers, elapsed))
	t.Logf("  swarm       %d neighbours, %d parents, %d children, depths %v, %d segments complete in the window (%d with fallback), %d rejected",
		statsAfter.Neighbours, statsAfter.Parents, statsAfter.Children, statsAfter.Depths,
		statsAfter.SegmentsComplete-statsBefore.SegmentsComplete, statsAfter.SegmentsWithFallback-statsBefore.SegmentsWithFallback,
		statsAfter.ChunksRejected)
	if *peerRelay {
		for _, line := range relayReport(statsBefore, statsAfter, swarmBefore, swarmAfter, elapsed) {
			t.Logf("  %s", line)
		}
	}
	pktsIn, pktsOut := statsAfter.PacketsReceived-statsBefore.PacketsReceived, statsAfter.PacketsSent-statsBefore.PacketsSent
	t.Logf("  packets     %.0f/s received (%d bytes on average), %.0f/s sent (%d bytes) (QUIC, all mesh connections, ACKs included)",
		float64(pktsIn)/elapsed.Seconds(), meanSize(statsAfter.PacketBytesReceived-statsBefore.PacketBytesReceived, pktsIn),
		float64(pktsOut)/elapsed.Seconds(), meanSize(statsAfter.PacketBytesSent-statsBefore.PacketBytesSent, pktsOut))
	t.Logf("  control     received %s; sent %s", perSecond(statsBefore.ControlReceived, statsAfter.ControlReceived, elapsed),
		perSecond(statsBefore.ControlSent, statsAfter.ControlSent, elapsed))
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("  machine     load average %s", strings.Join(strings.Fields(string(load))[:3], " "))
	}
	if floorPid != 0 {
		t.Logf("  floor       a bare quic-go receiver of %.2f Mbit/s in %d-byte streams over 4 of 9 connections, in the same window: %.2f %% of a core; the viewer is %.1f x that",
			float64(floorBps)/1e6, floorFrame, 100*floorCPU, cpu/floorCPU)
	}
	if debugAddr != "" {
		require.NoError(t, <-profiled, "the viewer's CPU profile")
		t.Logf("  profile     %s (go tool pprof -top -cum %s)", *peerCPUProfile, *peerCPUProfile)
	}
	require.Positive(t, received, "the viewer received nothing in the window")
}

// fetchCPUProfile takes a CPU profile of d from a process's net/http/pprof (--debug-addr) and
// writes it to file.
func fetchCPUProfile(addr string, d time.Duration, file string) error {
	seconds := max(1, int(d.Round(time.Second)/time.Second))
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// lastGCTrace is the viewer's last gctrace line (GODEBUG=gctrace=1): heap before, after and live
// at its last GC, the heap goal, stacks.
func lastGCTrace(t *testing.T, log string) string {
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	last := "none"
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "gc ") {
			if i := strings.Index(line, "ms cpu, "); i >= 0 {
				line = line[i+len("ms cpu, "):]
			}
			last = line
		}
	}
	return last
}

// encodeClip encodes a 16 s loop at the given video bit rate (the test card's recipe, 720p, CBR
// with filler so the rate holds whatever the picture) and loads it as a publisher clip.
func encodeClip(t *testing.T, dir, video string) *testcard.Clip {
	t.Helper()
	out := filepath.Join(dir, "clip.ts")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=16",
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=16",
		"-pix_fmt", "yuv420p", "-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast",
		"-b:v", video, "-minrate", video, "-maxrate", video, "-bufsize", video, "-x264-params", "nal-hrd=cbr",
		"-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-bf", "0",
		"-c:a", "aac", "-profile:a", "aac_low", "-b:a", "64k", "-ar", "48000", "-ac", "1",
		"-f", "mpegts", out)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "ffmpeg: %s", b)
	ts, err := os.ReadFile(out)
	require.NoError(t, err)
	clip, err := testcard.Parse(ts)
	require.NoError(t, err)
	return clip
}

// freeAddr is a loopback address with a port free right now.
func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "%s never answered", url)
}

// watchLink waits until the origin lists the published stream and returns its watch link.
func watchLink(t *testing.T, origin string) string {
	t.Helper()
	var link string
	require.Eventually(t, func() bool {
		resp, err := http.Get(origin + "/v1/streams")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Streams []struct {
				Name      string `json:"name"`
				WatchLink string `json:"watch_link"`
			} `json:"streams"`
		}
		if json.NewDecoder(resp.Body).Decode(&body) != nil {
			return false
		}
		for _, s := range body.Streams {
			if s.Name == "bench" && s.WatchLink != "" {
				link = s.WatchLink
				return true
			}
		}
		return false
	}, 30*time.Second, 200*time.Millisecond, "the origin never listed the stream")
	return link
}

// meanSize is bytes/packets, 0 for no packets.
func meanSize(bytes, packets uint64) uint64 {
	if packets == 0 {
		return 0
	}
	return bytes / packets
}

// receivedBytes is what the viewer received from anywhere: peers, the origin's mesh and HTTP.
func receivedBytes(s peer.Stats) int64 { return s.BytesFromPeers + s.BytesFromOrigin + s.BytesFromHTTP }

// peerStats is the viewer's /stats, which serves peer.Stats.
func peerStats(t *testing.T, addr string) peer.Stats {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var s peer.Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	return s
}

// procCPU is the user and system time the process has used (/proc/PID/stat, clock ticks of
// 1/100 s, USER_HZ on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after its closing parenthesis do not.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

func procRSS(pid int) (int64, error) { return procStatusKB(pid, "VmRSS:") }

func mustHWM(t *testing.T, pid int) int64 {
	v, err := procStatusKB(pid, "VmHWM:")
	require.NoError(t, err)
	return v
}

func procStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// perSecond is each count's rate over d, e.g. "HAVE 17.9/s, STATUS 8.0/s", largest first.
func perSecond(before, after map[string]int64, d time.Duration) string {
	names := make([]string, 0, len(after))
	for name, n := range after {
		if n > before[name] { // only what was sent or received in the window
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		di, dj := after[names[i]]-before[names[i]], after[names[j]]-before[names[j]]
		return di > dj || di == dj && names[i] < names[j]
	})
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f/s", name, float64(after[name]-before[name])/d.Seconds()))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) * 8 / d.Seconds() / 1e6 }

// pinned is the command line of bin with args, run on the given CPU under taskset when -peer.pin
// is set (the viewer alone on CPU 1, the swarm on CPU 0); the same line otherwise.
func pinned(cpu, bin string, args ...string) []string {
	if !*peerPin {
		return append([]string{bin}, args...)
	}
	return append([]string{"taskset", "-c", cpu, bin}, args...)
}

// benchChunkFrame is the largest frame the bench's origin cuts for a stream of bps: its chunk
// size rule at that rate (the viewer's measured rate is within a few percent of the origin's).
func benchChunkFrame(bps int64) int {
	d := *peerChunkDur
	if d == 0 {
		d = -1
	}
	return origin.ChunkSizeFor(float64(bps)/8, d, *peerChunkSize) + proto.MaxChunkHeader
}
