package segwindow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"
)

// Serving LL-HLS: the playlist with blocking reload, the init segment, parts (blocking for the
// preload-hinted one), whole fMP4 segments and the multivariant playlist. Every waiting request
// counts against ServerOptions.MaxBlocked and ends after BlockTimeout; it wakes on the window's
// Changed channel, which every verified chunk added to the window closes, so a part is served
// (and listed) the moment its last chunk is verified, on the origin and on every peer.

// Content types of the fMP4 variant.
const (
	ContentTypeMP4 = "video/mp4"
	// KindFMP4 is reported to ServerOptions.OnServe for init segments, parts and fMP4 segments.
	KindFMP4 = "fmp4"
	// DefaultMaxBlocked is ServerOptions.MaxBlocked's default: a viewer's player holds one
	// blocking request or two; an origin's HTTP endpoint serves CDNs and a few hundred players.
	DefaultMaxBlocked = 1024
)

// Query parameters of a blocking playlist reload (RFC 8216bis 6.2.5.2).
const (
	queryMSN  = "_HLS_msn"
	queryPart = "_HLS_part"
	// msnAheadLimit: a request for a segment further than this past the last one the
	// playlist has is answered 400 (RFC 8216bis: "plus two").
	msnAheadLimit = 2
)

var (
	errBadQuery       = errors.New("bad LL-HLS query")
	errBlockTimeout   = errors.New("timed out waiting")
	errTooManyBlocked = errors.New("too many requests waiting")
	errShuttingDown   = errors.New("the server is shutting down")
)

// blockRequest is what a blocking playlist reload waits for: part `part` of segment msn to be
// listed; without a part (part < 0), the whole segment.
type blockRequest struct {
	block bool
	msn   uint64
	part  int
}

// parseBlockQuery reads _HLS_msn and _HLS_part. Other parameters (_HLS_skip, cache busters)
// are ignored. A part without a segment, a repeated parameter or anything but a decimal number
// is errBadQuery.
func parseBlockQuery(q url.Values) (blockRequest, error) {
	msnVals, partVals := q[queryMSN], q[queryPart]
	if len(msnVals) > 1 || len(partVals) > 1 {
		return blockRequest{}, fmt.Errorf("%w: repeated %s or %s", errBadQuery, queryMSN, queryPart)
	}
	if len(msnVals) == 0 {
		if len(partVals) > 0 {
			return blockRequest{}, fmt.Errorf("%w: %s without %s", errBadQuery, queryPart, queryMSN)
		}
		return blockRequest{part: -1}, nil
	}
	msn, ok := parseDecimal(msnVals[0])
	if !ok {
		return blockRequest{}, fmt.Errorf("%w: %s=%q is not a segment number", errBadQuery, queryMSN, msnVals[0])
	}
	r := blockRequest{block: true, msn: msn, part: -1}
	if len(partVals) > 0 {
		part, ok := parseDecimal(partVals[0])
		if !ok || part >= maxPartIndex {
			return blockRequest{}, fmt.Errorf("%w: %s=%q is not a part number", errBadQuery, queryPart, partVals[0])
		}
		r.part = int(part)
	}
	return r, nil
}

// PartWait is what an LL-HLS request waits for: part Part of segment Seq (Part < 0: the whole
// segment), with the LL playlist's PART-TARGET so far (0 before any part was listed).
type PartWait struct {
	Seq        uint64
	Part       int
	PartTarget time.Duration
}

// partWait tells ServerOptions.OnPartWait that a request for c's stream waits for part of seq.
func (s *Server) partWait(c *echo.Context, w *Window, seq uint64, part int) {
	if s.opts.OnPartWait != nil {
		s.opts.OnPartWait(c.Param("stream"), PartWait{Seq: seq, Part: part, PartTarget: w.PartTarget()})
	}
}

// covered reports whether the playlist at edge answers r.
func (r blockRequest) covered(e llEdge) bool {
	if r.part < 0 {
		return r.msn < e.msn // the whole segment is listed
	}
	return e.covers(r.msn, r.part)
}

func (s *Server) serveLLPlaylist(c *echo.Context) error {
	w, ok := s.window(c)
	if !ok {
		return jsonError(c, http.StatusNotFound, "unknown stream")
	}
	req, err := parseBlockQuery(c.Request().URL.Query())
	if err != nil {
		return jsonError(c, http.StatusBadRequest, err.Error())
	}
	if answered, err := s.awaitFirstPlaylist(c, w); answered {
		return err
	}
	if req.block {
		if msn, _, ok := w.LLEdge(); ok && req.msn > msn+msnAheadLimit {
			return jsonError(c, http.StatusBadRequest, fmt.Sprintf("%s=%d is more than %d segments past the playlist's last (%d)", queryMSN, req.msn, msnAheadLimit, msn))
		}
		if msn, part, ok := w.LLEdge(); !ok || !req.covered(llEdge{msn: msn, part: part}) {
			s.partWait(c, w, req.msn, req.part)
		}
		err := s.await(c.Request().Context(), w, func() (bool, error) {
			msn, part, ok := w.LLEdge()
			return ok && req.covered(llEdge{msn: msn, part: part}), nil
		})
		if err != nil {
			return s.awaitFailed(c, err)
		}
	}
	body, ok := w.LLPlaylist()
	if !ok {
		if unavailable, err := s.notReady(c); unavailable {
			return err
		}
		return jsonError(c, http.StatusNotFound, "no segment complete yet")
	}
	s.markStarted(w)
	cache := "no-cache" // changes with every part
	if req.block {
		// The answer to a blocking request names what it waited for in its URL and never
		// stops answering it: RFC 8216bis suggests letting caches keep it for a while.
		cache = "public, max-age=" + strconv.Itoa(6*w.TargetDurationSeconds())
	}
	c.Response().Header().Set(echo.HeaderCacheControl, cache)
	return s.send(c, KindPlaylist, ContentTypePlaylist, body)
}

