package segwindow

import (
	"bytes"
	"math"
	"slices"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
)

// programDateTimeLayout writes EXT-X-PROGRAM-DATE-TIME with exactly millisecond precision in UTC.
// hls-m3u8 formats it with time.RFC3339Nano, which drops trailing zeros and prints down to
// nanoseconds, so the window writes the tag itself as a per-segment custom tag.
const programDateTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// programDateTime is the EXT-X-PROGRAM-DATE-TIME tag as an m3u8.CustomTag; the library writes
// custom segment tags right before EXTINF, where the date-time tag belongs.
type programDateTime time.Time

func (programDateTime) TagName() string { return "#EXT-X-PROGRAM-DATE-TIME:" }

func (p programDateTime) Encode() *bytes.Buffer {
	return bytes.NewBufferString(p.String())
}

func (p programDateTime) String() string {
	return "#EXT-X-PROGRAM-DATE-TIME:" + time.Time(p).UTC().Format(programDateTimeLayout)
}

// Playlist renders the live media playlist, or ok=false while no segment can be listed yet.
// When the newest listed segment ended the stream (its last chunk carries the signed
// proto.FlagEnd), the playlist ends with EXT-X-ENDLIST, so players stop polling; a segment of a
// new session listed after it (it carries a discontinuity) removes the tag again.
// The bytes are cached until the window changes; they are shared, do not modify them.
//
// What is listed: starting at the oldest complete segment at or after the last playlist's first
// segment, the run of complete segments in seq order, up to the first segment that is neither
// complete nor abandoned (or a seq of which nothing is held), so a player never waits on a
// missing segment. Of that run the newest PlaylistLength are listed.
//
// Abandoned segments: the media sequence number of a listed segment is implied by its position
// (EXT-X-MEDIA-SEQUENCE + index), and ours must equal the seq in its URI, or a player that
// reloads the playlist would fetch a segment twice or skip one, and a peer's numbering would
// differ from the origin's. So an abandoned segment cannot simply be left out of a list that
// goes on past it, and EXT-X-GAP needs protocol version 8 and is ignored by ffmpeg and several
// players. Instead an abandoned segment ends the run before it: once a segment after it is
// complete, the playlist lists only segments after it, and the first of them carries
// EXT-X-DISCONTINUITY (its timestamps jump by the missing segment). To a player this looks like a
// playlist that moved on by a few segments between two reloads, which every player handles.
func (w *Window) Playlist() ([]byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dirty {
		w.rendered, w.renderedOK = w.render()
		w.dirty = false
	}
	return w.rendered, w.renderedOK
}

// TargetDurationSeconds is the EXT-X-TARGETDURATION of the playlist as last rendered (or the
// nominal one before that).
func (w *Window) TargetDurationSeconds() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.targetSecs
}

// ListedCount is how many segments the playlist would list now, without rendering it (rendering
// moves the window's floor to its first segment, which must wait until the start is settled).
func (w *Window) ListedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.listed())
}

// Ended reports whether the playlist ends the stream: the newest segment it lists is the last
// of a publishing session (see Playlist).
func (w *Window) Ended() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.listed()
	return len(list) > 0 && list[len(list)-1].end
}

// listed picks the segments to list; called with mu held.
func (w *Window) listed() []*segment {
	var (
		run     []*segment
		start   int // index in run after the last abandoned segment
		expect  uint64
		started bool
	)
	for _, seq := range w.sortedSeqs() {
		if seq < w.floor {
			continue
		}
		s := w.segs[seq]
		if !started {
			if s.complete {
				started = true
				run = append(run, s)
				expect = seq + 1
			}
			continue
		}
		if seq != expect {
			break
		}
		expect++
		if s.abandoned {
			continue
		}
		if !s.complete {
			break
		}
		if s.gapBefore {
			start = len(run)
		}
		run = append(run, s)
	}
	run = run[start:]
	if len(run) > w.cfg.PlaylistLength {
		run = run[len(run)-w.cfg.PlaylistLength:]
	}
	return run
}

// render builds the playlist; called with mu held.
func (w *Window) render() ([]byte, bool) {
	list := w.listed()
	if len(list) == 0 {
		return nil, false
	}
	w.advanceFloor(list[0].seq)
	for _, s := range list {
		w.targetSecs = max(w.targetSecs, targetSeconds(extinfDuration(s.info.Duration)))
	}

	n := uint(len(list))
	p, err := m3u8.NewMediaPlaylist(n, n)
	if err != nil {
		return nil, false // unreachable: capacity equals window size
	}
	defer p.ReleasePlaylist()
	p.SeqNo = list[0].seq
	p.DiscontinuitySeq = w.discBefore
	p.SetTargetDuration(uint(w.targetSecs))
	for _, s := range list {
		seg := m3u8.GetSegment()
		seg.URI = SegmentURI(s.seq)
		seg.Duration = extinfDuration(s.info.Duration).Seconds()
		seg.Discontinuity = s.discontinuity()
		if !s.info.ProgramDateTime.IsZero() { // an origin always sets it; never print year 1
			seg.Custom = m3u8.CustomMap{"#EXT-X-PROGRAM-DATE-TIME:": programDateTime(s.info.ProgramDateTime)}
		}
		if err := p.AppendSegment(seg); err != nil {
			return nil, false // unreachable: capacity equals the number of segments
		}
	}
	p.Closed = list[len(list)-1].end // EXT-X-ENDLIST; set after the segments, so none slides out
	return bytes.Clone(p.Encode().Bytes()), true
}

// discontinuity tells whether the segment carries EXT-X-DISCONTINUITY when listed.
func (s *segment) discontinuity() bool { return s.disc || s.gapBefore }

// advanceFloor moves the lowest listable seq to `to`, counting the discontinuities of the
// segments it passes so EXT-X-DISCONTINUITY-SEQUENCE stays right as segments slide out (or are
// evicted unlisted: their discontinuities still happened). Called with mu held.
func (w *Window) advanceFloor(to uint64) {
	if to <= w.floor {
		return
	}
	for seq, s := range w.segs {
		if seq >= w.floor && seq < to && !s.abandoned && s.discSet && s.discontinuity() {
			w.discBefore++
		}
	}
	w.floor = to
}

func (w *Window) sortedSeqs() []uint64 {
	seqs := make([]uint64, 0, len(w.segs))
	for seq := range w.segs {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs
}

// extinfDuration is a segment's duration as EXTINF states it: rounded to milliseconds.
func extinfDuration(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// targetSeconds is the smallest EXT-X-TARGETDURATION a segment of duration d allows: RFC 8216
// (4.3.3.1) bounds the EXTINF rounded to the nearest integer, so a 2.002 s segment (29.97 fps) or
// a 2.005 s one (94 AAC frames at 48 kHz) fits a target of 2. Rounding up instead would announce
// 3 s, and players would wait and buffer longer than the stream needs.
func targetSeconds(d time.Duration) int {
	return max(1, int(math.Round(d.Seconds())))
}
