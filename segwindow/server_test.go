package segwindow

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

type served struct {
	stream, kind string
	bytes        int
}

type serverFixture struct {
	e      *echo.Echo
	window *Window
	mu     sync.Mutex
	served []served
}

func newServerFixture(t *testing.T) *serverFixture {
	t.Helper()
	f := &serverFixture{e: echo.New(), window: testWindow(3, 5)}
	srv := NewServer(func(stream string) (*Window, bool) {
		if stream == testStream {
			return f.window, true
		}
		return nil, false
	}, ServerOptions{OnServe: func(stream, kind string, n int) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.served = append(f.served, served{stream, kind, n})
	}})
	srv.Register(f.e)
	return f
}

func (f *serverFixture) do(method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func requireJSONError(t *testing.T, rec *httptest.ResponseRecorder, code int) {
	t.Helper()
	require.Equal(t, code, rec.Code, rec.Body.String())
	require.Contains(t, rec.Header().Get("Content-Type"), "application/json")
	var body map[string]string
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.NotEmpty(t, body["error"])
	require.Len(t, body, 1)
}

func TestServerPlaylist(t *testing.T) {
	f := newServerFixture(t)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/index.m3u8"), http.StatusNotFound)

	addAll(t, f.window, spec(5))
	rec := f.do(http.MethodGet, "/live/cam1/index.m3u8")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, ContentTypePlaylist, rec.Header().Get("Content-Type"))
	require.Equal(t, "max-age=1", rec.Header().Get("Cache-Control"))
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))
	want, _ := f.window.Playlist()
	require.Equal(t, string(want), rec.Body.String())
	requireParsesBack(t, rec.Body.Bytes())

	head := f.do(http.MethodHead, "/live/cam1/index.m3u8")
	require.Equal(t, http.StatusOK, head.Code)
	require.Equal(t, ContentTypePlaylist, head.Header().Get("Content-Type"))
	require.Empty(t, head.Body.Bytes())

	requireJSONError(t, f.do(http.MethodGet, "/live/nope/index.m3u8"), http.StatusNotFound)
	require.Equal(t, []served{
		{testStream, KindPlaylist, len(want)},
		{testStream, KindPlaylist, 0},
	}, f.served)
}

func TestPlaylistCacheControl(t *testing.T) {
	for secs, want := range map[int]string{1: "no-cache", 2: "max-age=1", 3: "max-age=1", 6: "max-age=3"} {
		require.Equal(t, want, playlistCacheControl(secs), "target %d s", secs)
	}
	w := New(Config{Stream: testStream, TargetDuration: time.Second})
	s := spec(1)
	s.duration = 900 * time.Millisecond
	addAll(t, w, s)
	e := echo.New()
	NewServer(func(string) (*Window, bool) { return w, true }, ServerOptions{}).Register(e)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/cam1/index.m3u8", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "no-cache", rec.Header().Get("Cache-Control"))
}

func TestServerSegment(t *testing.T) {
	f := newServerFixture(t)
	s := spec(5, 300, 20, 7)
	cs := s.chunks()
	f.window.AddChunk(cs[0])
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5.ts"), http.StatusNotFound)
	f.window.AddChunk(cs[1])
	f.window.AddChunk(cs[2])

	rec := f.do(http.MethodGet, "/live/cam1/5.ts")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, ContentTypeSegment, rec.Header().Get("Content-Type"))
	require.Equal(t, CacheImmutable, rec.Header().Get("Cache-Control"))
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))
	require.Equal(t, "327", rec.Header().Get("Content-Length"))
	require.Equal(t, s.bytes(), rec.Body.Bytes())

	head := f.do(http.MethodHead, "/live/cam1/5.ts")
	require.Equal(t, http.StatusOK, head.Code)
	require.Equal(t, "327", head.Header().Get("Content-Length"))
	require.Empty(t, head.Body.Bytes())

	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/6.ts"), http.StatusNotFound)
	requireJSONError(t, f.do(http.MethodGet, "/live/nope/5.ts"), http.StatusNotFound)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/x5.ts"), http.StatusBadRequest)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/-1.ts"), http.StatusBadRequest)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/99999999999999999999999.ts"), http.StatusBadRequest)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5.mkv"), http.StatusNotFound)
	// These bytes are no MPEG-TS: the fMP4 variant of the segment cannot be derived.
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5.mp4"), http.StatusInternalServerError)
	require.Equal(t, []served{{testStream, KindSegment, 327}, {testStream, KindSegment, 0}}, f.served)
}

