package loadtest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// source is the broadcast under test: it produces signed chunks in real time, hands each one to
// its OnChunk hook (the mesh root, the emit-time book) and serves them over HTTP (the CDN path).
type source interface {
	Run(ctx context.Context) error
	PublicKey() ed25519.PublicKey
	// HTTPURL is the base URL of the CDN endpoint, e.g. http://127.0.0.1:1234.
	HTTPURL() string
	// HTTPBytes is what the CDN endpoint has sent so far (origin HTTP egress).
	HTTPBytes() int64
	// StreamBytes is the chunk data produced so far.
	StreamBytes() int64
}

// syntheticConfig configures a synthetic live stream.
type syntheticConfig struct {
	Stream        string
	BitrateBps    int64
	Segment       time.Duration
	FrameRate     int // video frames per second (default 25)
	ChunkSize     int // default origin.DefaultChunkSize
	ChunkInterval time.Duration
	// PartTarget is the LL-HLS part target (default origin.DefaultPartTarget): parts end
	// between frames like the origin's, so a load test carries FlagPartEnd chunks too.
	PartTarget     time.Duration
	PlaylistLength int
	Key            ed25519.PrivateKey
	// HTTPListener serves the CDN endpoint (required).
	HTTPListener net.Listener
	// OnChunk is called from the source's goroutine for every chunk right after it was signed
	// and put on the CDN; it must not block.
	OnChunk func(c *proto.Chunk, emitted time.Time)
}

func (c syntheticConfig) withDefaults() syntheticConfig {
	if c.FrameRate <= 0 {
		c.FrameRate = 25
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = origin.DefaultChunkSize
	}
	if c.ChunkInterval <= 0 {
		c.ChunkInterval = origin.DefaultChunkInterval
	}
	if c.PartTarget <= 0 {
		c.PartTarget = origin.DefaultPartTarget
	}
	if c.PlaylistLength <= 0 {
		c.PlaylistLength = segwindow.DefaultPlaylistLength
	}
	return c
}

// syntheticSource is a live stream made up on the spot: real MPEG-TS with one H.264 track whose
// access units are well-formed NAL units of filler (an IDR with SPS/PPS opens every segment),
// sized so the muxed stream runs at the configured bit rate. Players' MPEG-TS and timestamp
// checks pass on it; no decoder would show a picture.
type syntheticSource struct {
	cfg    syntheticConfig
	pub    ed25519.PublicKey
	window *segwindow.Window
	cdn    *cdnServer

	streamBytes atomic.Int64
	lagNs       atomic.Int64 // the most a frame was written after it was due
}

// maxLag is how far the source fell behind real time at worst (an overloaded machine).
func (s *syntheticSource) maxLag() time.Duration { return time.Duration(s.lagNs.Load()) }

// ready reports whether a segment is complete at the CDN.
func (s *syntheticSource) ready() bool {
	_, ok := s.window.NewestComplete()
	return ok
}

// errSourceConfig means a synthetic source was asked for something it cannot produce.
var errSourceConfig = errors.New("loadtest: bad source config")

func newSyntheticSource(cfg syntheticConfig) (*syntheticSource, error) {
	cfg = cfg.withDefaults()
	if cfg.BitrateBps < 10_000 {
		return nil, fmt.Errorf("%w: bit rate %d bit/s is below 10 kbit/s", errSourceConfig, cfg.BitrateBps)
	}
	if cfg.Segment < 100*time.Millisecond {
		return nil, fmt.Errorf("%w: segment duration %v is below 100ms", errSourceConfig, cfg.Segment)
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: no signing key", errSourceConfig)
	}
	if cfg.HTTPListener == nil {
		return nil, fmt.Errorf("%w: no HTTP listener for the CDN endpoint", errSourceConfig)
	}
	s := &syntheticSource{cfg: cfg, pub: cfg.Key.Public().(ed25519.PublicKey)}
	s.window = segwindow.New(segwindow.Config{
		Stream:         cfg.Stream,
		PlaylistLength: cfg.PlaylistLength,
		TargetDuration: cfg.Segment,
	})
	s.cdn = newCDNServer(cfg.HTTPListener, func(name string) (*segwindow.Window, bool) {
		return s.window, name == cfg.Stream
	})
	return s, nil
}

func (s *syntheticSource) PublicKey() ed25519.PublicKey { return s.pub }
func (s *syntheticSource) HTTPURL() string              { return s.cdn.URL() }
func (s *syntheticSource) HTTPBytes() int64             { return s.cdn.Bytes() }
func (s *syntheticSource) StreamBytes() int64           { return s.streamBytes.Load() }

