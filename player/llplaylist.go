package player

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// llPlaylist is what a low-latency playlist adds to a media playlist.
type llPlaylist struct {
	partTarget   time.Duration
	canBlock     bool    // the server holds a reload until the part asked for is listed
	partHoldBack float64 // seconds from the end of the playlist where a player starts
	// tail is the segment being produced, of which the playlist lists parts only (url nil,
	// duration the sum of its parts); nil when the last segment listed is complete.
	tail *segmentInfo
	hint *url.URL // EXT-X-PRELOAD-HINT TYPE=PART: the part after the last one listed
}

// partInfo is one part of a segment.
type partInfo struct {
	url         *url.URL
	duration    float64
	independent bool
	gap         bool
}

// errPartsMisplaced means the low-latency tags and hls-m3u8 numbered the segments differently:
// the playlist is too broken to tell which part belongs to which segment.
var errPartsMisplaced = errors.New("the EXT-X-PART tags do not line up with the segments")

// addParts resolves the parts of ll onto the segments of p. prev (nil: none) is the previous
// load, for the date-time of a tail segment that has none of its own and no segment before it.
func (p *mediaPlaylist) addParts(ll *llTags, prev *mediaPlaylist) error {
	if ll.segments != len(p.segments) {
		return fmt.Errorf("%w: %d segments, hls-m3u8 read %d", errPartsMisplaced, ll.segments, len(p.segments))
	}
	out := &llPlaylist{
		partTarget:   secondsToDuration(ll.partTarget),
		canBlock:     ll.canBlock,
		partHoldBack: ll.partHoldBack,
	}
	if out.partHoldBack < 2*ll.partTarget {
		// RFC 8216bis 4.4.3.8: at least twice the part target; three times is what it advises.
		out.partHoldBack = 3 * ll.partTarget
	}
	if ll.hint != "" {
		u, err := p.url.Parse(ll.hint)
		if err != nil {
			return fmt.Errorf("EXT-X-PRELOAD-HINT URI %q: %w", ll.hint, err)
		}
		out.hint = u
	}
	for _, sp := range ll.parts {
		parts, err := p.resolveParts(sp.parts)
		if err != nil {
			return err
		}
		if ll.tail != nil && sp.msn == ll.tail.msn {
			tail, err := p.tailSegment(ll.tail, parts, prev)
			if err != nil {
				return err
			}
			out.tail = tail
			continue
		}
		i, ok := p.find(sp.msn)
		if !ok {
			return fmt.Errorf("%w: parts of segment %d, which is not listed", errPartsMisplaced, sp.msn)
		}
		p.segments[i].parts = parts
	}
	p.ll = out
	return nil
}

func (p *mediaPlaylist) resolveParts(parts []llPart) ([]partInfo, error) {
	out := make([]partInfo, len(parts))
	for i, part := range parts {
		u, err := p.url.Parse(part.uri)
		if err != nil {
			return nil, fmt.Errorf("EXT-X-PART URI %q: %w", part.uri, err)
		}
		out[i] = partInfo{url: u, duration: part.duration, independent: part.independent, gap: part.gap}
	}
	return out, nil
}

// tailSegment builds the segment being produced. Its number follows the last segment listed (or
// is the media sequence when none is), and its date-time, when the playlist gives none, follows
// from the segment before it as for any segment.
func (p *mediaPlaylist) tailSegment(t *llTail, parts []partInfo, prev *mediaPlaylist) (*segmentInfo, error) {
	if len(p.segments) > 0 && t.msn != p.lastSeq()+1 {
		return nil, fmt.Errorf("%w: parts after segment %d numbered %d", errPartsMisplaced, p.lastSeq(), t.msn)
	}
	seg := &segmentInfo{seq: t.msn, discontinuity: t.discontinuity, parts: parts}
	for _, part := range parts {
		seg.duration += part.duration
	}
	if t.mapURI != "" {
		u, err := p.url.Parse(t.mapURI)
		if err != nil {
			return nil, fmt.Errorf("EXT-X-MAP URI %q: %w", t.mapURI, err)
		}
		seg.mapURL, seg.fmp4 = u, true
	}
	var before *segmentInfo
	switch {
	case len(p.segments) > 0:
		before = &p.segments[len(p.segments)-1]
	case prev != nil && t.msn > 0:
		if i, ok := prev.find(t.msn - 1); ok {
			before = &prev.segments[i]
		}
	}
	switch {
	case t.hasPDT:
		seg.pdt, seg.hasPDT = t.pdt, true
	case before != nil && before.hasPDT && !seg.discontinuity:
		seg.pdt, seg.hasPDT = before.pdt.Add(secondsToDuration(before.duration)), true
	case prev != nil && prev.ll != nil && prev.ll.tail != nil && prev.ll.tail.seq == t.msn && prev.ll.tail.hasPDT:
		seg.pdt, seg.hasPDT = prev.ll.tail.pdt, true
	}
	return seg, nil
}

