package player

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
)

// tsChecker follows the timestamps of an MPEG-TS stream segment after segment. Inside one
// discontinuity sequence (between EXT-X-DISCONTINUITY tags) the decode timestamps of every track
// must run on; a step back means the encoder or the packager restarted its clock without telling
// the player, which makes real players drop or freeze frames.
//
// DTS is checked rather than PTS because PTS legitimately goes back between B-frames; for audio
// the two are the same.
type tsChecker struct {
	tracks map[uint16]*trackClock
}

// trackClock is one elementary stream's decode clock, unwrapped past the 33-bit rollover.
type trackClock struct {
	decoder mpegts.TimeDecoder
	last    int64 // unwrapped DTS of the last access unit, 90 kHz
}

func newTSChecker() *tsChecker {
	return &tsChecker{tracks: map[uint16]*trackClock{}}
}

// reset starts a new discontinuity sequence: timestamps may restart from anything.
func (c *tsChecker) reset() {
	clear(c.tracks)
}

// check parses one segment and returns ErrTSParse or ErrTimestampBack (wrapped with detail).
func (c *tsChecker) check(segment []byte) error {
	r := &mpegts.Reader{R: bytes.NewReader(segment)}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("%w: %w", ErrTSParse, err)
	}

	var decodeErr error
	r.OnDecodeError(func(err error) {
		if decodeErr == nil {
			decodeErr = err
		}
	})

	var backErr error
	for _, track := range r.Tracks() {
		onDTS := func(dts int64) {
			if backErr == nil {
				backErr = c.observe(track.PID, dts)
			}
		}
		switch track.Codec.(type) {
		case *codecs.H264:
			r.OnDataH264(track, func(_ int64, dts int64, _ [][]byte) error { onDTS(dts); return nil })
		case *codecs.H265:
			r.OnDataH265(track, func(_ int64, dts int64, _ [][]byte) error { onDTS(dts); return nil })
		case *codecs.MPEG4Audio:
			r.OnDataMPEG4Audio(track, func(pts int64, _ [][]byte) error { onDTS(pts); return nil })
		case *codecs.MPEG4AudioLATM:
			r.OnDataMPEG4AudioLATM(track, func(pts int64, _ [][]byte) error { onDTS(pts); return nil })
		case *codecs.MPEG1Audio:
			r.OnDataMPEG1Audio(track, func(pts int64, _ [][]byte) error { onDTS(pts); return nil })
		case *codecs.Opus:
			r.OnDataOpus(track, func(pts int64, _ [][]byte) error { onDTS(pts); return nil })
		case *codecs.AC3:
			r.OnDataAC3(track, func(pts int64, _ []byte) error { onDTS(pts); return nil })
		case *codecs.EAC3:
			r.OnDataEAC3(track, func(pts int64, _ []byte) error { onDTS(pts); return nil })
		case *codecs.MPEG4Video:
			r.OnDataMPEG4Video(track, func(pts int64, _ []byte) error { onDTS(pts); return nil })
		case *codecs.MPEG1Video:
			r.OnDataMPEG1Video(track, func(pts int64, _ []byte) error { onDTS(pts); return nil })
		}
		// KLV and subtitles carry no playout clock worth checking.
	}

	for {
		err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrTSParse, err)
		}
	}
	if decodeErr != nil {
		return fmt.Errorf("%w: %w", ErrTSParse, decodeErr)
	}
	return backErr
}

func (c *tsChecker) observe(pid uint16, dts int64) error {
	tc, ok := c.tracks[pid]
	if !ok {
		tc = &trackClock{}
		tc.last = tc.decoder.Decode(dts)
		c.tracks[pid] = tc
		return nil
	}
	cur := tc.decoder.Decode(dts)
	prev := tc.last
	if cur < prev {
		// Keep going from the new clock so one jump is reported once, not once per frame.
		tc.last = cur
		return fmt.Errorf("%w: track PID %d DTS went from %.3f s to %.3f s",
			ErrTimestampBack, pid, float64(prev)/90000, float64(cur)/90000)
	}
	tc.last = cur
	return nil
}
