//go:build !viewer

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/humanize"
	"github.com/crowdsurf/crowdsurf/player"
)

func init() {
	register("play", "play an HLS URL headlessly and measure startup, stalls, latency", runPlay)
}

func runPlay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("play", flag.ContinueOnError)
	duration := fs.Duration("duration", 0, "how long to play, e.g. 30s or 5m; 0 plays until interrupted (Ctrl-C)")
	asJSON := fs.Bool("json", false, "print the summary as JSON on stdout instead of text (its \"mode\" says hls or ll-hls)")
	noLL := fs.Bool("no-ll", false, "play a low-latency playlist (ll.m3u8) as plain HLS, in whole segments")
	logs := addLogFlags(fs, "error", "verbose", "warn") // warn logs every playback error as it happens
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: crowdsurf play URL [--duration D] [--json] [--no-ll] [--log-level warn]\n\n")
		fmt.Fprintf(out, "Plays an HLS playlist URL (an origin, a peer's localhost URL, or any HLS server) like a real\n")
		fmt.Fprintf(out, "player: joins 3 target durations behind the live edge, reloads the playlist, downloads segments\n")
		fmt.Fprintf(out, "in order and plays them out in real time. A low-latency playlist (ll.m3u8) plays like hls.js in\n")
		fmt.Fprintf(out, "low-latency mode: it joins PART-HOLD-BACK behind the edge and fetches parts as they appear, with\n")
		fmt.Fprintf(out, "blocking playlist reloads and preload hints (--no-ll plays it as plain HLS instead). A status\n")
		fmt.Fprintf(out, "line on stderr shows buffer, live latency, stalls and segments; at the end a summary goes to\n")
		fmt.Fprintf(out, "stdout. --log-level warn logs every playback error as it happens.\n\n")
		printFlags(fs)
	}

	playlistURL, err := playParseArgs(fs, args)
	if err != nil {
		return err
	}

	logger, err := logs.logger(os.Stderr)
	if err != nil {
		return err
	}
	p, err := player.New(player.Config{URL: playlistURL, Duration: *duration, Logger: logger, NoLowLatency: *noLL})
	if err != nil {
		return err
	}

	statusCtx, stopStatus := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { playShowStatus(statusCtx, os.Stderr, p) })
	err = p.Run(ctx)
	stopStatus()
	wg.Wait()
	if err != nil {
		return err
	}

	sum := p.Summary()
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return fmt.Errorf("writing summary: %w", err)
		}
	} else {
		playPrintSummary(os.Stdout, sum)
	}
	if !sum.Started {
		return errors.New("nothing was played: check that the URL serves a live HLS playlist with segments")
	}
	return nil
}

// playParseArgs lets flags come before or after the URL (the flag package stops at the first
// argument that is not a flag).
func playParseArgs(fs *flag.FlagSet, args []string) (string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if err := applyEnv(fs, nil); err != nil {
		return "", err
	}
	if len(positional) != 1 {
		fs.Usage()
		return "", fmt.Errorf("want exactly one URL, got %d arguments", len(positional))
	}
	return positional[0], nil
}

// playShowStatus redraws one status line about once a second: in place on a terminal, one line every
// few seconds otherwise so logs stay readable.
func playShowStatus(ctx context.Context, w *os.File, p *player.Player) {
	terminal := false
	if fi, err := w.Stat(); err == nil {
		terminal = fi.Mode()&os.ModeCharDevice != 0
	}
	every := time.Second
	if !terminal {
		every = 5 * time.Second
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	width := 0
	for {
		select {
		case <-ctx.Done():
			if terminal && width > 0 {
				fmt.Fprintf(w, "\r%s\r", strings.Repeat(" ", width))
			}
			return
		case <-ticker.C:
		}
		line := playStatusLine(p.Status())
		if terminal {
			fmt.Fprintf(w, "\r%-*s", width, line)
			width = max(width, len(line))
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

func playStatusLine(s player.Status) string {
	latency := "n/a"
	if s.HasLatency {
		latency = fmt.Sprintf("%.1fs", s.LatencyMs/1000)
	}
	parts := ""
	if s.Parts > 0 {
		parts = fmt.Sprintf(" parts %d", s.Parts)
	}
	return fmt.Sprintf("%-8s buffer %5.1fs  latency %6s  stalls %d (%.1fs)  segments %d%s  %s  errors %d",
		s.State, s.BufferMs/1000, latency, s.Stalls, s.StallMs/1000, s.Segments, parts, humanize.Bytes(s.Bytes), s.Errors)
}

func playPrintSummary(w io.Writer, s player.Summary) {
	fmt.Fprintf(w, "played      %s\n", s.URL)
	switch s.Mode {
	case player.ModeLowLatency:
		fmt.Fprintf(w, "mode        low-latency HLS (parts, blocking reloads)\n")
	case player.ModeHLS:
		fmt.Fprintf(w, "mode        HLS (whole segments)\n")
	}
	if s.Started {
		fmt.Fprintf(w, "startup     %.0f ms\n", s.StartupMs)
	} else {
		fmt.Fprintf(w, "startup     never started\n")
	}
	fmt.Fprintf(w, "watched     %.1f s\n", s.WatchedMs/1000)
	fmt.Fprintf(w, "stalls      %d, %.1f s in total (stall ratio %.2f%%)\n", s.Stalls, s.StallMs/1000, 100*s.StallRatio)
	if s.LiveLatencyMs.Samples > 0 {
		fmt.Fprintf(w, "latency     p50 %.2f s, p95 %.2f s (%d samples)\n",
			s.LiveLatencyMs.P50/1000, s.LiveLatencyMs.P95/1000, s.LiveLatencyMs.Samples)
	} else {
		fmt.Fprintf(w, "latency     n/a (no EXT-X-PROGRAM-DATE-TIME)\n")
	}
	fmt.Fprintf(w, "segments    %d (%s), %d playlist loads, %d discontinuities\n",
		s.Segments, humanize.Bytes(s.Bytes), s.PlaylistLoads, s.Discontinuities)
	if s.Parts > 0 {
		fmt.Fprintf(w, "parts       %d, %d of them requested ahead from a preload hint\n", s.Parts, s.PreloadedParts)
	}
	fmt.Fprintf(w, "errors      %d (sequence %d, timestamps %d, parse %d, fetch %d)\n",
		s.Errors, s.SequenceErrors, s.TimestampErrors, s.ParseErrors, s.FetchErrors)
	for _, m := range s.ErrorMessages {
		fmt.Fprintf(w, "  - %s\n", m)
	}
	if len(s.ErrorMessages) < s.Errors {
		fmt.Fprintf(w, "  (%d more)\n", s.Errors-len(s.ErrorMessages))
	}
}
