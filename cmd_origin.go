//go:build !viewer

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

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
	keyFile := fs.String("key", "origin.key", "signing key file (PEM PKCS#8 Ed25519); when missing, a new key is written there (with FILE.pub) once the origin's ports are open")
	publishKey := fs.String("publish-key", "", "password RTSP publishers must give (any user name), e.g. rtsp://u:SECRET@host:8554/NAME; empty accepts anyone")
	maxStreams := fs.Int("max-streams", origin.DefaultMaxStreams, "without --publish-key, the most streams the origin holds (live or ended and not yet removed); a publisher of one more is refused (RTSP 503); negative: no cap")
	streamGrace := fs.Duration("stream-grace", origin.DefaultStreamGrace, "how long an ended stream (its playlist has EXT-X-ENDLIST) stays before it is removed; a publisher back within it continues the stream")
	pulls := originPulls{}
	fs.Var(pulls, "pull", "pull a stream from a camera or RTSP server: NAME=rtsp://...; repeatable, reconnects with backoff")
	segment := fs.Duration("segment", origin.DefaultSegmentDuration, "target segment duration; segments are cut at the first keyframe after it")
	window := fs.Int("window", origin.DefaultWindow, "segments listed in the live playlist")
	chunkSize := fs.Int("chunk-size", origin.DefaultChunkSize, "a chunk closes at this many bytes of data (the default keeps a frame, data and header, within 8 KiB;\nfaster streams get more, see --chunk-duration) ...")
	chunkInterval := fs.Duration("chunk-interval", origin.DefaultChunkInterval, "... or when it is this old, whichever comes first")
	chunkDuration := fs.Duration("chunk-duration", origin.DefaultChunkDuration, "grow chunks with the stream's bit rate to about this much of it, in whole 8 KiB frames (16 KiB at 2 Mbit/s):\nevery chunk costs each viewer the same work whatever its size; 0 keeps every chunk at --chunk-size")
	partTarget := fs.Duration("part", origin.DefaultPartTarget, "LL-HLS part target: parts end at the frame that would make them longer (signed in the chunks); every node serves /live/NAME/ll.m3u8 with parts of this length; 0 turns parts off")
	tracker := fs.String("tracker", "", "tracker base URL (http://HOST:PORT): streams are registered there so peers find this origin, and it names the watch links")
	natsURL := fs.String("nats", "", "register streams straight into the tracker's NATS at this URL instead of over HTTP")
	registerToken := fs.String("register-token", "", "bearer token the tracker wants with registrations over HTTP (its --register-token); registrations are signed with --key either way")
	stripes := fs.Int("stripes", origin.DefaultStripes, "stripes each stream is split into (chunk index mod stripes); peers learn it from the tracker")
	advertise := fs.String("advertise", "", "host peers use to reach this origin's mesh and HTTP ports; default: the --http host, or 127.0.0.1 when that is a wildcard (set it when peers run on other machines)")
	publicHTTP := fs.String("public-http", "", "base URL peers use for the CDN fallback when a CDN or proxy sits in front of --http (default http://ADVERTISE:HTTPPORT)")
	testcardName := fs.String("testcard", "", "also publish the built-in test card (a looping H.264+AAC clip) into this origin as stream NAME")
	logs := addLogFlags(fs, "info", "", "")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: crowdsurf origin [flags]\n\n")
		fmt.Fprintf(w, "Accepts RTSP publishers (ffmpeg -f rtsp, GStreamer, OBS, encoders) at rtsp://HOST:PORT/NAME, or pulls\n")
		fmt.Fprintf(w, "cameras with --pull; takes H.264 or H.265 and/or AAC or Opus; cuts MPEG-TS segments at keyframes, signs them in chunks\n")
		fmt.Fprintf(w, "and serves HLS at http://HOST:PORT/live/NAME/index.m3u8 (MPEG-TS) and LL-HLS at .../ll.m3u8 (fMP4 parts,\n")
		fmt.Fprintf(w, "derived from the same signed chunks on every node). CROWDSURF_PULL takes a comma-separated list.\n\n")
		printFlags(fs)
	}
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see %s origin --help)", fs.Arg(0), selfName())
	}
	logger, err := logs.logger(os.Stderr)
	if err != nil {
		return err
	}
	if *testcardName != "" {
		if err := proto.ValidStreamName(*testcardName); err != nil {
			return fmt.Errorf("--testcard: %w", err)
		}
	}

	// A missing key is made in memory and written only once the ports are open: an origin that
	// cannot start must not leave behind a key nobody asked for (and a new key means new watch
	// links).
	key, err := origin.LoadKey(*keyFile)
	newKey := errors.Is(err, os.ErrNotExist)
	switch {
	case newKey:
		if _, key, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return fmt.Errorf("generate key: %w", err)
		}
	case err != nil:
		return fmt.Errorf("--key %s: %w (create one with %s keygen --out FILE)", *keyFile, err, selfName())
	}

	lns, err := originListen(*httpAddr, *rtspAddr, *meshAddr)
	if err != nil {
		return err
	}
	o, err := origin.New(origin.Config{
		RTSPAddr:        *rtspAddr,
		RTSPListener:    lns.rtsp,
		UDPRTPAddr:      *udpAddr,
		HTTPAddr:        *httpAddr,
		HTTPListener:    lns.http,
		MeshAddr:        *meshAddr,
		MeshConn:        lns.mesh,
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
		ChunkDuration:   offIfZero(*chunkDuration),
		PartTarget:      offIfZero(*partTarget),
		TrackerURL:      *tracker,
		NATSURL:         *natsURL,
		RegisterToken:   *registerToken,
		Stripes:         *stripes,
		Advertise:       *advertise,
		PublicHTTPURL:   *publicHTTP,
		Logger:          logger,
	})
	if err != nil {
		lns.close()
		if errors.Is(err, syscall.EADDRINUSE) {
			// The other ports are bound above; only RTP over UDP is left to the RTSP server.
			return fmt.Errorf("--udp %s: %w; pick another even port with --udp, or --udp - to turn RTP over UDP off", *udpAddr, err)
		}
		return err
	}
	if lns.mesh != nil {
		defer lns.mesh.Close() // the origin closes only the sockets it opened itself
	}
	if newKey {
		if err := origin.WriteKey(*keyFile, key); err != nil {
			return fmt.Errorf("--key %s: %w", *keyFile, err)
		}
		logger.Warn("created a new signing key: viewers need its public key (in the watch link)", "file", *keyFile)
	}
	// The public key beside the private one lets peers on the same host or volume read it
	// (crowdsurf peer --origin-key @FILE.pub), as docker-compose.yml does.
	pubText := proto.FormatPublicKey(key.Public().(ed25519.PublicKey)) + "\n"
	if err := os.WriteFile(*keyFile+".pub", []byte(pubText), 0o644); err != nil {
		logger.Warn("could not write the public key file", "file", *keyFile+".pub", "err", err)
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

// offIfZero turns a flag's 0 ("off") into the negative duration the origin's Config reads as
// off (its zero means the default).
func offIfZero(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

func originPort(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i:]
	}
	return addr
}