// partPos is a position in a low-latency stream: part `part` of segment msn.
type partPos struct {
	msn  uint64
	part int
}

func (p partPos) String() string { return fmt.Sprintf("%d.%d", p.msn, p.part) }

// llSegment returns segment msn, the tail included; complete is false for the tail.
func (p *mediaPlaylist) llSegment(msn uint64) (seg *segmentInfo, complete bool, ok bool) {
	if i, found := p.find(msn); found {
		return &p.segments[i], true, true
	}
	if p.ll != nil && p.ll.tail != nil && p.ll.tail.seq == msn {
		return p.ll.tail, false, true
	}
	return nil, false, false
}

// nextAfterLast is the position of the first part the playlist does not list yet: where a
// blocking reload waits and what a preload hint names.
func (p *mediaPlaylist) nextAfterLast() partPos {
	if p.ll != nil && p.ll.tail != nil {
		return partPos{msn: p.ll.tail.seq, part: len(p.ll.tail.parts)}
	}
	if len(p.segments) == 0 {
		return partPos{}
	}
	return partPos{msn: p.lastSeq() + 1}
}

// lists reports whether the playlist lists pos (or, for a segment it lists whole, anything at
// or after it), that is whether pos comes before the first part it does not list yet.
func (p *mediaPlaylist) lists(pos partPos) bool {
	end := p.nextAfterLast()
	return pos.msn < end.msn || (pos.msn == end.msn && pos.part < end.part)
}

// lowLatencyStart picks where a low-latency player joins, as hls.js does in lowLatencyMode:
// PART-HOLD-BACK from the end of the playlist, then back to the nearest independent part (a
// part that starts with a random access point) at or before it, so the first part decodes
// without what came before. A segment whose parts the playlist no longer lists counts as one
// independent piece. It reports false for a playlist that lists nothing.
func (p *mediaPlaylist) lowLatencyStart() (partPos, bool) {
	pos, _, ok := p.lowLatencyStartSkip()
	return pos, ok
}

// lowLatencyStartSkip is lowLatencyStart with the media, in seconds, between the independent
// part it returns and the PART-HOLD-BACK point: a real player (hls.js, AVPlayer) decodes from the
// independent part but starts presenting at the hold-back point, so that much of the first
// parts is decoded and never shown.
func (p *mediaPlaylist) lowLatencyStartSkip() (partPos, float64, bool) {
	type piece struct {
		pos         partPos
		duration    float64
		independent bool
	}
	var pieces []piece
	add := func(seg *segmentInfo) {
		if len(seg.parts) == 0 {
			pieces = append(pieces, piece{partPos{msn: seg.seq}, seg.duration, true})
			return
		}
		for i, part := range seg.parts {
			if !part.gap {
				pieces = append(pieces, piece{partPos{seg.seq, i}, part.duration, part.independent})
			}
		}
	}
	for i := range p.segments {
		add(&p.segments[i])
	}
	if p.ll != nil && p.ll.tail != nil {
		add(p.ll.tail)
	}
	if len(pieces) == 0 {
		return partPos{}, 0, false
	}
	hold := 0.0
	if p.ll != nil {
		hold = p.ll.partHoldBack
	}
	at := 0
	fromEnd := 0.0
	for i := len(pieces) - 1; i >= 0; i-- {
		fromEnd += pieces[i].duration
		if fromEnd >= hold-1e-9 {
			at = i
			break
		}
	}
	// The hold-back point lies inside pieces[at], this far after its start.
	skip := max(fromEnd-hold, 0)
	for i := at; i >= 0; i-- {
		if pieces[i].independent {
			return pieces[i].pos, skip, true
		}
		if i > 0 {
			skip += pieces[i-1].duration
		}
	}
	return pieces[0].pos, skip, true
}
