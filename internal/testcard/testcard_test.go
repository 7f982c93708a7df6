package testcard

import (
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/stretchr/testify/require"
)

func loadClip(t testing.TB) *Clip {
	t.Helper()
	c, err := Load()
	require.NoError(t, err)
	return c
}

func TestEmbeddedClipMatchesGenScript(t *testing.T) {
	c := loadClip(t)

	require.Less(t, len(c.TS), 2<<20, "committed clip must stay under 2 MB")
	require.Equal(t, 16*time.Second, c.Duration)
	require.Equal(t, int64(ClockRate/25), c.FrameTicks)
	require.InDelta(t, 25.0, c.FrameRate(), 1e-9)
	require.Len(t, c.Video, 400)
	require.Equal(t, 640, c.Width)
	require.Equal(t, 360, c.Height)
	require.Equal(t, int64(len(c.TS))*8/16, c.Bitrate)
	require.Equal(t, mpeg4audio.ObjectTypeAACLC, c.AudioConfig.Type)
	require.Equal(t, 48000, c.AudioConfig.SampleRate)
	require.Equal(t, "AAC-LC 48000 Hz 1 ch", c.AudioCodec)
	require.Contains(t, c.VideoCodec, "H.264")
}

func TestEmbeddedClipHasOneIDRPerSecondWithParameterSets(t *testing.T) {
	c := loadClip(t)

	for i, v := range c.Video {
		require.Equal(t, i%25 == 0, v.IDR, "access unit %d", i)
		require.Equal(t, v.DTS, v.PTS, "no B-frames expected, access unit %d", i)
		require.Equal(t, int64(i)*c.FrameTicks, v.DTS, "access unit %d", i)
		if v.IDR {
			require.GreaterOrEqual(t, len(v.NALUs), 3)
			require.Equal(t, h264.NALUTypeSPS, h264.NALUType(v.NALUs[0][0]&0x1f))
			require.Equal(t, h264.NALUTypePPS, h264.NALUType(v.NALUs[1][0]&0x1f))
		}
	}
}

// The audio must fill the loop exactly: starting at 0 and ending at the loop
// length, one AAC frame after another, or every loop boundary has a gap or an
// overlap.
func TestEmbeddedClipAudioFillsTheLoopExactly(t *testing.T) {
	c := loadClip(t)
	frame := c.AudioFrameTicks()
	require.Equal(t, int64(1920), frame)

	require.Len(t, c.Audio, 750)
	for i, a := range c.Audio {
		require.Equal(t, int64(i)*frame, a.PTS, "audio access unit %d", i)
		require.NotEmpty(t, a.AU)
	}
	require.Equal(t, c.DurationTicks, c.Audio[len(c.Audio)-1].PTS+frame)
}

func TestWithParameterSetsAddsMissingSPSAndPPS(t *testing.T) {
	sps := []byte{0x67, 1}
	pps := []byte{0x68, 2}
	idr := []byte{0x65, 3}
	sei := []byte{0x06, 4}

	require.Equal(t, [][]byte{sps, pps, sei, idr}, withParameterSets([][]byte{sei, idr}, sps, pps))
	// A stale PPS alone is replaced so the pair always matches.
	require.Equal(t, [][]byte{sps, pps, idr}, withParameterSets([][]byte{{0x68, 9}, idr}, sps, pps))
	already := [][]byte{sps, pps, idr}
	require.Equal(t, already, withParameterSets(already, sps, pps))
}

func TestCutLoopsAfterWholeFrames(t *testing.T) {
	c := loadClip(t)

	short := c.Cut(300 * time.Millisecond) // rounds up to 8 frames = 0.32 s
	require.Equal(t, 320*time.Millisecond, short.Duration)
	require.Equal(t, 8*c.FrameTicks, short.DurationTicks)
	require.Len(t, short.Video, 8)
	require.True(t, short.Video[0].IDR)
	require.Len(t, short.Audio, 15, "0.32 s holds exactly 15 AAC frames")
	for _, a := range short.Audio {
		require.Less(t, a.PTS, short.DurationTicks)
	}
	require.Len(t, c.Video, 400, "Cut must not change the original")

	require.Equal(t, c.DurationTicks, c.Cut(time.Hour).DurationTicks)
}

// parseCases drive both TestParseRejectsUnusableInput and the FuzzParse seeds.
func parseCases(t testing.TB) []struct {
	name string
	ts   []byte
} {
	c := loadClip(t)
	garbage := make([]byte, 188*4)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	return []struct {
		name string
		ts   []byte
	}{
		{"empty", nil},
		{"garbage", garbage},
		{"only the first packets", c.TS[:188*3]},
		{"cut before the tracks are known", c.TS[:188*40]},
		{"starts mid-stream without an IDR", c.TS[188*600 : 188*1200]},
	}
}

func TestParseRejectsUnusableInput(t *testing.T) {
	for _, tc := range parseCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.ts)
			require.ErrorIs(t, err, ErrBadClip)
		})
	}
}

func TestParseAcceptsTheEmbeddedFile(t *testing.T) {
	c, err := Parse(embeddedTS)
	require.NoError(t, err)
	require.Equal(t, loadClip(t).DurationTicks, c.DurationTicks)
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases(f) {
		f.Add(tc.ts)
	}
	f.Add(loadClip(f).TS[:188*400])
	f.Fuzz(func(t *testing.T, ts []byte) {
		c, err := Parse(ts)
		if err != nil {
			require.ErrorIs(t, err, ErrBadClip)
			return
		}
		// Whatever parses must be safe to publish.
		require.True(t, c.Video[0].IDR)
		require.Positive(t, c.DurationTicks)
		for _, a := range c.Audio {
			require.GreaterOrEqual(t, a.PTS, int64(0))
			require.Less(t, a.PTS, c.DurationTicks)
		}
		require.NotEmpty(t, sendOrder(c))
	})
}
