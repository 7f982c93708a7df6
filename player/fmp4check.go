package player

import (
	"bytes"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
)

// fmp4Checker checks fragmented MP4 media the way tsChecker checks MPEG-TS: the init segment
// must parse and name its tracks; every part (or whole segment, its parts back to back) must
// parse as moof+mdat pairs of tracks the init segment declared; inside one discontinuity
// sequence each track's decode time must run on; and a part the playlist marks INDEPENDENT=YES
// must start its video with a random access point (an IDR), since a player joining or switching there decodes
// nothing before it.
type fmp4Checker struct {
	tracks map[int]fmp4Track // from the init segment; nil until one parsed
	clocks map[int]uint64    // per track ID: decode time of the last sample, in its time scale
}

type fmp4Track struct {
	timeScale uint32
	video     bool
	codec     mp4codecs.Codec
}

// randomAccess reports whether sample starts a coded video sequence. For H.264 and H.265 the
// bitstream says (an IDR or IRAP picture), because the sample flags cannot be trusted: a writer
// like ffmpeg marks the first sample sync with the trun's first-sample-flags, which
// mediacommon's reader ignores (it reports such a sample as non-sync).
func (t fmp4Track) randomAccess(sample *fmp4.Sample) bool {
	switch t.codec.(type) {
	case *mp4codecs.H264:
		var au h264.AVCC
		return au.Unmarshal(sample.Payload) == nil && h264.IsRandomAccess(au)
	case *mp4codecs.H265:
		var au h264.AVCC // the same length-prefixed layout
		return au.Unmarshal(sample.Payload) == nil && h265.IsRandomAccess(au)
	default:
		return !sample.IsNonSyncSample
	}
}

func newFMP4Checker() *fmp4Checker {
	return &fmp4Checker{clocks: map[int]uint64{}}
}

// reset starts a new discontinuity sequence: decode times may restart from anything.
func (c *fmp4Checker) reset() {
	clear(c.clocks)
}

// setInit parses an init segment (EXT-X-MAP) and takes its tracks.
func (c *fmp4Checker) setInit(b []byte) error {
	var init fmp4.Init
	if err := init.Unmarshal(bytes.NewReader(b)); err != nil {
		return fmt.Errorf("%w: init segment: %w", ErrFMP4Parse, err)
	}
	if len(init.Tracks) == 0 {
		return fmt.Errorf("%w: init segment declares no track", ErrFMP4Parse)
	}
	tracks := make(map[int]fmp4Track, len(init.Tracks))
	for _, t := range init.Tracks {
		tracks[t.ID] = fmp4Track{timeScale: t.TimeScale, video: t.Codec != nil && t.Codec.IsVideo(), codec: t.Codec}
	}
	c.tracks = tracks
	return nil
}

// check parses media and returns ErrFMP4Parse, ErrNotIndependent or ErrTimestampBack (wrapped
// with detail).
func (c *fmp4Checker) check(media []byte, independent bool) error {
	var parts fmp4.Parts
	if err := parts.Unmarshal(media); err != nil {
		return fmt.Errorf("%w: %w", ErrFMP4Parse, err)
	}
	if len(parts) == 0 {
		return fmt.Errorf("%w: no moof box in %d bytes", ErrFMP4Parse, len(media))
	}
	var backErr error
	for i, part := range parts {
		for _, track := range part.Tracks {
			info, known := c.tracks[track.ID]
			if c.tracks != nil && !known {
				return fmt.Errorf("%w: track %d is not in the init segment", ErrFMP4Parse, track.ID)
			}
			if len(track.Samples) == 0 {
				continue
			}
			if independent && i == 0 && info.video && !info.randomAccess(track.Samples[0]) {
				return fmt.Errorf("%w: track %d", ErrNotIndependent, track.ID)
			}
			if err := c.observe(track, info.timeScale); err != nil && backErr == nil {
				backErr = err
			}
		}
	}
	return backErr
}

func (c *fmp4Checker) observe(track *fmp4.PartTrack, timeScale uint32) error {
	first := track.BaseTime
	last := first
	for _, s := range track.Samples[:len(track.Samples)-1] {
		last += uint64(s.Duration)
	}
	prev, seen := c.clocks[track.ID]
	// Keep going from the new clock so one jump is reported once.
	c.clocks[track.ID] = last
	if !seen || first >= prev {
		return nil
	}
	scale := float64(timeScale)
	if scale == 0 {
		scale = 1
	}
	return fmt.Errorf("%w: track %d decode time went from %.3f s to %.3f s",
		ErrTimestampBack, track.ID, float64(prev)/scale, float64(first)/scale)
}
