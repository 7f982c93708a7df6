package player

import (
	"sort"
	"time"
)

// playout is the buffer model of a player. It is evaluated lazily: the only events are segment
// arrivals, and between two events the playhead either advances at 1x against the wall clock or,
// once it has reached the end of the buffer, stands still (a stall). So the state at any instant
// after the last event can be computed, and the player loop can block in an HTTP fetch without a
// second goroutine ticking the playhead.
//
// Media time is counted in seconds from the start of the first segment played, across
// discontinuities (they do not change how long media plays).
type playout struct {
	started   bool
	startWall time.Time // first segment fully received: playback starts
	// startAt is where presentation starts on the media timeline: 0, or for an LL-HLS player the
	// PART-HOLD-BACK point, past the start of the independent part it decodes from. Playback
	// starts once the buffer reaches past it.
	startAt float64
	// catchUp, when set, plays faster than real time while more than catchUp.ahead seconds are
	// buffered beyond the playhead, as an LL-HLS player does to hold its target latency (hls.js
	// maxLiveSyncPlaybackRate, AVPlayer's rate control): a stall then costs latency only for a
	// while, not for the rest of the show.
	catchUp struct {
		rate  float64 // > 1; 0: off
		ahead float64 // seconds
	}

	buffered    float64   // media end of the buffer
	resumeWall  time.Time // anchor of the playhead: at resumeWall it was at resumeMedia
	resumeMedia float64

	stalled    bool
	stallStart time.Time
	stalls     int
	stallTotal time.Duration
	stallMax   time.Duration // longest single stall

	// ended is set when the stream has ended (VOD/ENDLIST fully fetched): running dry then is the
	// end of the show, not a stall.
	ended bool

	segs []playSeg // received segments the playhead has not passed yet

	sampleEvery time.Duration
	nextSample  time.Time
	latencies   []float64 // milliseconds
}

// playSeg is a segment in the buffer: where it sits on the media timeline and, when the
// playlist gave one, its EXT-X-PROGRAM-DATE-TIME.
type playSeg struct {
	mediaStart float64
	duration   float64
	pdt        time.Time
	hasPDT     bool
}

// maxLatencySamples bounds memory per player; when it is reached every other sample is dropped
// and the interval doubles, so the samples stay evenly spread over the whole run.
const maxLatencySamples = 4096

func newPlayout(sampleEvery time.Duration) *playout {
	return &playout{sampleEvery: sampleEvery}
}

// dryAt is when the playhead reaches the end of the buffer if nothing else arrives.
func (p *playout) dryAt() time.Time {
	fast := p.fastFor()
	return p.resumeWall.Add(secondsToDuration(fast + (p.buffered - p.resumeMedia - fast*p.catchUp.rate)))
}

// fastFor is how long, in seconds of wall clock from the anchor, the playhead runs at the
// catch-up rate before the buffer ahead is down to its target (0 without catch-up). Between two
// events the buffer's end stands still, so the lead shrinks by rate a second until then.
func (p *playout) fastFor() float64 {
	if p.catchUp.rate <= 1 {
		return 0
	}
	lead := p.buffered - p.resumeMedia
	if lead <= p.catchUp.ahead {
		return 0
	}
	return (lead - p.catchUp.ahead) / p.catchUp.rate
}

// advance brings the state up to t (t not before the last event): it notices the buffer running
// dry and samples the live latency on the way.
func (p *playout) advance(t time.Time) {
	if !p.started {
		return
	}
	p.sampleUntil(t)
	if !p.stalled && !p.ended {
		if dry := p.dryAt(); !t.Before(dry) {
			p.stalled = true
			p.stallStart = dry
			p.stalls++
		}
	}
}

