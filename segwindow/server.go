package segwindow

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"
)

// Content types and cache policies of what the server sends.
const (
	ContentTypePlaylist = "application/vnd.apple.mpegurl"
	ContentTypeSegment  = "video/mp2t"
	ContentTypeChunk    = "application/octet-stream"
	// CacheImmutable is for segments and chunks: a URL names the same signed bytes forever.
	CacheImmutable = "public, max-age=31536000, immutable"
)

// Kinds of responses reported to ServerOptions.OnServe.
const (
	KindPlaylist = "playlist"
	KindSegment  = "segment"
	KindChunk    = "chunk"
)

// Lookup finds the window of a stream.
type Lookup func(stream string) (*Window, bool)

// ServerOptions tune a Server. The zero value is fine.
type ServerOptions struct {
	// OnServe is called after each successful response with the stream, the kind
	// (KindPlaylist, KindSegment, KindChunk) and the body bytes sent (0 for HEAD).
	OnServe func(stream string, kind string, bytes int)
	// OnSegment is called after a whole segment was sent in answer to a GET, with its number
	// and description: a player took it (the peer follows its player's buffer with it).
	OnSegment func(stream string, seq uint64, meta SegmentMeta)
	// OnPartWait is called when an LL-HLS request is about to wait for what the window does
	// not hold yet (a blocking playlist reload, a request for the preload-hinted part): what a
	// player needs next. An LL player fetches parts, not segments, so this is how a peer learns
	// which part its player is blocked on and can fetch it from the CDN in time.
	OnPartWait func(stream string, want PartWait)
	// WaitForFirst holds a playlist request for up to this long while the window has no
	// complete segment yet, instead of answering 404 at once. Players (ffplay, VLC, hls.js) give
	// up on a 404 for the first playlist, and a peer that has just started is seconds from its
	// first segment, so a peer's local endpoint waits; the origin answers at once (0).
	WaitForFirst time.Duration
	// StartSegments and StartWait: the first playlist a window serves waits (up to StartWait
	// after the first segment completed) until it lists StartSegments segments. A player
	// starts a few target durations from the end of the first playlist it reads; handed a
	// one-segment playlist it starts on two seconds of buffer and stalls while the peer is
	// still joining (measured: most stalls of a 50-peer flash crowd). Zero: no wait.
	StartSegments int
	StartWait     time.Duration
	// NotReady, when set, says why a stream's window has no segment yet when the reason is
	// worth telling a player (the peer: the tracker does not know the stream, or does not
	// answer), and when to ask again. While it gives a reason, a playlist request the window
	// cannot answer gets 503 with that reason and Retry-After at once, instead of waiting
	// WaitForFirst for a segment that cannot come and then a bare 404.
	NotReady func(stream string) (reason string, retryAfter time.Duration)
	// MaxBlocked caps the LL-HLS requests waiting at once (blocking playlist reloads and
	// requests for the preload-hinted part), over all streams; one more is answered 503 at
	// once. Zero means DefaultMaxBlocked.
	MaxBlocked int
	// BlockTimeout is the longest an LL-HLS request waits before it is answered 503. Zero
	// means three target durations (RFC 8216bis).
	BlockTimeout time.Duration
}

// Server serves the playlists, segments and chunks of many streams' windows over HTTP.
type Server struct {
	lookup Lookup
	opts   ServerOptions

	mu      sync.Mutex
	started map[*Window]bool // windows that served their first playlist

	blocked  atomic.Int64  // LL-HLS requests waiting now
	shutdown chan struct{} // closed by Shutdown: waiting requests give up
	stopOnce sync.Once
}

// NewServer returns a server that finds windows with lookup.
func NewServer(lookup Lookup, opts ServerOptions) *Server {
	return &Server{lookup: lookup, opts: opts, shutdown: make(chan struct{})}
}

