// Package origin is crowdsurf's broadcaster side: it takes RTSP in (a publisher pushing to it, or
// a camera it pulls from), cuts the media into self-contained MPEG-TS segments at keyframes,
// splits each segment into signed chunks while it is being written, and serves the live window
// as plain HLS and per-chunk URLs over HTTP. The mesh root (wired in by the caller) takes the
// chunks through Subscribe.
package origin

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// Defaults of Config.
const (
	DefaultRTSPAddr        = ":8554"
	DefaultUDPRTPAddr      = ":8000"
	DefaultHTTPAddr        = ":8080"
	DefaultMeshAddr        = ":4433"
	DefaultSeedCopies      = peer.DefaultSeedCopies
	DefaultStripes         = proto.DefaultStripes
	DefaultSegmentDuration = 2 * time.Second
	DefaultWindow          = segwindow.DefaultPlaylistLength
	// DefaultChunkSize is 8 KiB of frame (it was 16 KiB at first), the chunks of streams of
	// up to about 1.5 Mbit/s; faster streams get larger ones (DefaultChunkDuration). Every tree
	// hop stores and forwards a whole chunk, so per-hop delay grows with its size: in the
	// 100-peer simulation at 1 Mbit/s (3 Mbit/s uplinks, trees 6-7 deep) 8 KiB chunks cut the
	// delivery p99 from ~0.9 s to ~0.5 s at the same CPU.
	// It is 8 KiB of frame, not of data: the header (at most proto.MaxChunkHeader, 207 bytes)
	// is inside it. Every node holds each chunk as one buffer of its frame, and Go's allocator
	// rounds any size from 8,193 to 9,472 bytes up to 9,472, so 8 KiB of data and a header took
	// 9,472 bytes in every window (14 % of it waste); 7,985 bytes of data cost 2.6 % more chunks.
	DefaultChunkSize = 8<<10 - proto.MaxChunkHeader
	// DefaultChunkDuration sizes chunks to about 64 ms of the stream (ChunkSizeFor): 8 KiB at
	// 1 Mbit/s, 16 KiB at 2, 32 KiB at 4, so that a viewer's per-chunk work does not grow with
	// the bit rate.
	DefaultChunkDuration = 64 * time.Millisecond
	DefaultChunkInterval = 200 * time.Millisecond
	// DefaultPartTarget is the LL-HLS part target: parts of about 200 ms let a low-latency player
	// (hls.js, Safari) play about a second behind the live edge (3 parts of hold-back plus
	// delivery), while a part still holds several chunks' worth of frames at typical bit rates.
	DefaultPartTarget = 200 * time.Millisecond
	// minPartTarget refuses part targets shorter than a frame at any common rate: every access
	// unit would then be a part, and a chunk signed for each.
	minPartTarget = 20 * time.Millisecond
	// DefaultStreamGrace is how long an ended stream stays before it is removed: long enough for
	// a broadcaster's reconnect (OBS retries within seconds) to continue it seamlessly.
	DefaultStreamGrace = time.Minute
	// DefaultMaxStreams caps the streams of an origin without a publish key.
	DefaultMaxStreams = 16
)

// Sentinel errors.
var (
	// ErrNoKey means Config.Key is missing; the origin cannot sign chunks without it.
	ErrNoKey = errors.New("origin: no signing key (run `crowdsurf keygen --out FILE` and pass --key FILE)")
	// ErrStreamBusy is the answer to a second publisher of a stream that is being published.
	ErrStreamBusy = errors.New("stream is already being published")
	// ErrUnsupportedCodec is the answer to a publisher whose media are not H.264 or H.265 and/or
	// AAC or Opus.
	ErrUnsupportedCodec = errors.New("unsupported codec")
	// ErrTooManyStreams is the answer to a publisher of a new stream when an origin without a
	// publish key already holds MaxStreams streams (live ones and ended ones not yet removed).
	ErrTooManyStreams = errors.New("too many streams on this origin (without a publish key the number is capped)")
)

