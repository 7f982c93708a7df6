package player

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/pace"
)

// llState is where the low-latency loop is in the stream.
type llState struct {
	started  bool // next is set: the player has picked where to join
	next     partPos
	offset   float64   // media of segment next.msn before part next.part (played or skipped)
	failures int       // failed attempts at next
	retryAt  time.Time // not before then
	// ahead is the preload-hinted part requested before it exists; nil when none is pending.
	ahead *aheadFetch
	// reloadAt is the earliest time of the next playlist reload: the next poll of a server
	// that cannot block, or the back-off after a failed or useless reload.
	reloadAt time.Time
}

// llPiece is what the player fetches next: one part, or a whole segment whose parts the
// playlist no longer lists.
type llPiece struct {
	pos           partPos
	whole         bool
	remainder     bool // the whole segment, of which the player already played the first parts
	url           *url.URL
	duration      float64
	independent   bool
	pdt           time.Time
	hasPDT        bool
	discontinuity bool // the first piece of a segment after EXT-X-DISCONTINUITY
	mapURL        *url.URL
}

// llCatchUpRate is how fast an LL player plays while it is further behind live than
// PART-HOLD-BACK (plus a part): hls.js's maxLiveSyncPlaybackRate as the web player sets it.
// AVPlayer also varies its rate to hold an LL-HLS stream's target latency.
const llCatchUpRate = 1.5

// playLowLatency plays a low-latency playlist part by part until ctx ends or a closed playlist
// has played out. st.playlist is loaded.
func (p *Player) playLowLatency(ctx context.Context, st *playState) {
	ls := &llState{}
	defer func() {
		if ls.ahead != nil {
			ls.ahead.abandon()
		}
	}()
	for ctx.Err() == nil {
		if !ls.started {
			if pos, skip, ok := st.playlist.lowLatencyStartSkip(); ok {
				ls.moveTo(st.playlist, pos)
				ls.started = true
				p.mu.Lock()
				p.po.startAt = skip
				if ll := st.playlist.ll; ll != nil {
					// Back to PART-HOLD-BACK (one part of slack) after a stall, at up to
					// llCatchUpRate, as the web player's hls.js does.
					p.po.catchUp.rate = llCatchUpRate
					p.po.catchUp.ahead = ll.partHoldBack + ll.partTarget.Seconds()
				}
				p.mu.Unlock()
				p.log.Debug("low-latency start", "part", pos.String(), "presented_from_s", skip)
			}
		}
		if ls.started {
			if piece, ok := p.nextPiece(st, ls); ok {
				if now := time.Now(); now.Before(ls.retryAt) {
					p.sleepUntil(ctx, st, ls.retryAt)
					continue
				}
				p.playPiece(ctx, st, ls, piece)
				p.maybeStatus(st, time.Now())
				continue
			}
		}
		if st.playlist.ended {
			p.playOut(ctx)
			return
		}
		if now := time.Now(); now.Before(ls.reloadAt) {
			p.sleepUntil(ctx, st, ls.reloadAt)
			continue
		}
		p.reloadLowLatency(ctx, st, ls)
	}
}

// nextPiece finds ls.next in the playlist, moving it on past segments played to their end. It
// reports false when the playlist does not list it yet.
func (p *Player) nextPiece(st *playState, ls *llState) (llPiece, bool) {
	pl := st.playlist
	for {
		seg, complete, ok := pl.llSegment(ls.next.msn)
		if !ok {
			return llPiece{}, false
		}
		if len(seg.parts) == 0 {
			if !complete {
				return llPiece{}, false
			}
			if ls.next.part == 0 {
				return llPiece{
					pos: ls.next, whole: true, url: seg.url, duration: seg.duration, independent: true,
					pdt: seg.pdt, hasPDT: seg.hasPDT, discontinuity: seg.discontinuity, mapURL: seg.mapURL,
				}, true
			}
			// The player played the first parts of this segment and the playlist no longer
			// lists the others: it fell so far behind that they expired. Like hls.js it loads
			// the whole segment and plays on from where it was.
			rest := seg.duration - ls.offset
			if rest <= 0 {
				p.segmentPlayed()
				ls.next, ls.offset = partPos{msn: ls.next.msn + 1}, 0
				continue
			}
			return llPiece{
				pos: ls.next, whole: true, remainder: true, url: seg.url, duration: rest,
				pdt: seg.pdt.Add(secondsToDuration(ls.offset)), hasPDT: seg.hasPDT, mapURL: seg.mapURL,
			}, true
		}
		if ls.next.part < len(seg.parts) {
			part := seg.parts[ls.next.part]
			if part.gap {
				ls.next.part++
				ls.offset += part.duration
				continue
			}
			offset := 0.0
			for _, before := range seg.parts[:ls.next.part] {
				offset += before.duration
			}
			return llPiece{
				pos: ls.next, url: part.url, duration: part.duration, independent: part.independent,
				pdt: seg.pdt.Add(secondsToDuration(offset)), hasPDT: seg.hasPDT,
				discontinuity: seg.discontinuity && ls.next.part == 0, mapURL: seg.mapURL,
			}, true
		}
		if !complete {
			return llPiece{}, false
		}
		p.segmentPlayed()
		ls.next, ls.offset = partPos{msn: ls.next.msn + 1}, 0
	}
}