// Shutdown answers every waiting LL-HLS request (503) and every later one at once, so an
// http.Server's graceful shutdown is not held up for a blocking reload's timeout. Register it
// with http.Server.RegisterOnShutdown.
func (s *Server) Shutdown() { s.stopOnce.Do(func() { close(s.shutdown) }) }

// Register mounts the routes (GET, HEAD, and OPTIONS for CORS preflight) on e:
//
//	/live/:stream/index.m3u8          the live playlist
//	/live/:stream/:seq.ts             a whole complete segment
//	/live/:stream/:seq/:index.chunk   one signed chunk frame (proto.Chunk.Append)
//	/live/:stream/:seq/all.chunks     every chunk frame of a complete segment, in order
//	/live/:stream/:seq/slice-I-of-K.chunks  those of its chunks whose index is I modulo K
//	/live/:stream/ll.m3u8             the LL-HLS playlist, with blocking reload (llserver.go)
//	/live/:stream/init.mp4            the fMP4 init segment (init-D.mp4: of timeline D)
//	/live/:stream/:seq.mp4            a whole complete segment as fMP4
//	/live/:stream/:seq.:part.mp4      one LL-HLS part, blocking when it is the next to come
//	/live/:stream/master.m3u8         the multivariant playlist
//
// Echo's router would take ":seq.ts" for a parameter named "seq.ts", so the last path element is
// routed as one parameter and parsed here.
func (s *Server) Register(e *echo.Echo) {
	methods := []string{http.MethodGet, http.MethodHead, http.MethodOptions}
	e.Match(methods, StreamPath(":stream")+"/:file", s.serveFile, cors)
	e.Match(methods, StreamPath(":stream")+"/:seq/:chunk", s.serveChunk, cors)
}

// CORS: a web player (hls.js) on any other site may read playlists, segments and chunks, from
// the origin and from a viewer's local peer alike. Nothing here depends on cookies or on who
// asks, so every response allows any origin, and none varies by Origin: echo's CORS middleware
// adds "Vary: Origin", which would split a CDN's cache of the immutable segments per site.
const (
	corsAllowMethods = "GET, HEAD, OPTIONS"
	// corsExposeHeaders are the response headers a script may read beyond the CORS-safelisted
	// ones: Date and Age let a player place the live edge behind a cache.
	corsExposeHeaders = "Content-Length, Date, Age"
	corsMaxAge        = "86400"
)

// cors answers preflight requests and marks every other response readable cross-origin.
func cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		h := c.Response().Header()
		h.Set(echo.HeaderAccessControlAllowOrigin, "*")
		if c.Request().Method != http.MethodOptions {
			h.Set(echo.HeaderAccessControlExposeHeaders, corsExposeHeaders)
			return next(c)
		}
		h.Set(echo.HeaderAllow, corsAllowMethods)
		h.Set(echo.HeaderAccessControlAllowMethods, corsAllowMethods)
		if asked := c.Request().Header.Get(echo.HeaderAccessControlRequestHeaders); asked != "" {
			// Any request header is fine (hls.js may send Range); the answer depends on it.
			h.Set(echo.HeaderAccessControlAllowHeaders, asked)
			h.Add(echo.HeaderVary, echo.HeaderAccessControlRequestHeaders)
		}
		h.Set(echo.HeaderAccessControlMaxAge, corsMaxAge)
		return c.NoContent(http.StatusNoContent)
	}
}

