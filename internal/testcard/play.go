package testcard

import (
	"context"
	"fmt"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/pace"
)

// Sink takes access units in-process, e.g. an origin's Feed. Timestamps run from 0 at the first
// access unit and keep increasing across loops of the clip.
type Sink interface {
	WriteH264(pts time.Duration, au [][]byte) error
	WriteAAC(pts time.Duration, aus [][]byte) error
}

// Play writes clip into sink in real time, looping forever, until ctx ends (then it returns
// nil) or the sink fails. A machine that stalls for more than maxLag moves the schedule forward
// instead of writing everything it missed at once (0 = one second).
func Play(ctx context.Context, clip *Clip, sink Sink, maxLag time.Duration) error {
	if maxLag <= 0 {
		maxLag = time.Second
	}
	order := sendOrder(clip)
	tl := &timeline{clipTicks: clip.DurationTicks, wallStart: time.Now()}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for loop := 0; ; loop++ {
		for _, it := range order {
			due := tl.sendTime(loop, it.at)
			wait := time.Until(due)
			if wait < -maxLag {
				tl.wallStart = tl.wallStart.Add(-wait)
			}
			if !pace.Until(ctx, timer, due) {
				return nil
			}
			var err error
			if it.video != nil {
				err = sink.WriteH264(ticksToDuration(tl.ticks(loop, it.video.PTS)), it.video.NALUs)
			} else {
				err = sink.WriteAAC(ticksToDuration(tl.ticks(loop, it.audio.PTS)), [][]byte{it.audio.AU})
			}
			if err != nil {
				return fmt.Errorf("testcard: %w", err)
			}
		}
	}
}
