package testcard

import (
	"cmp"
	"slices"
	"time"
)

// sendItem is one access unit in the order the publisher writes them.
type sendItem struct {
	// at is when to send, in ClockRate ticks from the start of the loop:
	// the DTS for video (decoders need access units in decoding order), the
	// PTS for audio.
	at    int64
	video *VideoAU
	audio *AudioAU
}

// sendOrder interleaves the clip's video and audio by send time; at equal
// times video goes first so that a receiver's first access unit is the IDR.
func sendOrder(c *Clip) []sendItem {
	items := make([]sendItem, 0, len(c.Video)+len(c.Audio))
	for i := range c.Video {
		items = append(items, sendItem{at: c.Video[i].DTS, video: &c.Video[i]})
	}
	for i := range c.Audio {
		items = append(items, sendItem{at: c.Audio[i].PTS, audio: &c.Audio[i]})
	}
	slices.SortStableFunc(items, func(a, b sendItem) int {
		if n := cmp.Compare(a.at, b.at); n != 0 {
			return n
		}
		return cmp.Compare(b.isVideo(), a.isVideo())
	})
	return items
}

func (s sendItem) isVideo() int {
	if s.video != nil {
		return 1
	}
	return 0
}

// timeline maps the clip's timestamps onto an endless session: loop n plays
// the clip again shifted by n clip lengths, so timestamps keep increasing
// across loops and the step over a loop boundary equals the usual frame step.
type timeline struct {
	clipTicks    int64  // loop length, ClockRate ticks
	audioClock   int64  // AAC sample rate, the RTP clock of the audio media
	videoRTPBase uint32 // random RTP timestamp offsets (RFC 3550 5.1)
	audioRTPBase uint32
	wallStart    time.Time
}

// ticks returns a clip timestamp in loop n as ticks since the session start.
func (t *timeline) ticks(loop int, clipTicks int64) int64 {
	return int64(loop)*t.clipTicks + clipTicks
}

// sendTime is the wall-clock time at which an item of loop n is due.
func (t *timeline) sendTime(loop int, at int64) time.Time {
	return t.wallStart.Add(ticksToDuration(t.ticks(loop, at)))
}

// videoRTP returns the RTP timestamp (90 kHz) for a video PTS in loop n.
func (t *timeline) videoRTP(loop int, pts int64) uint32 {
	return t.videoRTPBase + uint32(t.ticks(loop, pts))
}

// audioRTP returns the RTP timestamp (sample clock) for an audio PTS in loop
// n. It converts the absolute session time every time, so rounding never
// accumulates across loops.
func (t *timeline) audioRTP(loop int, pts int64) uint32 {
	abs := t.ticks(loop, pts)
	samples := abs/ClockRate*t.audioClock + abs%ClockRate*t.audioClock/ClockRate
	return t.audioRTPBase + uint32(samples)
}