func (s *Server) serveFile(c *echo.Context) error {
	file := c.Param("file")
	switch {
	case file == PlaylistFile:
		return s.servePlaylist(c)
	case file == LLPlaylistFile:
		return s.serveLLPlaylist(c)
	case file == MasterPlaylistFile:
		return s.serveMaster(c)
	case file == InitFile:
		return s.serveInit(c, -1)
	case strings.HasPrefix(file, initPrefix):
		d, ok := ParseInitURI(file)
		if !ok {
			return jsonError(c, http.StatusNotFound, "no such file: want init-D.mp4")
		}
		return s.serveInit(c, int64(min(d, 1<<62)))
	case strings.HasSuffix(file, fmp4Ext):
		return s.serveFMP4(c, file)
	}
	seqText, ok := strings.CutSuffix(file, segmentExt)
	if !ok {
		return jsonError(c, http.StatusNotFound, "no such file: want index.m3u8, SEQ.ts, ll.m3u8, master.m3u8, init.mp4, SEQ.mp4 or SEQ.PART.mp4")
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return jsonError(c, http.StatusBadRequest, "malformed segment number "+strconv.Quote(seqText))
	}
	w, ok := s.window(c)
	if !ok {
		return jsonError(c, http.StatusNotFound, "unknown stream")
	}
	parts, meta, ok := w.SegmentBuffers(seq)
	if !ok {
		return jsonError(c, http.StatusNotFound, "segment "+seqText+" not available")
	}
	c.Response().Header().Set(echo.HeaderCacheControl, CacheImmutable)
	err = s.send(c, KindSegment, ContentTypeSegment, parts...)
	if err == nil && s.opts.OnSegment != nil && c.Request().Method == http.MethodGet {
		s.opts.OnSegment(c.Param("stream"), seq, meta)
	}
	return err
}

func (s *Server) servePlaylist(c *echo.Context) error {
	w, ok := s.window(c)
	if !ok {
		return jsonError(c, http.StatusNotFound, "unknown stream")
	}
	if answered, err := s.awaitFirstPlaylist(c, w); answered {
		return err
	}
	body, ok := w.Playlist()
	if !ok {
		if unavailable, err := s.notReady(c); unavailable {
			return err
		}
		return jsonError(c, http.StatusNotFound, "no segment complete yet")
	}
	s.markStarted(w)
	c.Response().Header().Set(echo.HeaderCacheControl, playlistCacheControl(w.TargetDurationSeconds()))
	return s.send(c, KindPlaylist, ContentTypePlaylist, body)
}

// awaitFirstPlaylist holds the first playlist request of a window as ServerOptions.WaitForFirst
// says; answered is true when it answered the request itself (503 with NotReady's reason).
func (s *Server) awaitFirstPlaylist(c *echo.Context, w *Window) (answered bool, err error) {
	if s.opts.WaitForFirst <= 0 || s.hasStarted(w) {
		return false, nil
	}
	if w.ListedCount() == 0 {
		if unavailable, err := s.notReady(c); unavailable {
			return true, err
		}
	}
	waitForStart(c.Request().Context(), w, s.opts)
	return false, nil
}

// notReady answers 503 with the reason ServerOptions.NotReady gives, if it gives one.
func (s *Server) notReady(c *echo.Context) (bool, error) {
	if s.opts.NotReady == nil {
		return false, nil
	}
	reason, retry := s.opts.NotReady(c.Param("stream"))
	if reason == "" {
		return false, nil
	}
	c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(max(1, int((retry+time.Second-1)/time.Second))))
	return true, jsonError(c, http.StatusServiceUnavailable, reason)
}

func (s *Server) serveChunk(c *echo.Context) error {
	seqText := c.Param("seq")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return jsonError(c, http.StatusBadRequest, "malformed segment number "+strconv.Quote(seqText))
	}
	if c.Param("chunk") == AllChunks {
		return s.serveChunkFrames(c, seq, seqText, wholeSegment)
	}
	if slice, ok := ParseSliceFile(c.Param("chunk")); ok {
		return s.serveChunkFrames(c, seq, seqText, slice)
	}
	indexText, ok := strings.CutSuffix(c.Param("chunk"), chunkExt)
	if !ok {
		return jsonError(c, http.StatusNotFound, "no such file: want INDEX.chunk, "+AllChunks+" or slice-I-of-K.chunks")
	}
	index, err := strconv.ParseUint(indexText, 10, 32)
	if err != nil {
		return jsonError(c, http.StatusBadRequest, "malformed chunk index "+strconv.Quote(indexText))
	}
	w, ok := s.window(c)
	if !ok {
		return jsonError(c, http.StatusNotFound, "unknown stream")
	}
	chunk, ok := w.Chunk(seq, uint32(index))
	if !ok {
		return jsonError(c, http.StatusNotFound, "chunk "+seqText+"/"+indexText+" not available")
	}
	c.Response().Header().Set(echo.HeaderCacheControl, CacheImmutable)
	return s.send(c, KindChunk, ContentTypeChunk, chunk.Frame())
}