// Config configures an Origin. Zero fields take the defaults above.
type Config struct {
	// RTSPAddr is where publishers connect (TCP). RTSPListener, when set, is used instead. "-"
	// runs no RTSP server: streams come only from in-process feeds (Origin.Feed).
	RTSPAddr     string
	RTSPListener net.Listener
	// UDPRTPAddr is the UDP address for RTP from publishers that use UDP transport; RTCP uses
	// the next port, and the RTP port must be even. "-" disables UDP transport.
	// UDPRTPConn/UDPRTCPConn, when set, are used instead (tests bind a free pair of ports).
	UDPRTPAddr  string
	UDPRTPConn  *net.UDPConn
	UDPRTCPConn *net.UDPConn

	// HTTPAddr serves HLS, chunks and the API. HTTPListener, when set, is used instead.
	HTTPAddr     string
	HTTPListener net.Listener

	// MeshAddr is the UDP address of the QUIC mesh root that seeds peers ("-" = no mesh: the
	// origin serves HTTP only). MeshConn, when set, is used instead (tests, simulated networks).
	MeshAddr string
	MeshConn net.PacketConn
	// SeedCopies is how many children the root accepts per stripe: the origin's mesh egress is
	// about this many copies of each stream.
	SeedCopies int
	// Stripes is the number of stripes a stream is split into (chunk index mod Stripes).
	Stripes int

	// TrackerURL (HTTP) or NATSURL (straight into the tracker's NATS) is where streams are
	// registered so peers find the origin; with neither, peers need the origin's addresses given.
	NATSURL string
	// Advertise is the host peers use to reach this origin (its mesh and HTTP ports); empty = the
	// host the HTTP listener is bound to, or 127.0.0.1 when that is a wildcard address.
	Advertise string
	// PublicHTTPURL overrides the HTTP base URL peers use for the CDN fallback (e.g. a CDN in
	// front of the origin).
	PublicHTTPURL string

	// Key signs every chunk. Required.
	Key ed25519.PrivateKey
	// PublishKey, when set, is the password RTSP publishers must give (any user name).
	PublishKey string
	// MaxStreams caps the streams an origin without a PublishKey holds (anyone who reaches its
	// RTSP port can publish): a publisher of one more new stream is refused. Streams that ended
	// count until they are removed; a publisher coming back to its stream is always let in, and
	// pulled streams are not refused. Zero means DefaultMaxStreams, negative no cap. With a
	// PublishKey there is no cap.
	MaxStreams int
	// StreamGrace is how long a stream whose publisher left stays (its playlist ended, its
	// segments served) before it is removed with its window and mesh root; a publisher coming
	// back within it continues the stream. Default DefaultStreamGrace. A stream that never made
	// a segment is removed at once.
	StreamGrace time.Duration
	// Pulls maps stream names to rtsp:// URLs the origin pulls from, reconnecting with backoff.
	Pulls map[string]string
	// PullBackoffMin/Max bound the wait between pull attempts.
	PullBackoffMin time.Duration
	PullBackoffMax time.Duration

	SegmentDuration time.Duration // target segment duration
	Window          int           // segments listed in the playlist
	ChunkSize       int           // a chunk closes at this many bytes ...
	ChunkInterval   time.Duration // ... or when its first byte is this old
	// ChunkDuration grows chunks with the stream's bit rate: each segment's chunks close at
	// ChunkSizeFor(the bit rate of the segments before it, ChunkDuration, ChunkSize) bytes.
	// Zero means DefaultChunkDuration, negative every chunk at ChunkSize.
	ChunkDuration time.Duration
	// PartTarget is the LL-HLS part target duration: the segmenter ends a part at the access
	// unit (audio-only: the AAC frame) that would make it longer, and the chunk that ends a part
	// carries proto.FlagPartEnd. Zero means DefaultPartTarget, negative no parts (the LL-HLS
	// playlist then has nothing to list).
	PartTarget time.Duration

	// FirstSeq is the sequence number of a stream's first segment. Zero derives it from the
	// clock (tenths of a second since the Unix epoch) when the stream first appears, so an origin
	// restarted with the same key never reuses a (stream, seq) that peers and caches already hold
	// with other bytes: segments are at least a keyframe interval long, far above 0.1 s.
	FirstSeq uint64

	// TrackerURL is the tracker's base URL, used to print watch links; empty omits them.
	TrackerURL string
	// RegisterToken is sent as a bearer token with every registration over HTTP, for a tracker
	// run with --register-token.
	RegisterToken string
	// TrackerHTTPClient carries the registrations over HTTP; nil = http.DefaultClient. A
	// simulated network passes one that dials its own listeners.
	TrackerHTTPClient *http.Client

	// OnStream, when set, is called whenever a stream starts or stops being published (the
	// mesh root and the tracker registration follow streams this way). It must not block.
	OnStream func(StreamInfo)
	// OnStreamRemoved, when set, is called with the name of a stream that was removed after its
	// grace (for instance to deregister it at once instead of letting its registration expire).
	// It must not block.
	OnStreamRemoved func(name string)

	Logger   *slog.Logger
	Registry *prometheus.Registry

	// now is the clock, replaceable in tests.
	now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.RTSPAddr == "" {
		c.RTSPAddr = DefaultRTSPAddr
	}
	if c.UDPRTPAddr == "" {
		c.UDPRTPAddr = DefaultUDPRTPAddr
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.MeshAddr == "" {
		c.MeshAddr = DefaultMeshAddr
	}
	if c.Stripes == 0 {
		c.Stripes = DefaultStripes
	}
	if c.SeedCopies == 0 {
		c.SeedCopies = DefaultSeedCopies
	}
	if c.SegmentDuration <= 0 {
		c.SegmentDuration = DefaultSegmentDuration
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.ChunkInterval <= 0 {
		c.ChunkInterval = DefaultChunkInterval
	}
	if c.ChunkDuration == 0 {
		c.ChunkDuration = DefaultChunkDuration
	}
	if c.PartTarget == 0 {
		c.PartTarget = DefaultPartTarget
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.StreamGrace <= 0 {
		c.StreamGrace = DefaultStreamGrace
	}
	if c.PullBackoffMin <= 0 {
		c.PullBackoffMin = 500 * time.Millisecond
	}
	if c.PullBackoffMax <= 0 {
		c.PullBackoffMax = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if len(c.Key) != ed25519.PrivateKeySize {
		return ErrNoKey
	}
	if c.Stripes < 1 || c.Stripes > proto.MaxStripes {
		return fmt.Errorf("origin: stripes %d must be 1 to %d", c.Stripes, proto.MaxStripes)
	}
	if c.SeedCopies < 0 {
		return fmt.Errorf("origin: seed copies %d must not be negative", c.SeedCopies)
	}
	if c.ChunkSize > proto.MaxChunkData {
		return fmt.Errorf("origin: chunk size %d exceeds the frame limit %d", c.ChunkSize, proto.MaxChunkData)
	}
	if c.PartTarget > 0 && c.PartTarget < minPartTarget {
		return fmt.Errorf("origin: part target %v is below %v (--part 0 turns parts off)", c.PartTarget, minPartTarget)
	}
	for name, url := range c.Pulls {
		if err := proto.ValidStreamName(name); err != nil {
			return fmt.Errorf("origin: pull %s=%s: %w", name, url, err)
		}
	}
	return nil
}