// add records a segment fully received at t.
func (p *playout) add(t time.Time, duration float64, pdt time.Time, hasPDT bool) {
	p.advance(t)
	switch {
	case !p.started && p.buffered+duration <= p.startAt:
		// Decoded, not presented: the first parts before the hold-back point.
	case !p.started:
		p.started = true
		p.startWall = t
		p.resumeWall = t
		p.resumeMedia = p.startAt
		p.nextSample = t
	case p.stalled:
		p.stallTotal += t.Sub(p.stallStart)
		p.stallMax = max(p.stallMax, t.Sub(p.stallStart))
		p.stalled = false
		p.resumeWall = t
		p.resumeMedia = p.buffered
	default:
		// Playing: re-anchor the playhead here, since with catch-up its course after t depends
		// on how much is buffered (at 1x this changes nothing).
		p.resumeMedia = p.playheadAt(t)
		p.resumeWall = t
	}
	p.segs = append(p.segs, playSeg{mediaStart: p.buffered, duration: duration, pdt: pdt, hasPDT: hasPDT})
	p.buffered += duration
	p.prune(t)
}

// playheadAt is the media position at t (t not before the last event).
func (p *playout) playheadAt(t time.Time) float64 {
	if !p.started {
		return 0
	}
	if p.stalled {
		return p.buffered
	}
	dt := t.Sub(p.resumeWall).Seconds()
	fast := p.fastFor()
	var m float64
	if dt <= fast {
		m = p.resumeMedia + dt*p.catchUp.rate
	} else {
		m = p.resumeMedia + fast*p.catchUp.rate + (dt - fast)
	}
	if m < p.resumeMedia {
		m = p.resumeMedia
	}
	if m > p.buffered {
		m = p.buffered
	}
	return m
}

// stallState is the stall figures at some instant, a stall still under way included.
type stallState struct {
	stalled bool
	count   int
	total   time.Duration
	longest time.Duration
}

// stateAt reports the stall figures at t (t not before the last event).
func (p *playout) stateAt(t time.Time) stallState {
	s := stallState{count: p.stalls, total: p.stallTotal, longest: p.stallMax}
	if !p.started || p.ended {
		return s
	}
	var since time.Time
	switch {
	case p.stalled:
		since = p.stallStart
	case !t.Before(p.dryAt()):
		since = p.dryAt()
		s.count++
	default:
		return s
	}
	s.stalled = true
	s.total += t.Sub(since)
	s.longest = max(s.longest, t.Sub(since))
	return s
}

// latencyAt is wall clock minus the date-time of the media being played at t.
func (p *playout) latencyAt(t time.Time) (time.Duration, bool) {
	m := p.playheadAt(t)
	for i := len(p.segs) - 1; i >= 0; i-- {
		s := p.segs[i]
		if m >= s.mediaStart || i == 0 {
			if !s.hasPDT {
				return 0, false
			}
			offset := m - s.mediaStart
			return t.Sub(s.pdt.Add(secondsToDuration(offset))), true
		}
	}
	return 0, false
}

func (p *playout) sampleUntil(t time.Time) {
	if p.sampleEvery <= 0 {
		return
	}
	for !p.nextSample.After(t) {
		if lat, ok := p.latencyAt(p.nextSample); ok {
			p.latencies = append(p.latencies, float64(lat)/float64(time.Millisecond))
			if len(p.latencies) >= maxLatencySamples {
				p.decimate()
			}
		}
		p.nextSample = p.nextSample.Add(p.sampleEvery)
	}
}

func (p *playout) decimate() {
	kept := p.latencies[:0]
	for i := 0; i < len(p.latencies); i += 2 {
		kept = append(kept, p.latencies[i])
	}
	p.latencies = kept
	p.sampleEvery *= 2
}

// prune drops segments the playhead has fully passed, keeping the one it is in.
func (p *playout) prune(t time.Time) {
	m := p.playheadAt(t)
	n := 0
	for n < len(p.segs)-1 && p.segs[n].mediaStart+p.segs[n].duration <= m {
		n++
	}
	if n > 0 {
		p.segs = append(p.segs[:0], p.segs[n:]...)
	}
}

// finish closes the books at t: a stall under way is counted up to t.
func (p *playout) finish(t time.Time) {
	p.advance(t)
	if p.stalled {
		p.stallTotal += t.Sub(p.stallStart)
		p.stallMax = max(p.stallMax, t.Sub(p.stallStart))
		p.stallStart = t
	}
}

// quantile returns the q-quantile (0..1) of the samples by nearest rank; 0 when there are none.
func quantile(samples []float64, q float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

func secondsToDuration(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}