func TestServerChunk(t *testing.T) {
	f := newServerFixture(t)
	cs := spec(5).chunks()
	f.window.AddChunk(cs[2]) // chunks are served before their segment is complete

	rec := f.do(http.MethodGet, "/live/cam1/5/2.chunk")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, ContentTypeChunk, rec.Header().Get("Content-Type"))
	require.Equal(t, CacheImmutable, rec.Header().Get("Cache-Control"))
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))
	require.Equal(t, cs[2].Append(nil), rec.Body.Bytes())
	got, n, err := proto.ParseChunk(rec.Body.Bytes())
	require.NoError(t, err)
	require.Equal(t, rec.Body.Len(), n)
	require.Equal(t, cs[2].ID, got.ID)
	require.Equal(t, cs[2].Data, got.Data)

	head := f.do(http.MethodHead, "/live/cam1/5/2.chunk")
	require.Equal(t, http.StatusOK, head.Code)
	require.Empty(t, head.Body.Bytes())

	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5/0.chunk"), http.StatusNotFound)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/6/2.chunk"), http.StatusNotFound)
	requireJSONError(t, f.do(http.MethodGet, "/live/nope/5/2.chunk"), http.StatusNotFound)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5/2.bin"), http.StatusNotFound)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/five/2.chunk"), http.StatusBadRequest)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5/x.chunk"), http.StatusBadRequest)
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5/4294967296.chunk"), http.StatusBadRequest)
	require.Equal(t, []served{{testStream, KindChunk, len(cs[2].Append(nil))}, {testStream, KindChunk, 0}}, f.served)
}

func TestServerChunkFrames(t *testing.T) {
	f := newServerFixture(t)
	s := spec(5, 300, 20, 7)
	cs := s.chunks()
	f.window.AddChunk(cs[2])
	f.window.AddChunk(cs[0])
	// A segment in progress has no bundle: the peer asks for its chunks one by one.
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/5/all.chunks"), http.StatusNotFound)
	f.window.AddChunk(cs[1])

	rec := f.do(http.MethodGet, "/live/cam1/5/all.chunks")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, CacheImmutable, rec.Header().Get("Cache-Control"))
	// The frames in index order, whatever order the chunks arrived in, each parseable in turn.
	body := rec.Body.Bytes()
	var want []byte
	for _, c := range cs {
		want = c.Append(want)
	}
	require.Equal(t, want, body)
	for i := 0; len(body) > 0; i++ {
		got, n, err := proto.ParseChunk(body)
		require.NoError(t, err)
		require.Equal(t, cs[i].ID, got.ID)
		body = body[n:]
	}
	requireJSONError(t, f.do(http.MethodGet, "/live/cam1/6/all.chunks"), http.StatusNotFound)
	require.Equal(t, []served{{testStream, KindChunk, len(want)}}, f.served)
}

func TestServerNilLookupIsNotFound(t *testing.T) {
	e := echo.New()
	NewServer(nil, ServerOptions{}).Register(e)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/cam1/index.m3u8", nil))
	requireJSONError(t, rec, http.StatusNotFound)
}

