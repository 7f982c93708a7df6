// Package peer is the viewer's node of the crowdsurf mesh: QUIC connections to neighbours, stripe
// subscriptions (push), HAVE/REQUEST repair (pull), the CDN fallback over HTTP, the live window of
// verified chunks and the local HLS endpoint a media player reads. The origin runs the same node in
// root mode as the top of every stripe tree.
package peer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// Source says where a chunk came from, for accounting (offload) and for the OnChunk hook.
type Source uint8

const (
	// SourcePeer is a chunk pushed or repaired by another viewer.
	SourcePeer Source = iota + 1
	// SourceOrigin is a chunk received over QUIC from the origin (the root node).
	SourceOrigin
	// SourceHTTP is a chunk fetched from the origin's HTTP endpoint (the CDN path).
	SourceHTTP
	// SourceLocal is a chunk handed in with Publish (root mode).
	SourceLocal
)

func (s Source) String() string {
	switch s {
	case SourcePeer:
		return "peer"
	case SourceOrigin:
		return "origin"
	case SourceHTTP:
		return "http"
	case SourceLocal:
		return "local"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// Announcer is the tracker as the node sees it; the default talks HTTP to Config.TrackerURL, tests
// may pass their own.
type Announcer interface {
	Announce(ctx context.Context, req proto.AnnounceRequest) (proto.AnnounceResponse, error)
}

// Config configures a Node. Zero values take the defaults documented on each field.
type Config struct {
	// Stream is the stream name (required).
	Stream string
	// OriginKey verifies every chunk (required, unless Root).
	OriginKey ed25519.PublicKey
	// VerifyCache, when set, is shared with other nodes of this process so that each chunk's
	// signature is checked once (the load test; see VerifyCache). Nil: every chunk is verified.
	VerifyCache *VerifyCache
	// PacketConn is the mesh UDP socket; one quic.Transport on it listens and dials (required).
	PacketConn net.PacketConn
	// Listener, for a root node instead of PacketConn, takes the node's connections from a Mux
	// that roots of other streams share (one mesh socket for a whole origin).
	Listener *MuxListener
	// HTTPListener serves the local HLS endpoint, /stats, /healthz and /metrics; nil = none.
	HTTPListener net.Listener

	// TrackerURL is the tracker's base URL; empty = no tracker (use Bootstrap).
	TrackerURL string
	// Announcer overrides the HTTP tracker client (tests).
	Announcer Announcer
	// Bootstrap lists static neighbour QUIC addresses (host:port), dialled and re-dialled until connected.
	Bootstrap []string
	// OriginHTTP is the base URL of the origin's HLS/chunk endpoint for the CDN fallback, e.g.
	// http://127.0.0.1:8080; empty = learned from the tracker.
	OriginHTTP string
	// OriginQUIC is the origin's mesh address; empty = learned from the tracker.
	OriginQUIC string
	// HTTPClient fetches fallback chunks and the origin playlist (default: 5 s timeout).
	HTTPClient *http.Client

	// Stripes is the stripe count (default 4).
	Stripes int
	// MaxUploadBps is the upload budget in bits/s; 0 = auto, three times the stream bitrate.
	MaxUploadBps int64
	// Root runs the node as the origin's root: depth 0 on every stripe, never subscribes nor falls
	// back, and accepts at most SeedCopies children per stripe.
	Root bool
	// Identity is the root's proof that it is the origin: the stream's signing key, whose public
	// half viewers hold from the watch link. Its TLS certificate is made with it (see meshTLS), so
	// viewers know the root from anyone claiming depth 0. Required when Root; unused otherwise.
	Identity ed25519.PrivateKey
	// Window, for a root, is the window of verified chunks its origin already keeps and serves
	// over HTTP: the root pushes from it instead of keeping every segment a second time, and what
	// it is handed with Publish is taken as already in it. Nil: the node keeps its own.
	Window *segwindow.Window
	// SeedCopies is the root's child limit per stripe (default 2).
	SeedCopies int
	// MaxNeighbours bounds the connections the node dials (default 8). It accepts up to twice as many.
	MaxNeighbours int
	// MaxRootNeighbours bounds a root's neighbours (default 4 x SeedCopies x Stripes + 32): its
	// seed children, candidates waiting for a slot and a few repairers. When full, a neighbour
	// that has been no seed child for evictGrace makes room for a new one.
	MaxRootNeighbours int
	// Limits bound what one source IP may hold (see Limits). A root on a Mux listener takes
	// the Mux's instead.
	Limits Limits
	// Observers are the tracker's reflexive-address observers (two UDP ports, see
	// tracker.Observer); the node asks them which address its mesh socket has behind its NAT
	// and what kind of NAT that is (Stats.ReflexiveAddr, Stats.NATKind), and announces both.
	// Empty = the ones the tracker's answer names, if any.
	Observers []net.Addr
	// ReflexiveInterval is how often the observers are asked again (default 15 s, half the
	// shortest common NAT mapping timeout: the keepalive of the path punch orders take).
	ReflexiveInterval time.Duration
	// PlaylistLength is the number of segments in the local playlist (default
	// DefaultPlaylistLength, 4).
	PlaylistLength int
	// Keep is the number of newest segments held in memory (default PlaylistLength + 2). The
	// newest seq is usually the segment still arriving, so this holds the playlist, the segment
	// that just left it (which a player may still fetch) and the one arriving; while a segment
	// is still completing after the next one began, the playlist keeps its full length. A
	// viewer pushes and repairs only the newest segments and late joiners fetch older ones from
	// the origin, so more would only cost memory: the window is most of a viewer's heap.
	Keep int
	// TargetDuration is the nominal segment duration until measured (default 2 s).
	TargetDuration time.Duration
	// FallbackDelay is how long a segment may stay incomplete after the swarm moved to the next one
	// before its missing chunks are fetched over HTTP (default 3/4 of the measured segment duration).
	FallbackDelay time.Duration
	// StartNeighbourWait is how long a joiner leaves its start (the segments before the live
	// edge) to its fellow viewers before the CDN sends what they did not deliver. Each start chunk
	// a viewer neighbour announced is asked of one holder, which has the wait to deliver it. A
	// start segment no viewer neighbour holds yet (a crowd arriving together) is shared: the
	// joiner fetches one slice of it from the CDN (one stripe's chunks, picked by its id) and
	// takes the other slices from the joiners that fetched them (startslice.go). A joiner without
	// viewer neighbours, or whose origin serves no slices, fetches it whole at once. So it bounds
	// what the swarm may cost the joiner's startup. Zero (the default) fetches the start from the
	// CDN 300 ms after the joiner learnt of it (startup first). It applies while the node joins
	// (until it holds its start segments, at most joinWindow, 3 s), so more acts as that. Every
	// start chunk a neighbour delivers is a copy the origin saves (docs/measurements.md, "Flash
	// crowds and the start").
	StartNeighbourWait time.Duration
	// RepairWait is how long after a neighbour's HAVE a missing chunk is requested (default
	// 500 ms: in the 50-peer simulation a push took 450 ms to the median node, and asking
	// sooner made a duplicate of every chunk a deep node was still being pushed).
	RepairWait time.Duration
	// ParentTimeout is how long a parent may stay silent on its stripe while the stripe's chunks
	// are known to exist before we re-subscribe elsewhere (default 1 s).
	ParentTimeout time.Duration

	// OnChunk, when set, is called from the node loop for every new verified chunk; it must not
	// block. pushed says the chunk came from our parent on its stripe (the push tree), not from a
	// repair, the CDN or a former parent.
	OnChunk func(id proto.ChunkID, from Source, pushed bool, at time.Time)
	// OnPunch, when set, is called after every punch this node dialled: whether it connected
	// and how long after the punch moment the handshake completed. It must not block.
	OnPunch func(ok bool, took time.Duration)

	Logger   *slog.Logger
	Registry *prometheus.Registry
}

// ErrCrossHostRedirect means the CDN path answered with a redirect to another host. The fallback
// never follows one: whoever controls the answer could aim every peer's requests at a third party.
var ErrCrossHostRedirect = errors.New("redirect to another host refused")

func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return fmt.Errorf("%w: more than 3 redirects", ErrCrossHostRedirect)
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		return fmt.Errorf("%w: %s to %s", ErrCrossHostRedirect, via[0].URL.Host, req.URL.Host)
	}
	return nil
}