func (p *Player) segmentPlayed() {
	p.mu.Lock()
	p.segments++
	p.mu.Unlock()
}

// playPiece downloads one part (or whole segment), feeds it to the buffer model and checks it.
func (p *Player) playPiece(ctx context.Context, st *playState, ls *llState, piece llPiece) {
	retry := st.playlist.targetDuration / 4
	if st.playlist.ll != nil && !piece.whole {
		retry = st.playlist.ll.partTarget / 2
	}
	if piece.mapURL != nil && !p.ensureInit(ctx, st, piece.mapURL) {
		ls.retryAt = time.Now().Add(retry)
		return
	}
	what := "part " + piece.pos.String()
	if piece.whole {
		what = "segment " + strconv.FormatUint(piece.pos.msn, 10)
	}

	buf, arrived, preloaded, err := p.fetchPiece(ctx, ls, piece)
	defer putBuffer(buf)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		ls.failures++
		p.recordError(kindFetch, fmt.Errorf("%s (attempt %d of %d): %w", what, ls.failures, segmentAttempts, err))
		if ls.failures >= segmentAttempts {
			p.advancePast(ls, piece)
			ls.failures = 0
			return
		}
		ls.retryAt = arrived.Add(retry)
		return
	}
	p.advancePast(ls, piece)
	ls.failures = 0

	crossed := piece.discontinuity && st.playedAny
	st.playedAny = true
	p.mu.Lock()
	if !p.po.started {
		p.startup = arrived.Sub(p.firstRequest)
	}
	p.po.add(arrived, piece.duration, piece.pdt, piece.hasPDT)
	if !piece.whole {
		p.parts++
	}
	if preloaded {
		p.preloadedParts++
	}
	p.bytes += int64(buf.Len())
	if crossed {
		p.discontinuities++
	}
	p.mu.Unlock()

	if piece.discontinuity || piece.remainder {
		// A remainder repeats the media already played from the parts: its clock goes back.
		st.fm.reset()
	}
	if p.cfg.SkipMediaCheck || piece.mapURL == nil {
		// Parts without EXT-X-MAP would be MPEG-TS parts: a part alone lacks the PAT and PMT
		// the TS checker needs, so they are not checked.
		return
	}
	p.checkFMP4(st, what, buf.Bytes(), piece.independent)
}

// moveTo makes pos the next part, a part of pl or the start of a segment.
func (ls *llState) moveTo(pl *mediaPlaylist, pos partPos) {
	ls.next, ls.offset = pos, 0
	if seg, _, ok := pl.llSegment(pos.msn); ok {
		for _, part := range seg.parts[:min(pos.part, len(seg.parts))] {
			ls.offset += part.duration
		}
	}
}

func (p *Player) advancePast(ls *llState, piece llPiece) {
	if piece.whole {
		p.segmentPlayed()
		ls.next, ls.offset = partPos{msn: piece.pos.msn + 1}, 0
		return
	}
	ls.next.part++
	ls.offset += piece.duration
}

// fetchPiece gets the bytes of piece: from the request made ahead when it asked for this very
// URL, else with a request of its own. The caller gives the buffer back.
func (p *Player) fetchPiece(ctx context.Context, ls *llState, piece llPiece) (buf *bytes.Buffer, arrived time.Time, preloaded bool, err error) {
	if a := ls.ahead; a != nil {
		ls.ahead = nil
		if a.url.String() == piece.url.String() {
			if !a.wait(ctx) {
				return getBuffer(), time.Now(), false, ctx.Err()
			}
			if a.err == nil {
				return a.buf, a.arrived, true, nil
			}
			// The request ahead failed (the server may not hold requests for parts to come):
			// ask again now that the part is listed. Its failure is not the player's error.
			p.log.Debug("preload hint request failed", "url", a.url.String(), "error", a.err)
			putBuffer(a.buf)
		} else {
			a.abandon()
		}
	}
	buf = getBuffer()
	fctx, cancel := context.WithTimeout(ctx, p.cfg.SegmentTimeout)
	_, err = getInto(fctx, p.cfg.HTTPClient, piece.url, maxSegmentBytes, buf)
	cancel()
	return buf, time.Now(), false, err
}

