package origin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestChunkSizeForFollowsTheBitRateInWholeFrames(t *testing.T) {
	const mbit = 1e6 / 8 // bytes per second
	for _, c := range []struct {
		name  string
		rate  float64
		d     time.Duration
		floor int
		want  int // data bytes
	}{
		{"no rate measured yet", 0, DefaultChunkDuration, DefaultChunkSize, DefaultChunkSize},
		{"sizing off", 8 * mbit, -1, DefaultChunkSize, DefaultChunkSize},
		{"a slow stream keeps the floor", 0.3 * mbit, DefaultChunkDuration, DefaultChunkSize, DefaultChunkSize},
		{"1 Mbit/s: one 8 KiB frame", 1 * mbit, DefaultChunkDuration, DefaultChunkSize, 8<<10 - proto.MaxChunkHeader},
		{"1.4 Mbit/s still rounds to one", 1.4 * mbit, DefaultChunkDuration, DefaultChunkSize, 8<<10 - proto.MaxChunkHeader},
		{"2 Mbit/s: 16 KiB", 2 * mbit, DefaultChunkDuration, DefaultChunkSize, 16<<10 - proto.MaxChunkHeader},
		{"4 Mbit/s: 32 KiB", 4 * mbit, DefaultChunkDuration, DefaultChunkSize, 32<<10 - proto.MaxChunkHeader},
		{"100 Mbit/s: the frame limit", 100 * mbit, DefaultChunkDuration, DefaultChunkSize, 64<<10 - proto.MaxChunkHeader},
		{"an operator's larger floor stands", 2 * mbit, DefaultChunkDuration, 20000, 20000},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ChunkSizeFor(c.rate, c.d, c.floor)
			require.Equal(t, c.want, got)
			require.LessOrEqual(t, got, proto.MaxChunkData)
		})
	}
}

// A 2 Mbit/s stream starts with the configured chunk size (nothing measured yet), its later
// segments are cut into 16 KiB frames, and when it drops to 0.5 Mbit/s its chunks shrink back.
func TestSegmenterGrowsChunksWithTheBitRate(t *testing.T) {
	h := newHarness(t, time.Second, DefaultChunkSize)
	h.seg.cfg.ChunkDuration = DefaultChunkDuration
	require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))
	// 25 fps, a keyframe every second; 2 Mbit/s is 10,000 bytes a frame, 0.5 Mbit/s 2,500.
	frame := 0
	write := func(seconds, bytesPerFrame int) {
		for range seconds * 25 {
			require.NoError(t, h.seg.writeH264(int64(frame*frame25), videoAU(frame%25 == 0, bytesPerFrame)))
			h.clock.advance(40 * time.Millisecond)
			frame++
		}
	}
	write(6, 10_000)
	write(12, 2_500)
	h.seg.endSession()

	largest := func(seq uint64) int {
		_, chunks := h.segmentBytes(seq)
		n := 0
		for _, c := range chunks {
			n = max(n, len(c.Data))
		}
		return n
	}
	require.Equal(t, DefaultChunkSize, largest(0), "nothing measured before the first segment")
	require.Equal(t, 16<<10-proto.MaxChunkHeader, largest(3), "2 Mbit/s measured: 16 KiB frames")
	require.Equal(t, DefaultChunkSize, largest(16), "back at 0.5 Mbit/s the chunks shrink again")

	h = newHarness(t, time.Second, DefaultChunkSize) // ChunkDuration 0: sizing off
	require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))
	frame = 0
	write(6, 10_000)
	h.seg.endSession()
	require.Equal(t, DefaultChunkSize, largest(4), "without a chunk duration every chunk is ChunkSize")
}