// DefaultSeedCopies is how many children the root accepts per stripe unless told otherwise: the
// origin's mesh egress is about this many copies of the stream.
const DefaultSeedCopies = 2

// DefaultPlaylistLength is a viewer's local playlist: 4 segments, 8 s of 2 s segments. Players
// join three target durations behind the end (hls.js, Safari, VLC, ffmpeg and our player), so
// they need three; RFC 8216 section 6.2.2 lets no live playlist fall below three target
// durations; the fourth is slack for a segment shorter than the target. The origin lists more
// (segwindow.DefaultPlaylistLength): it serves the CDN and late joiners, and it is one node.
// Every listed segment is held in memory by every viewer, and at six it was most of a viewer's
// heap.
const DefaultPlaylistLength = 4

// DefaultKeep is the segments a viewer holds with the default playlist (Config.Keep).
const DefaultKeep = DefaultPlaylistLength + keepBeyondPlaylist

// keepBeyondPlaylist is the segment that just left the playlist and the one arriving.
const keepBeyondPlaylist = 2

// ErrConfig means the Config misses a required field or holds an absurd value.
var ErrConfig = errors.New("peer: bad config")

func (c Config) withDefaults() (Config, error) {
	if err := proto.ValidStreamName(c.Stream); err != nil {
		return c, fmt.Errorf("%w: stream: %w", ErrConfig, err)
	}
	if !c.Root && len(c.OriginKey) != ed25519.PublicKeySize {
		return c, fmt.Errorf("%w: origin key of %d bytes; pass the key from the watch link", ErrConfig, len(c.OriginKey))
	}
	switch {
	case c.Listener != nil && !c.Root:
		return c, fmt.Errorf("%w: a Mux listener is for root nodes (they never dial)", ErrConfig)
	case c.Listener != nil && c.PacketConn != nil:
		return c, fmt.Errorf("%w: give a PacketConn or a Listener, not both", ErrConfig)
	case c.Listener == nil && c.PacketConn == nil:
		return c, fmt.Errorf("%w: no PacketConn for the mesh", ErrConfig)
	}
	if c.Root && len(c.Identity) != ed25519.PrivateKeySize {
		return c, fmt.Errorf("%w: a root needs the stream's signing key as Identity, so viewers can tell it from impostors", ErrConfig)
	}
	if !c.Root {
		c.Identity = nil
		if c.Window != nil {
			return c, fmt.Errorf("%w: only a root shares its origin's window", ErrConfig)
		}
	}
	if c.StartNeighbourWait < 0 || c.StartNeighbourWait > time.Minute {
		return c, fmt.Errorf("%w: start neighbour wait %v must be 0 to 1m", ErrConfig, c.StartNeighbourWait)
	}
	if c.Stripes == 0 {
		c.Stripes = proto.DefaultStripes
	}
	if c.Stripes < 1 || c.Stripes > proto.MaxStripes {
		return c, fmt.Errorf("%w: stripes %d must be 1 to %d", ErrConfig, c.Stripes, proto.MaxStripes)
	}
	if c.MaxUploadBps < 0 {
		return c, fmt.Errorf("%w: negative upload budget", ErrConfig)
	}
	if c.SeedCopies <= 0 {
		c.SeedCopies = DefaultSeedCopies
	}
	if c.MaxNeighbours <= 0 {
		c.MaxNeighbours = 8
	}
	if c.MaxRootNeighbours <= 0 {
		c.MaxRootNeighbours = 4*c.SeedCopies*c.Stripes + 32
	}
	c.Limits = c.Limits.withDefaults()
	if c.ReflexiveInterval <= 0 {
		c.ReflexiveInterval = defaultReflexiveInterval
	}
	if c.PlaylistLength <= 0 {
		c.PlaylistLength = DefaultPlaylistLength
	}
	if c.Keep <= 0 {
		c.Keep = c.PlaylistLength + keepBeyondPlaylist
	}
	c.Keep = max(c.Keep, c.PlaylistLength)
	if c.TargetDuration <= 0 {
		c.TargetDuration = 2 * time.Second
	}
	if c.RepairWait <= 0 {
		c.RepairWait = 500 * time.Millisecond
	}
	if c.ParentTimeout <= 0 {
		c.ParentTimeout = time.Second
	}
	c.OriginHTTP = strings.TrimRight(c.OriginHTTP, "/")
	if c.OriginHTTP != "" {
		if u, err := url.Parse(c.OriginHTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return c, fmt.Errorf("%w: origin HTTP %q is not an http(s) URL", ErrConfig, c.OriginHTTP)
		}
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	client := *c.HTTPClient
	client.CheckRedirect = sameHostRedirects
	c.HTTPClient = &client
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	return c, nil
}