// reloadLowLatency reloads the playlist when it does not list the next part: with a blocking
// request for that part when the server can hold it, and with the preload-hinted part
// requested alongside, so both answers come when the part is complete.
func (p *Player) reloadLowLatency(ctx context.Context, st *playState, ls *llState) {
	pl := st.playlist
	want := pl.nextAfterLast()
	if ls.started {
		want = ls.next
	}
	partTarget := pl.targetDuration
	canBlock := false
	if pl.ll != nil {
		partTarget, canBlock = pl.ll.partTarget, pl.ll.canBlock
	}

	if ls.ahead != nil && (pl.ll == nil || pl.ll.hint == nil || ls.ahead.url.String() != pl.ll.hint.String() || ls.ahead.failed()) {
		// Hinted at a part the playlist no longer hints at, or refused (the server gave up
		// holding it): ask again below.
		ls.ahead.abandon()
		ls.ahead = nil
	}
	if ls.ahead == nil && pl.ll != nil && pl.ll.hint != nil && ls.started && ls.next == pl.nextAfterLast() {
		ls.ahead = p.fetchAhead(ctx, pl.ll.hint)
	}

	u := st.mediaURL
	if canBlock {
		u = withBlockingReload(st.mediaURL, want)
	}
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, p.cfg.PlaylistTimeout)
	next, err := loadPlaylist(rctx, p.cfg.HTTPClient, u, pl)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		p.recordError(kindFetch, fmt.Errorf("playlist: %w", err))
		ls.reloadAt = start.Add(partTarget)
		return
	}
	p.mu.Lock()
	p.playlistLoads++
	p.mu.Unlock()
	st.mediaURL = withoutBlockingReload(next.url)
	st.playlist = next
	p.followLowLatency(st, ls, pl, next)

	listed := ls.started && next.lists(ls.next)
	switch {
	case !canBlock:
		// Poll as RFC 8216bis 6.3.4 says for a server that cannot block: every part target.
		ls.reloadAt = start.Add(partTarget)
	case !listed && time.Since(start) < partTarget/2:
		// The server answered at once without the part asked for (it does not really block):
		// do not ask again faster than parts can appear.
		ls.reloadAt = start.Add(partTarget)
	}
}

// followLowLatency keeps ls.next on the stream as the new playlist numbers it, and counts the
// sequence errors a real player would suffer from.
func (p *Player) followLowLatency(st *playState, ls *llState, old, pl *mediaPlaylist) {
	if !ls.started {
		return
	}
	first, ok := firstListed(pl)
	if !ok {
		return
	}
	oldFirst, oldOK := firstListed(old)
	if oldOK && (first < oldFirst || pl.nextAfterLast().msn < old.nextAfterLast().msn) {
		p.recordError(kindSequence, fmt.Errorf("%w: playlist went back from %d..%d to %d..%d",
			ErrSequenceJump, oldFirst, old.nextAfterLast().msn, first, pl.nextAfterLast().msn))
		if pos, ok := pl.lowLatencyStart(); ok {
			ls.moveTo(pl, pos)
		}
		ls.failures = 0
		st.fm.reset()
		return
	}
	if ls.next.msn < first {
		p.recordError(kindSequence, fmt.Errorf("%w: wanted part %s, playlist now starts at segment %d",
			ErrSequenceJump, ls.next, first))
		ls.moveTo(pl, partPos{msn: first})
		ls.failures = 0
		st.fm.reset()
	}
}

// firstListed is the number of the first segment a playlist lists, the tail included.
func firstListed(pl *mediaPlaylist) (uint64, bool) {
	if len(pl.segments) > 0 {
		return pl.segments[0].seq, true
	}
	if pl.ll != nil && pl.ll.tail != nil {
		return pl.ll.tail.seq, true
	}
	return 0, false
}

// withBlockingReload adds the blocking reload query (RFC 8216bis 6.2.5.2) for pos to u.
func withBlockingReload(u *url.URL, pos partPos) *url.URL {
	out := *u
	q := u.Query()
	q.Set("_HLS_msn", strconv.FormatUint(pos.msn, 10))
	q.Set("_HLS_part", strconv.Itoa(pos.part))
	out.RawQuery = q.Encode()
	return &out
}

// withoutBlockingReload removes the blocking reload query from u, leaving any other.
func withoutBlockingReload(u *url.URL) *url.URL {
	q := u.Query()
	if !q.Has("_HLS_msn") && !q.Has("_HLS_part") && !q.Has("_HLS_skip") {
		return u
	}
	out := *u
	q.Del("_HLS_msn")
	q.Del("_HLS_part")
	q.Del("_HLS_skip")
	out.RawQuery = q.Encode()
	return &out
}

// sleepUntil sleeps until t or ctx ends, waking at least once a second for status.
func (p *Player) sleepUntil(ctx context.Context, st *playState, t time.Time) {
	pace.Sleep(ctx, min(time.Until(t), statusEvery))
	p.maybeStatus(st, time.Now())
}