// Run produces the stream in real time until ctx ends, and serves it.
func (s *syntheticSource) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cdnDone := make(chan error, 1)
	go func() { cdnDone <- s.cdn.Run(ctx) }()
	err := s.produce(ctx)
	cancel()
	if cerr := <-cdnDone; err == nil {
		err = cerr
	}
	return err
}

const (
	clockRate = 90000
	// tsOffset keeps DTS minus the PCR lead positive from the first frame on.
	tsOffset = 10 * clockRate
	// tsPayloadShare is the share of a 188-byte TS packet that carries PES bytes.
	tsPayloadShare = 184.0 / 188.0
)

// A real H.264 baseline SPS/PPS (from mediacommon's tests): muxers and probes accept them.
var (
	syntheticSPS = []byte{
		0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02,
		0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
		0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9,
		0x20,
	}
	syntheticPPS = []byte{0x68, 0xcb, 0x8c, 0xb2}
)

// fillerBytes never contain a zero byte, so no start code or emulation sequence can appear in a
// NAL unit cut from them.
func fillerBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x%255) + 1
	}
	return b
}

// produce writes frames against the wall clock. Frame k is due at start + k/FrameRate; when the
// machine falls behind, frames are written late but never skipped, so the bit rate holds.
func (s *syntheticSource) produce(ctx context.Context) error {
	cfg := s.cfg
	frameTicks := int64(clockRate / cfg.FrameRate)
	frameDur := time.Second / time.Duration(cfg.FrameRate)
	framesPerSeg := max(1, int((cfg.Segment+frameDur/2)/frameDur)) // whole frames, rounded
	segDur := time.Duration(framesPerSeg) * frameDur
	// As many whole frames as fit the part target, with the origin's 10 ms of slack.
	framesPerPart := max(1, int((cfg.PartTarget+10*time.Millisecond)/frameDur))
	bytesPerFrame := float64(cfg.BitrateBps) / 8 / float64(cfg.FrameRate)
	filler := fillerBytes(int(bytesPerFrame*2) + 4096)

	var (
		seq      uint64
		cur      *origin.Chunker
		w        *mpegts.Writer
		track    *mpegts.Track
		segStart time.Time
		partFrom int64   // the frame that began the current part
		produced float64 // TS bytes written so far, against the target
	)
	emit := func(c *proto.Chunk) {
		s.window.AddChunk(c)
		s.streamBytes.Add(int64(len(c.Data)))
		if cfg.OnChunk != nil {
			cfg.OnChunk(c, time.Now())
		}
	}
	counter := &countingWriter{}

	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for k := int64(0); ; k++ {
		due := start.Add(time.Duration(k) * frameDur)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		if lag := int64(now.Sub(due)); lag > s.lagNs.Load() {
			s.lagNs.Store(lag)
		}

		idr := k%int64(framesPerSeg) == 0
		if !idr && k-partFrom >= int64(framesPerPart) {
			cur.EndPart()
			partFrom = k
		}
		if idr {
			partFrom = k
			if cur != nil {
				cur.Finish(segDur, segStart)
				seq++
			}
			// A fresh writer per segment makes each segment self-contained: PAT/PMT come first.
			segStart = now.UTC()
			cur = origin.NewChunker(proto.ChunkID{Stream: cfg.Stream, Seq: seq}, 0, cfg.ChunkSize, cfg.ChunkInterval, cfg.Key, time.Now, emit)
			counter.w = cur
			track = &mpegts.Track{Codec: &tscodecs.H264{}}
			w = &mpegts.Writer{W: counter, Tracks: []*mpegts.Track{track}}
			if err := w.Initialize(); err != nil {
				return fmt.Errorf("loadtest: mpeg-ts writer: %w", err)
			}
		} else {
			cur.Tick(now)
		}

		// Size this frame so the total catches up with the target rate.
		target := bytesPerFrame * float64(k+1)
		size := int((target-produced)*tsPayloadShare) - 40
		size = min(max(size, 16), len(filler)-65)
		au := make([][]byte, 0, 3)
		var nalu []byte
		if idr {
			au = append(au, syntheticSPS, syntheticPPS)
			nalu = append([]byte{byte(h264.NALUTypeIDR) | 0x60}, filler[:size]...)
		} else {
			nalu = append([]byte{byte(h264.NALUTypeNonIDR) | 0x40}, filler[k%64:int(k%64)+size]...)
		}
		au = append(au, nalu)
		pts := tsOffset + k*frameTicks
		before := counter.n
		if err := w.WriteH264(track, pts, pts, au); err != nil {
			return fmt.Errorf("loadtest: mux frame %d: %w", k, err)
		}
		produced += float64(counter.n - before)
	}
}

// countingWriter counts what the MPEG-TS writer produces on its way to the chunker.
type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}
