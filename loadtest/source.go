package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/crowdsurf/crowdsurf/internal/pace"
	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/origin"
)

// source is the live media of a load test: it writes access units into the origin's feed in
// real time, and the real origin segments, signs, serves and seeds them.
type source interface {
	tracks() origin.FeedTracks
	// run writes until ctx ends (then it returns nil) or the sink fails.
	run(ctx context.Context, sink testcard.Sink) error
}

// syntheticConfig configures a synthetic live stream.
type syntheticConfig struct {
	BitrateBps int64
	Segment    time.Duration
	FrameRate  int // video frames per second (default 25)
	// Produced is the MPEG-TS bytes the origin has muxed from this source so far; the source
	// sizes its frames so that it grows at BitrateBps. Required.
	Produced func() int64
}

func (c syntheticConfig) withDefaults() syntheticConfig {
	if c.FrameRate <= 0 {
		c.FrameRate = 25
	}
	return c
}

// syntheticSource is a live stream made up on the spot: one H.264 track whose access units are
// well-formed NAL units of filler (an IDR with SPS/PPS opens every segment), sized so the muxed
// stream runs at the configured bit rate. The origin muxes it into real MPEG-TS; players'
// MPEG-TS and timestamp checks pass on it; no decoder would show a picture.
type syntheticSource struct {
	cfg   syntheticConfig
	lagNs atomic.Int64 // the most a frame was written after it was due
}

// maxLag is how far the source fell behind real time at worst (an overloaded machine).
func (s *syntheticSource) maxLag() time.Duration { return time.Duration(s.lagNs.Load()) }

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
	if cfg.Produced == nil {
		return nil, fmt.Errorf("%w: no produced-bytes counter to pace the bit rate by", errSourceConfig)
	}
	return &syntheticSource{cfg: cfg}, nil
}

func (s *syntheticSource) tracks() origin.FeedTracks {
	return origin.FeedTracks{H264: true, SPS: syntheticSPS, PPS: syntheticPPS}
}

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

// run writes frames against the wall clock. Frame k is due at start + k/FrameRate; when the
// machine falls behind, frames are written late but never skipped, so the bit rate holds.
func (s *syntheticSource) run(ctx context.Context, sink testcard.Sink) error {
	cfg := s.cfg
	frameDur := time.Second / time.Duration(cfg.FrameRate)
	framesPerSeg := max(1, int((cfg.Segment+frameDur/2)/frameDur)) // whole frames, rounded
	bytesPerFrame := float64(cfg.BitrateBps) / 8 / float64(cfg.FrameRate)
	filler := fillerBytes(int(bytesPerFrame*2) + 4096)

	// muxRatio is MPEG-TS bytes per NAL byte written, learnt from what the origin produced (its
	// counter trails by the chunk being filled, which matters less as the run goes on).
	muxRatio := 188.0 / 184.0
	var written float64 // NAL bytes written so far

	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for k := int64(0); ; k++ {
		due := start.Add(time.Duration(k) * frameDur)
		if !pace.Until(ctx, timer, due) {
			return nil
		}
		if lag := int64(time.Since(due)); lag > s.lagNs.Load() {
			s.lagNs.Store(lag)
		}
		if p := cfg.Produced(); p > 0 && written > 0 {
			muxRatio = max(float64(p)/written, 1)
		}

		// Size this frame so the total catches up with the target rate.
		target := bytesPerFrame * float64(k+1) / muxRatio
		size := int(target - written)
		size = min(max(size, 16), len(filler)-65)
		au := make([][]byte, 0, 3)
		var nalu []byte
		if k%int64(framesPerSeg) == 0 {
			au = append(au, syntheticSPS, syntheticPPS)
			nalu = append([]byte{byte(h264.NALUTypeIDR) | 0x60}, filler[:size]...)
			written += float64(len(syntheticSPS) + len(syntheticPPS))
		} else {
			nalu = append([]byte{byte(h264.NALUTypeNonIDR) | 0x40}, filler[k%64:int(k%64)+size]...)
		}
		au = append(au, nalu)
		written += float64(len(nalu))
		if err := sink.WriteH264(time.Duration(k)*frameDur, au); err != nil {
			return fmt.Errorf("loadtest: frame %d: %w", k, err)
		}
	}
}

// testcardSource is the built-in test card (H.264 and AAC), looping in real time.
type testcardSource struct{ clip *testcard.Clip }

func newTestcardSource() (*testcardSource, error) {
	clip, err := testcard.Load()
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	return &testcardSource{clip: clip}, nil
}

func (s *testcardSource) tracks() origin.FeedTracks {
	return origin.FeedTracks{H264: true, SPS: s.clip.SPS, PPS: s.clip.PPS, AAC: s.clip.AudioConfig}
}

func (s *testcardSource) run(ctx context.Context, sink testcard.Sink) error {
	return testcard.Play(ctx, s.clip, sink, 0)
}
