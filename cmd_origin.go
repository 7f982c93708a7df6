package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"

	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/proto"
)

func init() {
	register("origin", "ingest RTSP, cut signed chunks, serve HLS and seed the mesh", runOrigin)
}

// originPulls is the repeatable --pull NAME=rtsp://... flag.
type originPulls map[string]string

func (p originPulls) String() string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n+"="+p[n])
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func (p originPulls) Set(v string) error {
	for item := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		name, url, ok := strings.Cut(item, "=")
		if !ok || !strings.HasPrefix(url, "rtsp://") && !strings.HasPrefix(url, "rtsps://") {
			return fmt.Errorf("want NAME=rtsp://HOST[:PORT]/PATH, got %q", item)
		}
		if err := proto.ValidStreamName(name); err != nil {
			return err
		}
		if _, dup := p[name]; dup {
			return fmt.Errorf("stream %q is pulled twice", name)
		}
		p[name] = url
	}
	return nil
}

func runOrigin(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("origin", flag.ContinueOnError)
	rtspAddr := fs.String("rtsp", origin.DefaultRTSPAddr, "TCP address publishers send RTSP to (rtsp://HOST:PORT/NAME)")
	udpAddr := fs.String("udp", origin.DefaultUDPRTPAddr, "UDP address for RTP from publishers that use UDP transport; RTCP uses the next port, so the port must be even; - disables UDP")
	httpAddr := fs.String("http", origin.DefaultHTTPAddr, "HTTP address: HLS at /live/NAME/index.m3u8, chunks, /v1/streams, /stats, /metrics")
	meshAddr := fs.String("mesh", origin.DefaultMeshAddr, "UDP address of the QUIC mesh roots that seed peers (one socket for every stream); - disables the mesh (HTTP only)")
	seedCopies := fs.Int("seed-copies", origin.DefaultSeedCopies, "copies of the stream the origin seeds into the mesh")
	keyFile := fs.String("key", "origin.key", "signing key file (PEM PKCS#8 Ed25519); created with a warning if missing")
	publishKey := fs.String("publish-key", "", "password RTSP publishers must give (any user name), e.g. rtsp://u:SECRET@host:8554/NAME; empty accepts anyone")
	maxStreams := fs.Int("max-streams", origin.DefaultMaxStreams, "without --publish-key, the most streams the origin holds (live or ended and not yet removed); a publisher of one more is refused (RTSP 503); negative: no cap")
	streamGrace := fs.Duration("stream-grace", origin.DefaultStreamGrace, "how long an ended stream (its playlist has EXT-X-ENDLIST) stays before it is removed; a publisher back within it continues the stream")
	pulls := originPulls{}
	fs.Var(pulls, "pull", "pull a stream from a camera or RTSP server: NAME=rtsp://...; repeatable, reconnects with backoff")
	segment := fs.Duration("segment", origin.DefaultSegmentDuration, "target segment duration; segments are cut at the first keyframe after it")
	window := fs.Int("window", origin.DefaultWindow, "segments listed in the live playlist")
	chunkSize := fs.Int("chunk-size", origin.DefaultChunkSize, "a chunk closes at this many bytes ...")
	chunkInterval := fs.Duration("chunk-interval", origin.DefaultChunkInterval, "... or when it is this old, whichever comes first")
	tracker := fs.String("tracker", "", "tracker base URL (http://HOST:PORT): streams are registered there so peers find this origin, and it names the watch links")
	natsURL := fs.String("nats", "", "register streams straight into the tracker's NATS at this URL instead of over HTTP")
	registerToken := fs.String("register-token", "", "bearer token the tracker wants with registrations over HTTP (its --register-token); registrations are signed with --key either way")
	stripes := fs.Int("stripes", origin.DefaultStripes, "stripes each stream is split into (chunk index mod stripes); peers learn it from the tracker")
	advertise := fs.String("advertise", "", "host peers use to reach this origin's mesh and HTTP ports; default: the --http host, or 127.0.0.1 when that is a wildcard (set it when peers run on other machines)")
	publicHTTP := fs.String("public-http", "", "base URL peers use for the CDN fallback when a CDN or proxy sits in front of --http (default http://ADVERTISE:HTTPPORT)")
	testcardName := fs.String("testcard", "", "also publish the built-in test card (a looping H.264+AAC clip) into this origin as stream NAME")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: crowdsurf origin [flags]\n\n")
		fmt.Fprintf(w, "Accepts RTSP publishers (ffmpeg -f rtsp, GStreamer, OBS, encoders) at rtsp://HOST:PORT/NAME, or pulls\n")
		fmt.Fprintf(w, "cameras with --pull; takes H.264 and/or AAC; cuts MPEG-TS segments at keyframes, signs them in chunks\n")
		fmt.Fprintf(w, "and serves HLS at http://HOST:PORT/live/NAME/index.m3u8.\n\n")
		fmt.Fprintf(w, "Every flag can also be set with an environment variable CROWDSURF_<FLAG> (upper case, - as _),\n")
		fmt.Fprintf(w, "e.g. CROWDSURF_PUBLISH_KEY; CROWDSURF_PULL takes a comma-separated list. Flags win.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see crowdsurf origin --help)", fs.Arg(0))
	}
	if err := originEnvFallback(fs); err != nil {
		return err
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	key, created, err := origin.LoadOrCreateKey(*keyFile)
	if err != nil {
		return err
	}
	if created {
		logger.Warn("created a new signing key: viewers need its public key (in the watch link)", "file", *keyFile)
	}
	// The public key beside the private one lets peers on the same host or volume read it
	// (crowdsurf peer --origin-key @FILE.pub), as docker-compose.yml does.
	pubText := proto.FormatPublicKey(key.Public().(ed25519.PublicKey)) + "\n"
	if err := os.WriteFile(*keyFile+".pub", []byte(pubText), 0o644); err != nil {
		logger.Warn("could not write the public key file", "file", *keyFile+".pub", "err", err)
	}
	if *testcardName != "" {
		if err := proto.ValidStreamName(*testcardName); err != nil {
			return fmt.Errorf("--testcard: %w", err)
		}
	}

	o, err := origin.New(origin.Config{
		RTSPAddr:        *rtspAddr,
		UDPRTPAddr:      *udpAddr,
		HTTPAddr:        *httpAddr,
		MeshAddr:        *meshAddr,
		SeedCopies:      *seedCopies,
		Key:             key,
		PublishKey:      *publishKey,
		MaxStreams:      *maxStreams,
		StreamGrace:     *streamGrace,
		Pulls:           pulls,
		SegmentDuration: *segment,
		Window:          *window,
		ChunkSize:       *chunkSize,
		ChunkInterval:   *chunkInterval,
		TrackerURL:      *tracker,
		NATSURL:         *natsURL,
		RegisterToken:   *registerToken,
		Stripes:         *stripes,
		Advertise:       *advertise,
		PublicHTTPURL:   *publicHTTP,
		Logger:          logger,
	})
	if err != nil {
		return err
	}
	pub := proto.FormatPublicKey(o.PublicKey())
	fmt.Fprintf(os.Stderr, "origin public key: %s\n", pub)
	fmt.Fprintf(os.Stderr, "publish to rtsp://HOST%s/NAME, watch http://HOST%s/live/NAME/index.m3u8\n", originPort(o.RTSPAddr().String()), originPort(o.HTTPAddr().String()))
	if *tracker != "" {
		fmt.Fprintf(os.Stderr, "watch link: %s\n", proto.WatchLink{Tracker: *tracker, Stream: "NAME", OriginKey: o.PublicKey()}.String())
	}
	if *testcardName != "" {
		_, port, _ := net.SplitHostPort(o.RTSPAddr().String())
		pubr, err := testcard.New(testcard.Config{
			URL:    "rtsp://" + net.JoinHostPort("127.0.0.1", port) + "/" + *testcardName,
			User:   "testcard",
			Pass:   *publishKey,
			Logger: logger,
		})
		if err != nil {
			return fmt.Errorf("--testcard: %w", err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = pubr.Run(ctx) }()
		defer func() { <-done }() // Run returns once ctx ends
	}
	err = o.Run(ctx)
	if err == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func originPort(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i:]
	}
	return addr
}

// originEnvFallback sets every flag not given on the command line from CROWDSURF_<NAME>.
func originEnvFallback(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "CROWDSURF_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	return err
}