// AllChunks is the file name under a segment's directory of the bundle of all its chunk frames.
const AllChunks = "all.chunks"

// serveChunkFrames sends a complete segment's chunk frames of a slice (wholeSegment: all of
// them) in one body. It is immutable, like a chunk, so a CDN caches it; a segment still in
// progress is a 404 and the peer fetches chunks.
func (s *Server) serveChunkFrames(c *echo.Context, seq uint64, seqText string, slice Slice) error {
	w, ok := s.window(c)
	if !ok {
		return jsonError(c, http.StatusNotFound, "unknown stream")
	}
	parts, ok := w.SliceBuffers(seq, slice)
	if !ok {
		return jsonError(c, http.StatusNotFound, "segment "+seqText+" not complete")
	}
	c.Response().Header().Set(echo.HeaderCacheControl, CacheImmutable)
	return s.send(c, KindChunk, ContentTypeChunk, parts...)
}

func (s *Server) window(c *echo.Context) (*Window, bool) {
	if s.lookup == nil {
		return nil, false
	}
	return s.lookup(c.Param("stream"))
}

// send writes the body, given as parts written back to back (only its length for HEAD), and
// reports it. The parts are the window's own chunk buffers: a segment or bundle is never copied
// into one piece to be sent.
func (s *Server) send(c *echo.Context, kind, contentType string, body ...[]byte) error {
	size := 0
	for _, p := range body {
		size += len(p)
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentLength, strconv.Itoa(size))
	h.Set(echo.HeaderContentType, contentType)
	sent := size
	var err error
	if c.Request().Method == http.MethodHead {
		sent = 0
		err = c.NoContent(http.StatusOK)
	} else {
		c.Response().WriteHeader(http.StatusOK)
		for _, p := range body {
			if _, err = c.Response().Write(p); err != nil {
				break
			}
		}
	}
	if err == nil && s.opts.OnServe != nil {
		s.opts.OnServe(c.Param("stream"), kind, sent)
	}
	return err
}

// playlistCacheControl lets caches hold a playlist for at most half a target duration, so a
// player behind a cache still sees every segment in time; below 2 s that rounds to nothing.
func playlistCacheControl(targetSecs int) string {
	if targetSecs < 2 {
		return "no-cache"
	}
	return "max-age=" + strconv.Itoa(targetSecs/2)
}

func jsonError(c *echo.Context, code int, msg string) error {
	return c.JSON(code, map[string]string{"error": msg})
}

func (s *Server) hasStarted(w *Window) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started[w]
}

func (s *Server) markStarted(w *Window) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started == nil {
		s.started = make(map[*Window]bool)
	}
	s.started[w] = true
}

// waitForStart waits until w lists a segment (at most opts.WaitForFirst) and then until it lists
// opts.StartSegments (at most opts.StartWait more).
func waitForStart(ctx context.Context, w *Window, opts ServerOptions) {
	first := time.NewTimer(opts.WaitForFirst)
	defer first.Stop()
	var more <-chan time.Time
	for {
		changed := w.Changed()
		n := w.ListedCount()
		if n >= max(opts.StartSegments, 1) {
			return
		}
		if n > 0 && more == nil {
			if opts.StartWait <= 0 {
				return
			}
			t := time.NewTimer(opts.StartWait)
			defer t.Stop()
			more = t.C
		}
		select {
		case <-changed:
		case <-first.C:
			if n == 0 {
				return
			}
		case <-more:
			return
		case <-ctx.Done():
			return
		}
	}
}
