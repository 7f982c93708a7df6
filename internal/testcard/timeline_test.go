package testcard

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSendOrderIsByTimeWithVideoFirst(t *testing.T) {
	c := loadClip(t)
	order := sendOrder(c)

	require.Len(t, order, len(c.Video)+len(c.Audio))
	require.NotNil(t, order[0].video, "the first thing sent is the IDR")
	require.True(t, order[0].video.IDR)
	for i := 1; i < len(order); i++ {
		require.LessOrEqual(t, order[i-1].at, order[i].at, "item %d", i)
		if order[i-1].at == order[i].at && order[i].video != nil {
			require.NotNil(t, order[i-1].video, "video goes before audio of the same time, item %d", i)
		}
	}
}

// rtpSteps plays the clip for loops loops through tl and returns the RTP
// timestamp differences (as signed 32-bit, the way receivers unwrap them) of
// consecutive video and audio access units.
func rtpSteps(c *Clip, tl *timeline, loops int) (video, audio []int64) {
	var prevV, prevA uint32
	var haveV, haveA bool
	for loop := range loops {
		for _, it := range sendOrder(c) {
			if it.video != nil {
				ts := tl.videoRTP(loop, it.video.PTS)
				if haveV {
					video = append(video, int64(int32(ts-prevV)))
				}
				prevV, haveV = ts, true
			} else {
				ts := tl.audioRTP(loop, it.audio.PTS)
				if haveA {
					audio = append(audio, int64(int32(ts-prevA)))
				}
				prevA, haveA = ts, true
			}
		}
	}
	return video, audio
}

func TestLoopBoundaryKeepsRTPTimestampsEvenlySpaced(t *testing.T) {
	full := loadClip(t)
	for _, c := range []*Clip{full, full.Cut(320 * time.Millisecond)} {
		t.Run(c.Duration.String(), func(t *testing.T) {
			tl := &timeline{
				clipTicks:  c.DurationTicks,
				audioClock: int64(c.AudioConfig.SampleRate),
				// Just below the wrap point: the second loop crosses it.
				videoRTPBase: ^uint32(0) - uint32(c.DurationTicks) - 100,
				audioRTPBase: ^uint32(0) - 1000,
			}
			video, audio := rtpSteps(c, tl, 4)

			require.Len(t, video, 4*len(c.Video)-1)
			for i, d := range video {
				require.Equal(t, c.FrameTicks, d, "video step %d", i)
			}
			require.Len(t, audio, 4*len(c.Audio)-1)
			for i, d := range audio {
				require.Equal(t, int64(1024), d, "audio step %d (samples)", i)
			}
		})
	}
}

func TestSendTimesIncreaseAcrossLoops(t *testing.T) {
	c := loadClip(t).Cut(320 * time.Millisecond)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tl := &timeline{clipTicks: c.DurationTicks, audioClock: 48000, wallStart: start}

	order := sendOrder(c)
	var prev time.Time
	for loop := range 3 {
		for i, it := range order {
			at := tl.sendTime(loop, it.at)
			require.False(t, at.Before(prev), "loop %d item %d", loop, i)
			prev = at
		}
		require.Equal(t, start.Add(time.Duration(loop)*c.Duration), tl.sendTime(loop, 0))
	}
}

func TestAudioRTPDoesNotDriftOverManyLoops(t *testing.T) {
	// A loop length that is not a whole number of 44.1 kHz samples would
	// drift if each loop's offset were rounded on its own.
	tl := &timeline{clipTicks: 90001, audioClock: 44100}
	loops := 100000
	want := uint32(int64(loops) * 90001 * 44100 / ClockRate)
	require.Equal(t, want, tl.audioRTP(loops, 0))
}