// serveInit serves init.mp4 (timeline < 0) or a timeline's init-D.mp4.
func (s *Server) serveInit(c *echo.Context, timeline int64) error {
	w, ok := s.window(c)
	if !ok {
		return jsonError(c, http.StatusNotFound, "unknown stream")
	}
	var (
		body []byte
		err  error
	)
	if timeline < 0 {
		body, err = w.Init()
	} else {
		body, err = w.TimelineInit(uint64(timeline))
	}
	if err != nil {
		return fmp4Error(c, "init segment", err)
	}
	// Not immutable: a node numbers timelines from its own start, and init.mp4 follows the
	// oldest listed segment.
	c.Response().Header().Set(echo.HeaderCacheControl, playlistCacheControl(w.TargetDurationSeconds()))
	return s.send(c, KindFMP4, ContentTypeMP4, body)
}

// serveFMP4 serves SEQ.mp4 (a complete segment) and SEQ.PART.mp4 (a part; the next one to come
// waits for it).
func (s *Server) serveFMP4(c *echo.Context, file string) error {
	seq, part, ok := ParseFMP4URI(file)
	if !ok {
		return jsonError(c, http.StatusNotFound, "no such file: want SEQ.mp4 or SEQ.PART.mp4")
	}
	w, ok := s.window(c)
	if !ok {
		return jsonError(c, http.StatusNotFound, "unknown stream")
	}
	if part < 0 {
		body, meta, err := w.FMP4Segment(seq)
		if err != nil {
			return fmp4Error(c, "segment "+strconv.FormatUint(seq, 10), err)
		}
		c.Response().Header().Set(echo.HeaderCacheControl, CacheImmutable)
		err = s.send(c, KindFMP4, ContentTypeMP4, body)
		if err == nil && s.opts.OnSegment != nil && c.Request().Method == http.MethodGet {
			s.opts.OnSegment(c.Param("stream"), seq, meta)
		}
		return err
	}
	body, err := w.Part(seq, part)
	if errors.Is(err, ErrPartNotYet) && nextParts(w, seq, part) {
		s.partWait(c, w, seq, part)
		werr := s.await(c.Request().Context(), w, func() (bool, error) {
			body, err = w.Part(seq, part)
			return !errors.Is(err, ErrPartNotYet), nil
		})
		if werr != nil {
			return s.awaitFailed(c, werr)
		}
	}
	if err != nil {
		return fmp4Error(c, fmt.Sprintf("part %d.%d", seq, part), err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, CacheImmutable)
	return s.send(c, KindFMP4, ContentTypeMP4, body)
}

// nextParts reports whether part (seq, part) is worth waiting for: the preload hint, the part
// after it, or the first part of the next segment (the hint, once the segment in progress ends).
func nextParts(w *Window, seq uint64, part int) bool {
	msn, next, ok := w.LLEdge()
	return ok && (seq == msn && part <= next+1 || seq == msn+1 && part == 0)
}

func (s *Server) serveMaster(c *echo.Context) error {
	w, ok := s.window(c)
	if !ok {
		return jsonError(c, http.StatusNotFound, "unknown stream")
	}
	body, err := w.MasterPlaylist()
	if err != nil {
		return fmp4Error(c, "multivariant playlist", err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, playlistCacheControl(w.TargetDurationSeconds()))
	return s.send(c, KindPlaylist, ContentTypePlaylist, body)
}

// await waits until ready says so, the window changing in between, for at most the block
// timeout; it holds one of the MaxBlocked slots meanwhile.
func (s *Server) await(ctx context.Context, w *Window, ready func() (bool, error)) error {
	if ok, err := ready(); ok || err != nil {
		return err
	}
	limit := s.opts.MaxBlocked
	if limit <= 0 {
		limit = DefaultMaxBlocked
	}
	if s.blocked.Add(1) > int64(limit) {
		s.blocked.Add(-1)
		return errTooManyBlocked
	}
	defer s.blocked.Add(-1)
	timeout := s.opts.BlockTimeout
	if timeout <= 0 {
		timeout = 3 * time.Duration(w.TargetDurationSeconds()) * time.Second
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		changed := w.Changed() // before the check, so no change slips in between
		if ok, err := ready(); ok || err != nil {
			return err
		}
		select {
		case <-changed:
		case <-timer.C:
			return errBlockTimeout
		case <-s.shutdown:
			return errShuttingDown
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// awaitFailed answers a request that could not wait or waited in vain: 503 with Retry-After.
func (s *Server) awaitFailed(c *echo.Context, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the client left; nobody reads an answer
	}
	c.Response().Header().Set(echo.HeaderRetryAfter, "1")
	return jsonError(c, http.StatusServiceUnavailable, err.Error())
}

// fmp4Error maps the window's LL-HLS errors to statuses.
func fmp4Error(c *echo.Context, what string, err error) error {
	if errors.Is(err, ErrPartNotYet) || errors.Is(err, ErrNoSuchPart) {
		return jsonError(c, http.StatusNotFound, what+" not available")
	}
	// The origin signed MPEG-TS that cannot be remuxed (its publisher sent garbage): every
	// node fails alike.
	return jsonError(c, http.StatusInternalServerError, what+": "+err.Error())
}
