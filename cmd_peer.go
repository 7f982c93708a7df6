package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/crowdsurf/crowdsurf/internal/rate"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
)

func init() {
	register("peer", "watch a stream: join its mesh and serve it as HLS on localhost for any player", runPeer)
}

func runPeer(ctx context.Context, args []string) (err error) {
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	trackerURL := fs.String("tracker", "", "`URL` of the tracker, e.g. http://host:7070; not needed with a watch link")
	stream := fs.String("stream", "", "`NAME` of the stream; not needed with a watch link")
	originKey := fs.String("origin-key", "",
		"the origin's public `KEY` (as 'crowdsurf keygen' prints it), or @FILE to read it from a file such as the\n"+
			"origin.key.pub the origin writes beside its key; not needed with a watch link")
	httpAddr := fs.String("http", "127.0.0.1:8090", "`ADDR` of the local HLS endpoint the player opens")
	meshAddr := fs.String("mesh", ":0", "UDP `ADDR` of the mesh (QUIC) socket")
	maxUpload := fs.String("max-upload", "auto",
		"upload budget as a bit `RATE` (4Mbit, 500kbit, 2M); auto = three times the stream's bitrate")
	stripes := fs.Int("stripes", proto.DefaultStripes, "stripe count; must match the stream's")
	originHTTP := fs.String("origin-http", "",
		"base `URL` of the origin's HTTP endpoint for the CDN fallback; empty = learn it from the tracker")
	debugAddr := fs.String("debug-addr", "", debugFlagHelp)
	startWait := fs.Duration("start-neighbour-wait", 0, "how long the start (the segments before the live edge) is left to fellow viewers\nbefore the CDN sends what they did not: a start chunk a neighbour holds is asked of it; a start\nsegment nobody holds yet (a crowd arriving together) is shared: this peer fetches one slice of it\nfrom the CDN and the others from the viewers that fetched theirs. 0 = the CDN after 300 ms (the\nfastest start); e.g. 500ms saves the origin's bytes when viewers arrive together or join a formed\nswarm; it applies while the peer joins (its first 3 s), so more acts as 3s")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE` when the peer stops (go tool pprof FILE)")
	cores := fs.Int("cores", 1, coresFlagHelp)
	logs := addLogFlags(fs, "info", "v", "debug")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: crowdsurf peer [flags] [WATCHLINK]\n\n")
		fmt.Fprintf(out, "Joins a stream's mesh and serves it as plain HLS on localhost: open the printed URL\n")
		fmt.Fprintf(out, "in VLC, mpv, ffplay or a browser player. Give the watch link the broadcaster\n")
		fmt.Fprintf(out, "published (crowdsurf://TRACKER/STREAM?key=KEY), or --tracker, --stream and --origin-key.\n")
		fmt.Fprintf(out, "While nothing can play, the local playlist answers 503 with the reason (an unknown stream,\n")
		fmt.Fprintf(out, "a tracker that does not answer). A watch link whose key the origin's chunks fail stops the peer.\n\n")
		printFlags(fs)
	}
	// CROWDSURF_PEER_HTTP was --http's variable before every flag had CROWDSURF_<FLAG>.
	if err := parseFlags(fs, args, map[string]string{"http": "CROWDSURF_PEER_HTTP"}); err != nil {
		return err
	}
	coresGiven := false
	fs.Visit(func(f *flag.Flag) { coresGiven = coresGiven || f.Name == "cores" })
	if err := setCores(*cores, coresGiven, os.Getenv("GOMAXPROCS")); err != nil {
		return err
	}
	var key []byte
	switch fs.NArg() {
	case 0:
		if *trackerURL == "" || *stream == "" || *originKey == "" {
			fs.Usage()
			return errors.New("give a watch link, or --tracker, --stream and --origin-key")
		}
		k, err := readOriginKey(*originKey)
		if err != nil {
			return fmt.Errorf("--origin-key: %w", err)
		}
		key = k
	case 1:
		link, err := proto.ParseWatchLink(fs.Arg(0))
		if err != nil {
			return err
		}
		*trackerURL, *stream, key = link.Tracker, link.Stream, link.OriginKey
	default:
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args()[1:])
	}
	var upload int64
	if *maxUpload != "auto" && *maxUpload != "" {
		bps, err := rate.ParseBps(*maxUpload)
		if err != nil {
			return fmt.Errorf("--max-upload: %w", err)
		}
		upload = bps
	}

	logger, err := logs.logger(os.Stderr)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	if *debugAddr != "" {
		dln, err := listenDebug(*debugAddr)
		if err != nil {
			return err
		}
		dctx, stop := context.WithCancel(ctx)
		debugDone := make(chan error, 1)
		go func() { debugDone <- serveDebug(dctx, dln) }()
		defer func() {
			stop()
			err = errors.Join(err, <-debugDone)
		}()
		logger.Info("profiler listening", "addr", "http://"+dln.Addr().String()+"/debug/pprof/")
	}
	pc, err := net.ListenPacket("udp", *meshAddr)
	if err != nil {
		return fmt.Errorf("mesh socket %s: %w (pick another with --mesh, or :0 for any)", *meshAddr, err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("local HLS endpoint %s: %w (pick another with --http)", *httpAddr, err)
	}
	n, err := peer.New(peer.Config{
		Stream:       *stream,
		OriginKey:    key,
		PacketConn:   pc,
		HTTPListener: ln,
		TrackerURL:   *trackerURL,
		OriginHTTP:   *originHTTP,
		Stripes:      *stripes,
		MaxUploadBps: upload,
		Logger:       logger,

		StartNeighbourWait: *startWait,
	})
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(os.Stdout, "crowdsurf peer: watching %q; play %s\n", *stream, n.HLSURL())
	logger.Info("peer started", "mesh", n.Addr().String(), "hls", n.HLSURL(), "tracker", *trackerURL)
	return n.Run(ctx) // peer.ErrWrongKey says what to do; main prints it
}

// readOriginKey reads --origin-key: the key text itself, or "@FILE" for a file holding it (the
// origin writes one beside its private key, e.g. /keys/origin.key.pub in docker-compose.yml).
func readOriginKey(arg string) ([]byte, error) {
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read key file: %w", err)
		}
		arg = strings.TrimSpace(string(b))
	}
	return proto.ParsePublicKey(arg)
}