// originListeners are the sockets the origin command opens itself, so that a port in use is
// reported with the flag that chose it.
type originListeners struct {
	http, rtsp net.Listener
	mesh       net.PacketConn // nil with --mesh -
}

func (l originListeners) close() {
	for _, c := range []io.Closer{l.http, l.rtsp} {
		if c != nil {
			_ = c.Close()
		}
	}
	if l.mesh != nil {
		_ = l.mesh.Close()
	}
}

// originListen opens the HTTP and RTSP listeners and the mesh socket.
func originListen(httpAddr, rtspAddr, meshAddr string) (originListeners, error) {
	var l originListeners
	var err error
	if l.http, err = net.Listen("tcp", httpAddr); err != nil {
		return l, listenError("http", httpAddr, err)
	}
	if l.rtsp, err = net.Listen("tcp", rtspAddr); err != nil {
		l.close()
		return l, listenError("rtsp", rtspAddr, err)
	}
	if meshAddr != "-" {
		if l.mesh, err = net.ListenPacket("udp", meshAddr); err != nil {
			l.close()
			return l, listenError("mesh", meshAddr, fmt.Errorf("%w (or --mesh - for HTTP only)", err))
		}
	}
	return l, nil
}

// listenError names the flag (and its variable) that chose an address that cannot be opened.
func listenError(flagName, addr string, err error) error {
	hint := "check the address"
	if errors.Is(err, syscall.EADDRINUSE) {
		hint = "another program (another origin?) has that port"
	} else if errors.Is(err, syscall.EACCES) {
		hint = "ports below 1024 need privileges"
	}
	return fmt.Errorf("--%s %s: %w: %s; pick another with --%s or %s", flagName, addr, err, hint, flagName, envName(flagName))
}
