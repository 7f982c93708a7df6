package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/crowdsurf/crowdsurf/internal/rate"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
)

func init() {
	register("peer", "watch a stream: join its mesh and serve it as HLS on localhost for any player", runPeer)
}

func runPeer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	trackerURL := fs.String("tracker", envOr("CROWDSURF_TRACKER", ""),
		"`URL` of the tracker, e.g. http://host:7070; not needed with a watch link (env CROWDSURF_TRACKER)")
	stream := fs.String("stream", envOr("CROWDSURF_STREAM", ""), "`NAME` of the stream; not needed with a watch link (env CROWDSURF_STREAM)")
	originKey := fs.String("origin-key", envOr("CROWDSURF_ORIGIN_KEY", ""),
		"the origin's public `KEY` (as 'crowdsurf keygen' prints it), or @FILE to read it from a file such as the\n"+
			"origin.key.pub the origin writes beside its key; not needed with a watch link (env CROWDSURF_ORIGIN_KEY)")
	httpAddr := fs.String("http", envOr("CROWDSURF_PEER_HTTP", "127.0.0.1:8090"),
		"`ADDR` of the local HLS endpoint the player opens (env CROWDSURF_PEER_HTTP)")
	meshAddr := fs.String("mesh", envOr("CROWDSURF_MESH", ":0"), "UDP `ADDR` of the mesh (QUIC) socket (env CROWDSURF_MESH)")
	maxUpload := fs.String("max-upload", envOr("CROWDSURF_MAX_UPLOAD", "auto"),
		"upload budget as a bit `RATE` (4Mbit, 500kbit, 2M); auto = three times the stream's bitrate (env CROWDSURF_MAX_UPLOAD)")
	defStripes, _ := strconv.Atoi(envOr("CROWDSURF_STRIPES", "4"))
	stripes := fs.Int("stripes", defStripes, "stripe count; must match the stream's (env CROWDSURF_STRIPES)")
	originHTTP := fs.String("origin-http", envOr("CROWDSURF_ORIGIN_HTTP", ""),
		"base `URL` of the origin's HTTP endpoint for the CDN fallback; empty = learn it from the tracker (env CROWDSURF_ORIGIN_HTTP)")
	verbose := fs.Bool("v", false, "log debug detail")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: crowdsurf peer [flags] [WATCHLINK]\n\n")
		fmt.Fprintf(out, "Joins a stream's mesh and serves it as plain HLS on localhost: open the printed URL\n")
		fmt.Fprintf(out, "in VLC, mpv, ffplay or a browser player. Give the watch link the broadcaster\n")
		fmt.Fprintf(out, "published (crowdsurf://TRACKER/STREAM?key=KEY), or --tracker, --stream and --origin-key.\n")
		fmt.Fprintf(out, "Flags win over environment variables.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
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

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	pc, err := net.ListenPacket("udp", *meshAddr)
	if err != nil {
		return fmt.Errorf("mesh socket %s: %w", *meshAddr, err)
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
	})
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(os.Stdout, "crowdsurf peer: watching %q; play %s\n", *stream, n.HLSURL())
	logger.Info("peer started", "mesh", n.Addr().String(), "hls", n.HLSURL(), "tracker", *trackerURL)
	return n.Run(ctx)
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
