package player

import (
	"bytes"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/stretchr/testify/require"
)

const segTicks = testFramesPerSeg * testFrameTicks

func TestTSCheckerAcceptsTimestampsThatRunOn(t *testing.T) {
	c := newTSChecker()
	for i := range int64(5) {
		require.NoError(t, c.check(makeSegment(t, 90000+i*segTicks)))
	}
}

func TestTSCheckerFlagsAJumpBackOncePerJump(t *testing.T) {
	c := newTSChecker()
	require.NoError(t, c.check(makeSegment(t, 50*90000)))
	err := c.check(makeSegment(t, 10*90000))
	require.ErrorIs(t, err, ErrTimestampBack)
	// The new clock is then followed.
	require.NoError(t, c.check(makeSegment(t, 10*90000+segTicks)))
}

func TestTSCheckerResetStartsANewClock(t *testing.T) {
	c := newTSChecker()
	require.NoError(t, c.check(makeSegment(t, 50*90000)))
	c.reset()
	require.NoError(t, c.check(makeSegment(t, 10*90000)))
}

func TestTSCheckerFollowsThe33BitRollover(t *testing.T) {
	c := newTSChecker()
	const wrap = int64(1) << 33
	require.NoError(t, c.check(makeSegment(t, wrap-segTicks/2)))
	// The next segment starts past the rollover: DTS values are small again but later in time.
	require.NoError(t, c.check(makeSegment(t, segTicks/2)))
}

func TestTSCheckerChecksAudioToo(t *testing.T) {
	audio := func(pts int64) []byte {
		var buf bytes.Buffer
		w := &mpegts.Writer{W: &buf, Tracks: []*mpegts.Track{{Codec: &codecs.MPEG4Audio{
			Config: mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2},
		}}}}
		require.NoError(t, w.Initialize())
		for i := range int64(4) {
			require.NoError(t, w.WriteMPEG4Audio(w.Tracks[0], pts+i*1920, [][]byte{{1, 2, 3, 4}}))
		}
		return buf.Bytes()
	}
	c := newTSChecker()
	require.NoError(t, c.check(audio(90000)))
	require.NoError(t, c.check(audio(90000+4*1920)))
	require.ErrorIs(t, c.check(audio(90000)), ErrTimestampBack)
}

func TestTSCheckerRejectsWhatIsNotMPEGTS(t *testing.T) {
	c := newTSChecker()
	for name, data := range map[string][]byte{
		"empty":     nil,
		"garbage":   bytes.Repeat([]byte{0xde, 0xad}, 1000),
		"truncated": makeSegment(t, 90000)[:100],
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, c.check(data), ErrTSParse)
		})
	}
}