// TestPlaylistRequestWaitsForTheFirstSegment pins WaitForFirst: a player that asks a peer which has
// just started is answered with the first playlist as soon as it exists, not with a 404 that
// makes ffplay or VLC give up; without a segment in time it still gets a 404.
func TestPlaylistRequestWaitsForTheFirstSegment(t *testing.T) {
	w := testWindow(3, 5)
	e := echo.New()
	NewServer(func(string) (*Window, bool) { return w, true }, ServerOptions{WaitForFirst: 5 * time.Second}).Register(e)

	got := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/index.m3u8", nil))
		got <- rec
	}()
	select {
	case rec := <-got:
		t.Fatalf("answered before any segment was complete: %d %s", rec.Code, rec.Body.String())
	case <-time.After(100 * time.Millisecond):
	}
	addAll(t, w, spec(7, 100, 50))
	rec := <-got
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "7.ts")

	empty := testWindow(3, 5)
	e2 := echo.New()
	NewServer(func(string) (*Window, bool) { return empty, true }, ServerOptions{WaitForFirst: 50 * time.Millisecond}).Register(e2)
	rec2 := httptest.NewRecorder()
	e2.ServeHTTP(rec2, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/index.m3u8", nil))
	requireJSONError(t, rec2, http.StatusNotFound)
}

func TestFirstPlaylistWaitsForTheStartSegments(t *testing.T) {
	w := testWindow(3, 5)
	e := echo.New()
	NewServer(func(string) (*Window, bool) { return w, true },
		ServerOptions{WaitForFirst: 5 * time.Second, StartSegments: 2, StartWait: 5 * time.Second}).Register(e)
	get := func() <-chan *httptest.ResponseRecorder {
		got := make(chan *httptest.ResponseRecorder, 1)
		go func() {
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/index.m3u8", nil))
			got <- rec
		}()
		return got
	}
	got := get()
	// The later segment completes first (fetched in parallel); the earlier one must still lead
	// the first playlist, so the player starts with both.
	addAll(t, w, spec(8, 100, 50))
	select {
	case rec := <-got:
		t.Fatalf("answered with one segment: %s", rec.Body.String())
	case <-time.After(100 * time.Millisecond):
	}
	addAll(t, w, spec(7, 100, 50))
	rec := <-got
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "7.ts")
	require.Contains(t, rec.Body.String(), "8.ts")

	// Once started, a playlist is answered at once.
	select {
	case rec := <-get():
		require.Equal(t, http.StatusOK, rec.Code)
	case <-time.After(time.Second):
		t.Fatal("a later playlist request waited")
	}
}

func TestFirstPlaylistSettlesForOneSegmentAfterStartWait(t *testing.T) {
	w := testWindow(3, 5)
	e := echo.New()
	NewServer(func(string) (*Window, bool) { return w, true },
		ServerOptions{WaitForFirst: 5 * time.Second, StartSegments: 2, StartWait: 150 * time.Millisecond}).Register(e)
	addAll(t, w, spec(7, 100, 50))
	start := time.Now()
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/index.m3u8", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "7.ts")
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "it waited for a second segment first")
}

func TestOnSegmentReportsEverySegmentAPlayerTook(t *testing.T) {
	w := testWindow(3, 5)
	sp := spec(7, 100, 50)
	addAll(t, w, sp)
	type took struct {
		seq uint64
		dur time.Duration
	}
	var got []took
	e := echo.New()
	NewServer(func(string) (*Window, bool) { return w, true }, ServerOptions{
		OnSegment: func(_ string, seq uint64, meta SegmentMeta) { got = append(got, took{seq, meta.Duration}) },
	}).Register(e)
	for _, m := range []string{http.MethodHead, http.MethodGet} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(m, "/live/"+testStream+"/7.ts", nil))
		require.Equal(t, http.StatusOK, rec.Code)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/8.ts", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
	_, meta, _ := w.Segment(7)
	require.Equal(t, []took{{7, meta.Duration}}, got, "one GET of a segment held; HEAD and misses do not count")
	require.Positive(t, meta.Duration)
}

