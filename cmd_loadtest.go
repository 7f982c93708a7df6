//go:build !viewer

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
	"github.com/crowdsurf/crowdsurf/loadtest"
	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/peer"
)

// errBadLoadtestFlag means a loadtest flag holds a value the run cannot use (zero viewers, no
// duration, no bit rate); the message names the flag and a value that works.
var errBadLoadtestFlag = errors.New("not a usable value")

func init() {
	register("loadtest", "run a whole broadcast on this machine and report offload, latency, stalls", runLoadtest)
}

func runLoadtest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	peers := fs.Int("peers", 20, "number of viewers, each a peer node with a headless player (in cdn mode: players only)")
	duration := fs.Duration("duration", 60*time.Second, "measured interval; viewers join and play inside it")
	bitrate := fs.String("bitrate", "1Mbit", "bit rate of the synthetic stream, e.g. 500kbit, 1Mbit, 2.5Mbit")
	segment := fs.Duration("segment", 2*time.Second, "segment duration (rounded to whole frames at 25 fps)")
	chunkDuration := fs.Duration("chunk-duration", origin.DefaultChunkDuration, "the origin's --chunk-duration: chunks of about this much of the stream (8 KiB at 1 Mbit/s, 16 KiB at 2);\n0 keeps every chunk at 8 KiB")
	seedCopies := fs.Int("seed-copies", peer.DefaultSeedCopies, "children the origin's mesh root accepts per stripe: the copies it seeds")
	netKind := fs.String("net", "sim", "mesh network: sim (simulated links with uplink caps, latency, loss) or udp (real loopback UDP)")
	latency := fs.Duration("latency", 20*time.Millisecond, "one-way latency of every mesh link (sim only)")
	loss := fs.String("loss", "0", "packet loss per mesh link in percent, e.g. 1 or 1% (sim only)")
	uplink := fs.String("uplink", "3Mbit", "peers' uplink: one rate, or a distribution like 50%:3Mbit,30%:1Mbit,20%:0\n(0 = a free rider that uploads nothing); in udp mode only the upload budget")
	natMix := fs.String("nat", "", "viewers behind home routers (sim only), e.g. 50%:cone,30%:symmetric,20%:public; the tracker\nthen tells peers their reflexive address and coordinates hole punches; empty = all public")
	join := fs.Duration("join", 0, "spread the joins uniformly over this time (0: everyone joins at once)")
	startWait := fs.Duration("start-neighbour-wait", 0, "how long a joining peer leaves its start to fellow viewers before the CDN sends\nwhat they did not (0: the CDN after 300 ms); a start nobody holds yet (a crowd) is shared in\nslices, one from the CDN per joiner; saves origin copies, costs up to that much startup, and in\nreal time CPU (200 peers on two cores collapse with it; the scale lab does not)")
	churn := fs.String("churn", "0", "percent of the peers leaving per minute (each replaced by a new joiner at once)")
	mode := fs.String("mode", "p2p", "p2p (viewers form the mesh) or cdn (every player reads the origin's HTTP: the baseline)")
	ll := fs.Bool("ll", false, "players play ll.m3u8 in low-latency mode (fMP4 parts, blocking reloads) instead of index.m3u8")
	jsonPath := fs.String("json", "", "write the report as JSON to this file")
	htmlPath := fs.String("html", "", "write a self-contained HTML report with charts to this file")
	source := fs.String("source", "synthetic", "synthetic (a made-up MPEG-TS stream at --bitrate) or testcard (the built-in test card, H.264 and AAC); either is fed in-process into the real origin")
	mediaCheck := fs.String("media-check", "auto", "players parse and check every segment's MPEG-TS: on, off or auto (on up to 50 peers)")
	floor := fs.Bool("floor", false, "after the run, relay the same bitrate through a bare quic-go tree of as many nodes (loopback UDP, no signatures, no logic) and report the mesh's second-half CPU as a multiple of it")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof; samples carry a component label: peer, player, origin, source, tracker; see -tags)")
	memProfile := fs.String("memprofile", "", "at the end of the measured interval, before the viewers leave, write a heap profile of the swarm to this file\n(go tool pprof -sample_index=inuse_space or alloc_space) and a goroutine profile to FILE.goroutines, and print the runtime's memory figures on stderr")
	logs := addLogFlags(fs, "error", "verbose", "warn") // warn logs every component's warnings
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: crowdsurf loadtest [flags]\n\n")
		fmt.Fprintf(out, "Runs a whole broadcast on this machine: a live source fed in-process into the real origin (its\n")
		fmt.Fprintf(out, "mesh root, its registration at a tracker, its CDN endpoint), and --peers viewers (a peer node\n")
		fmt.Fprintf(out, "plus a headless player each). Prints a progress line on stderr and a summary table on stdout.\n")
		fmt.Fprintf(out, "Measures (DESIGN.md): offload = share of the bytes peers received that did not come from the\n")
		fmt.Fprintf(out, "origin; origin copies = origin egress (QUIC seeding + HTTP, the origin's own counters) / stream\n")
		fmt.Fprintf(out, "produced; delivery latency = origin emitting a chunk to a peer holding it verified; startup,\n")
		fmt.Fprintf(out, "stalls and live latency from the players.\n\n")
		fmt.Fprintf(out, "The source runs four segments before the first viewer joins (not measured), so players start\n")
		fmt.Fprintf(out, "three target durations behind the live edge as real ones do. The run uses GOGC=400 unless GOGC is\n")
		fmt.Fprintf(out, "set, and a memory limit of about 5 MB per viewer at 1 Mbit/s (more with the bit rate) unless\n")
		fmt.Fprintf(out, "GOMEMLIMIT is; the limit is raised by half whenever the collector takes over a fifth of the CPU\n")
		fmt.Fprintf(out, "for three seconds (a run behind holds more than the estimate), and GOMEMLIMIT=off runs without\n")
		fmt.Fprintf(out, "one. The in-process peers share one cache of verified chunks, so each chunk's\n")
		fmt.Fprintf(out, "signature is checked once per run (every copy is still compared byte for byte): the CPU figures leave out the Ed25519\n")
		fmt.Fprintf(out, "work each real viewer does on its own machine. Besides whole-run figures the summary shows the\n")
		fmt.Fprintf(out, "second half of the run on its own, once the swarm has formed.\n")
		fmt.Fprintf(out, "Example: crowdsurf loadtest --peers 200 --net sim --duration 60s --json r.json --html r.html\n\n")
		printFlags(fs)
	}
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// Zero means "the default" inside loadtest.Config; on the command line it is a mistake, and
	// running the default silently would measure something the user did not ask for.
	switch {
	case *peers < 1:
		return fmt.Errorf("--peers %d: %w: a load test needs at least one viewer, e.g. --peers 20", *peers, errBadLoadtestFlag)
	case *duration <= 0:
		return fmt.Errorf("--duration %v: %w: the measured interval must be positive, e.g. --duration 60s", *duration, errBadLoadtestFlag)
	case *segment <= 0:
		return fmt.Errorf("--segment %v: %w: segments must last a while, e.g. --segment 2s", *segment, errBadLoadtestFlag)
	case *seedCopies < 1:
		return fmt.Errorf("--seed-copies %d: %w: the origin must seed at least one copy, e.g. --seed-copies 2", *seedCopies, errBadLoadtestFlag)
	case *join < 0 || *latency < 0:
		return fmt.Errorf("--join %v --latency %v: %w: durations cannot be negative", *join, *latency, errBadLoadtestFlag)
	}

	cfg := loadtest.Config{
		Peers: *peers, Duration: *duration, Segment: *segment, SeedCopies: *seedCopies, Net: *netKind,
		Latency: *latency, Join: *join, StartNeighbourWait: *startWait, Mode: *mode, Source: *source, OnProgress: loadtestProgress(os.Stderr),
		Floor: *floor, LL: *ll, ChunkDuration: offIfZero(*chunkDuration),
	}
	if *memProfile != "" {
		cfg.AtEnd = func() {
			if err := writeHeapProfile(*memProfile, os.Stderr); err != nil {
				fmt.Fprintf(os.Stderr, "--memprofile: %v\n", err)
			}
		}
	}
	var err error
	if cfg.BitrateBps, err = loadtest.ParseRate(*bitrate); err != nil {
		return fmt.Errorf("--bitrate: %w", err)
	}
	if cfg.BitrateBps <= 0 {
		return fmt.Errorf("--bitrate %s: %w: the stream needs a bit rate, e.g. --bitrate 1Mbit", *bitrate, errBadLoadtestFlag)
	}
	if cfg.Uplink, err = loadtest.ParseUplink(*uplink); err != nil {
		return fmt.Errorf("--uplink: %w", err)
	}
	if *natMix != "" {
		if cfg.NAT, err = simnet.ParseNATMix(*natMix); err != nil {
			return fmt.Errorf("--nat: %w", err)
		}
	}
	if cfg.LossPct, err = parsePercent(*loss); err != nil {
		return fmt.Errorf("--loss: %w", err)
	}
	if cfg.ChurnPct, err = parsePercent(*churn); err != nil {
		return fmt.Errorf("--churn: %w", err)
	}
	switch *mediaCheck {
	case "on":
		cfg.MediaCheck, cfg.MediaCheckSet = true, true
	case "off":
		cfg.MediaCheckSet = true
	case "auto":
	default:
		return fmt.Errorf("--media-check %q: use on, off or auto", *mediaCheck)
	}
	if cfg.Logger, err = logs.logger(os.Stderr); err != nil {
		return err
	}

	// Hundreds of nodes in one process allocate fast; collecting less often buys CPU for the
	// mesh with memory this machine has, up to a limit proportional to what the viewers hold
	// live (loadtest.MemoryLimit), near which the collector runs more often. Without the limit
	// GOGC=400 let the process grow to five times its live heap. GOGC and GOMEMLIMIT in the
	// environment still win.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(loadtest.MemoryLimit(cfg))
		// A run that falls behind holds more than the estimate; the guard raises the limit
		// before the collector eats the run (loadtest/memoryguard.go).
		guardCtx, stopGuard := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			loadtest.GuardMemoryLimit(guardCtx, cfg.Logger)
		}()
		defer func() {
			stopGuard()
			<-done
		}()
	}
	lt, err := loadtest.New(cfg)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	runErr := lt.Run(ctx)
	fmt.Fprintln(os.Stderr)
	r := lt.Report()
	if r == nil {
		if runErr == nil {
			runErr = errors.New("no report")
		}
		return runErr
	}
	if err := r.WriteSummary(os.Stdout); err != nil {
		return err
	}
	if *jsonPath != "" {
		if err := r.WriteJSONFile(*jsonPath); err != nil {
			return err
		}
	}
	if *htmlPath != "" {
		if err := r.WriteHTMLFile(*htmlPath); err != nil {
			return err
		}
	}
	return runErr
}

// parsePercent reads "5", "5%" or "0.5" as a percentage.
func parsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a percentage; write e.g. 1 or 1%%", s)
	}
	return v, nil
}

// loadtestProgress redraws one line in place on a terminal, and prints one line every five
// seconds otherwise so that logs stay readable.
func loadtestProgress(w *os.File) func(string) {
	terminal := false
	if fi, err := w.Stat(); err == nil {
		terminal = fi.Mode()&os.ModeCharDevice != 0
	}
	width := 0
	var last time.Time
	return func(line string) {
		if !terminal {
			if time.Since(last) >= 5*time.Second {
				last = time.Now()
				fmt.Fprintln(w, line)
			}
			return
		}
		fmt.Fprintf(w, "\r%-*s", width, line)
		width = max(width, len(line))
	}
}
