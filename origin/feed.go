package origin

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/crowdsurf/crowdsurf/proto"
)

// ErrNotPublishing means a Feed was written after it (or the origin) closed.
var ErrNotPublishing = errors.New("origin: the stream is not being published by this feed")

// FeedTracks is what an in-process publisher sends: H.264 video (with its SPS and PPS, or
// with them in front of every IDR access unit) and/or AAC audio.
type FeedTracks struct {
	H264     bool
	SPS, PPS []byte
	// AAC is the audio's config, nil for none.
	AAC *mpeg4audio.AudioSpecificConfig
}

// Feed publishes one stream from inside the process: a caller that already holds access units
// (a test source, the load test's synthetic stream, the test card) hands them to the same
// segmenter, signer, window, HTTP endpoint and mesh root as an RTSP publisher's, without RTSP.
// Writes are safe from several goroutines; timestamps start wherever the caller likes.
type Feed struct {
	o  *Origin
	st *stream

	closeOnce sync.Once
}

// Feed claims the named stream for an in-process publisher and starts its session, as an RTSP
// RECORD does: a stream that existed goes on after a discontinuity. It fails like a publisher
// would (a bad name, ErrStreamBusy, ErrTooManyStreams, no tracks).
func (o *Origin) Feed(name string, tracks FeedTracks) (*Feed, error) {
	if err := proto.ValidStreamName(name); err != nil {
		return nil, fmt.Errorf("origin: feed: %w", err)
	}
	f := &Feed{o: o}
	st, err := o.claimStream(name, f, false)
	if err != nil {
		return nil, fmt.Errorf("origin: feed %s: %w", name, err)
	}
	f.st = st
	plan := &ingestPlan{tracks: trackSet{H264: tracks.H264, SPS: tracks.SPS, PPS: tracks.PPS, AAC: tracks.AAC}}
	if err := st.start(f, plan); err != nil {
		st.release(f)
		return nil, fmt.Errorf("origin: feed %s: %w", name, err)
	}
	o.mu.Lock()
	o.feeds[f] = struct{}{}
	o.mu.Unlock()
	return f, nil
}

// WriteH264 muxes one H.264 access unit (NAL units without start codes) presented at pts.
func (f *Feed) WriteH264(pts time.Duration, au [][]byte) error {
	return f.st.writeH264(f, durationToTS(pts), time.Time{}, au)
}

// WriteAAC muxes AAC access units, the first presented at pts, the others following it.
func (f *Feed) WriteAAC(pts time.Duration, aus [][]byte) error {
	return f.st.writeAAC(f, durationToTS(pts), time.Time{}, aus)
}

// Close ends the feed's session like a publisher that leaves: the open segment is finished with
// its real duration and the stream ends. Later writes return ErrNotPublishing.
func (f *Feed) Close() {
	f.closeOnce.Do(func() {
		f.o.mu.Lock()
		delete(f.o.feeds, f)
		f.o.mu.Unlock()
		f.st.release(f)
	})
}

// closeFeeds ends every feed still open: Run does on its way out, as it closes RTSP sessions.
func (o *Origin) closeFeeds() {
	o.mu.Lock()
	feeds := make([]*Feed, 0, len(o.feeds))
	for f := range o.feeds {
		feeds = append(feeds, f)
	}
	o.mu.Unlock()
	for _, f := range feeds {
		f.Close()
	}
}
