//go:build !viewer

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/crowdsurf/crowdsurf/demo"
	"github.com/crowdsurf/crowdsurf/peer"
)

func init() {
	register("demo", "run the whole system on this machine: tracker, origin with a test card, peers", runDemo)
}

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var cfg demo.Config
	fs.StringVar(&cfg.OriginHTTP, "origin-http", "127.0.0.1:8080", "origin HTTP address (HLS, chunks, /v1/streams, /stats)")
	fs.StringVar(&cfg.OriginRTSP, "origin-rtsp", "127.0.0.1:8554", "origin RTSP address; publish your own stream here too (the publish key is random, so only the test card can)")
	fs.StringVar(&cfg.OriginMesh, "origin-mesh", "127.0.0.1:4433", "origin QUIC mesh UDP address")
	fs.StringVar(&cfg.TrackerHTTP, "tracker-http", "127.0.0.1:7070", "tracker HTTP address (embedded NATS on a random port)")
	fs.StringVar(&cfg.PeerHTTP, "peer-http", "127.0.0.1:8090", "peer 0's local HLS address; peer i listens on this port plus i")
	fs.IntVar(&cfg.Peers, "peers", 3, "number of peers")
	fs.IntVar(&cfg.SeedCopies, "seed-copies", peer.DefaultSeedCopies, "children the origin accepts per stripe (its mesh egress is about this many copies)")
	fs.DurationVar(&cfg.Segment, "segment", 2*time.Second, "target segment duration")
	logs := addLogFlags(fs, "info", "v", "debug")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: crowdsurf demo [flags]\n\n")
		fmt.Fprintf(w, "Runs, in one process: a tracker with embedded NATS, an origin, the built-in test card\n")
		fmt.Fprintf(w, "(a looping H.264+AAC clip) published into it over RTSP as stream %q, and --peers peers.\n", demo.Stream)
		fmt.Fprintf(w, "Prints the URLs to open in VLC, ffplay or mpv; runs until interrupted.\n\n")
		printFlags(fs)
	}
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see %s demo --help)", fs.Arg(0), selfName())
	}
	if cfg.Peers < 1 {
		// demo.Config reads 0 as "the default", which would start three peers after all.
		return fmt.Errorf("--peers %d: the demo runs at least one peer; for the origin alone run %s origin --testcard NAME",
			cfg.Peers, selfName())
	}
	var err error
	if cfg.Logger, err = logs.logger(os.Stderr); err != nil {
		return err
	}

	d, err := demo.New(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("crowdsurf demo: stream %q, %d peers\n\n", demo.Stream, len(d.Peers()))
	fmt.Printf("  origin HLS (the CDN path)  %s\n", d.OriginPlaylist())
	for i, p := range d.Peers() {
		fmt.Printf("  peer %-2d local HLS         %s\n", i, p.HLSURL())
	}
	fmt.Printf("\n  watch link                 %s\n", d.WatchLink())
	fmt.Printf("  swarm                      %s/v1/streams/%s\n", d.Tracker().URL(), demo.Stream)
	fmt.Printf("  origin stats               http://%s/stats\n", d.Origin().HTTPAddr())
	fmt.Printf("\nIn a browser:\n")
	for i, p := range d.Peers() {
		fmt.Printf("  peer %-2d web player         %s\n", i, strings.TrimSuffix(p.HLSURL(), "live/"+demo.Stream+"/index.m3u8"))
	}
	fmt.Printf("  origin web player          http://%s/watch/%s\n", d.Origin().HTTPAddr(), demo.Stream)
	fmt.Printf("  tracker dashboard          %s/\n", d.Tracker().URL())
	if len(d.Peers()) > 0 {
		fmt.Printf("\nPlay one with:  ffplay %s   (or vlc, mpv; the first segments arrive after a few seconds)\n", d.Peers()[0].HLSURL())
		fmt.Printf("Add a viewer:   %s peer --http 127.0.0.1:0 '%s'\n", selfName(), d.WatchLink())
	}
	fmt.Printf("Ctrl-C stops.\n\n")
	return d.Run(ctx)
}