// TestCORSLetsWebPlayersOnOtherSitesRead pins issue 11: hls.js on another site reads the
// playlist, segments and chunks of an origin or of a viewer's local peer (both mount this
// server): simple requests are readable, preflights are answered, and no response varies by
// Origin (a CDN keeps one copy of each immutable segment).
func TestCORSLetsWebPlayersOnOtherSitesRead(t *testing.T) {
	f := newServerFixture(t)
	addAll(t, f.window, spec(5))
	for _, tc := range []struct {
		name, method, path string
		preflightHeaders   string // Access-Control-Request-Headers, for OPTIONS
		wantCode           int
	}{
		{"playlist", http.MethodGet, "/live/cam1/index.m3u8", "", http.StatusOK},
		{"playlist HEAD", http.MethodHead, "/live/cam1/index.m3u8", "", http.StatusOK},
		{"segment", http.MethodGet, "/live/cam1/5.ts", "", http.StatusOK},
		{"chunk", http.MethodGet, "/live/cam1/5/0.chunk", "", http.StatusOK},
		{"chunk bundle", http.MethodGet, "/live/cam1/5/all.chunks", "", http.StatusOK},
		{"missing segment: the error is readable too", http.MethodGet, "/live/cam1/9.ts", "", http.StatusNotFound},
		{"preflight for the playlist", http.MethodOptions, "/live/cam1/index.m3u8", "", http.StatusNoContent},
		{"preflight for a ranged segment request", http.MethodOptions, "/live/cam1/5.ts", "range", http.StatusNoContent},
		{"preflight for a chunk", http.MethodOptions, "/live/cam1/5/0.chunk", "", http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.served)
			req := httptest.NewRequest(tc.method, tc.path, nil)
			req.Header.Set("Origin", "https://player.example")
			if tc.method == http.MethodOptions {
				req.Header.Set("Access-Control-Request-Method", http.MethodGet)
				if tc.preflightHeaders != "" {
					req.Header.Set("Access-Control-Request-Headers", tc.preflightHeaders)
				}
			}
			rec := httptest.NewRecorder()
			f.e.ServeHTTP(rec, req)
			require.Equal(t, tc.wantCode, rec.Code, rec.Body.String())
			h := rec.Header()
			require.Equal(t, "*", h.Get("Access-Control-Allow-Origin"))
			require.NotContains(t, h.Values("Vary"), "Origin")
			if tc.method != http.MethodOptions {
				require.Equal(t, "Content-Length, Date, Age", h.Get("Access-Control-Expose-Headers"))
				return
			}
			require.Equal(t, "GET, HEAD, OPTIONS", h.Get("Access-Control-Allow-Methods"))
			require.Equal(t, "86400", h.Get("Access-Control-Max-Age"))
			require.Equal(t, tc.preflightHeaders, h.Get("Access-Control-Allow-Headers"))
			require.Empty(t, rec.Body.Bytes())
			require.Len(t, f.served, before, "a preflight serves nothing")
		})
	}
}

// While NotReady gives a reason, a playlist the window cannot answer is a 503 with that reason
// and Retry-After at once; without one the first playlist waits as before; once segments exist
// the reason is not asked.
func TestNotReadyReasonAnswersThePlaylistWith503AndRetryAfter(t *testing.T) {
	w := testWindow(3, 5)
	var mu sync.Mutex
	reason := "stream unknown at the tracker"
	e := echo.New()
	NewServer(func(string) (*Window, bool) { return w, true }, ServerOptions{
		WaitForFirst: 50 * time.Millisecond,
		NotReady: func(stream string) (string, time.Duration) {
			require.Equal(t, testStream, stream)
			mu.Lock()
			defer mu.Unlock()
			return reason, 2500 * time.Millisecond
		},
	}).Register(e)
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/index.m3u8", nil))
		return rec
	}

	rec := get()
	requireJSONError(t, rec, http.StatusServiceUnavailable)
	require.Contains(t, rec.Body.String(), "stream unknown at the tracker")
	require.Equal(t, "3", rec.Header().Get("Retry-After"), "whole seconds, rounded up")
	require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"), "a browser player can read the reason")

	mu.Lock()
	reason = ""
	mu.Unlock()
	requireJSONError(t, get(), http.StatusNotFound) // nothing to say: the old answer after the wait

	mu.Lock()
	reason = "still a reason"
	mu.Unlock()
	addAll(t, w, spec(7, 100, 50))
	rec = get()
	require.Equal(t, http.StatusOK, rec.Code, "a window with segments plays whatever the reason")
}
