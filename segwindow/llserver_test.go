package segwindow

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// llFixture serves a window with complete segments 10..12 and the first two parts of 13, and
// holds the rest of segment 13's chunks to add one by one. Made inside a synctest bubble, its
// window's Changed channels and the server's timers belong to the bubble, so a test can tell
// exactly when a blocked request wakes.
type llFixture struct {
	e    *echo.Echo
	w    *Window
	srv  *Server
	rest []*proto.Chunk // segment 13 from the chunk after the end of its part 1
}

func newLLFixture(t *testing.T, lastFrames int, opts ServerOptions) *llFixture {
	t.Helper()
	f := &llFixture{e: echo.New(), w: llStream(t, 10, 13, 0, nil)}
	cs := llTestSegment(t, 13, lastFrames)
	ends := 0
	for i, c := range cs {
		f.w.AddChunk(c)
		if c.PartEnd() {
			if ends++; ends == 2 {
				f.rest = cs[i+1:]
				break
			}
		}
	}
	f.srv = NewServer(func(stream string) (*Window, bool) { return f.w, stream == testStream }, opts)
	f.srv.Register(f.e)
	return f
}

// start sends a request from its own goroutine; the answer arrives on the channel.
func (f *llFixture) start(path string) <-chan *httptest.ResponseRecorder {
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		done <- rec
	}()
	return done
}

// addUntilPartEnd adds the held chunks up to and including the next one that ends a part,
// checking after each earlier one that the waiting request still waits.
func (f *llFixture) addUntilPartEnd(t *testing.T, waiting <-chan *httptest.ResponseRecorder) {
	t.Helper()
	for len(f.rest) > 0 {
		c := f.rest[0]
		f.rest = f.rest[1:]
		f.w.AddChunk(c)
		if c.PartEnd() {
			return
		}
		synctest.Wait()
		require.Empty(t, waiting, "answered before the part's last chunk arrived (chunk %d)", c.ID.Index)
	}
}

func llPath(query string) string { return "/live/" + testStream + "/ll.m3u8" + query }

func TestBlockingReloadReturnsWhenThePartArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLLFixture(t, 50, ServerOptions{})
		done := f.start(llPath("?_HLS_msn=13&_HLS_part=2"))
		synctest.Wait()
		require.Empty(t, done, "part 13.2 is not there yet: the request waits")
		require.Equal(t, int64(1), f.srv.blocked.Load())

		f.addUntilPartEnd(t, done)
		synctest.Wait()
		require.Len(t, done, 1)
		rec := <-done
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		p := decodeLL(t, rec.Body.Bytes())
		require.Contains(t, partURIs(p), "13.2.mp4")
		require.Equal(t, "13.3.mp4", p.PreloadHints.URI)
		require.Equal(t, "public, max-age=12", rec.Header().Get("Cache-Control"))
		require.Zero(t, f.srv.blocked.Load())
	})
}

func TestBlockingReloadForAWholeSegmentWaitsForItsLastChunk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLLFixture(t, 12, ServerOptions{}) // segment 13: parts of 5, 5 and 2 frames
		done := f.start(llPath("?_HLS_msn=13"))
		f.addUntilPartEnd(t, done) // its last part: the segment completes
		synctest.Wait()
		rec := <-done
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, segmentURIs(decodeLL(t, rec.Body.Bytes())), "13.mp4")
	})
}

func TestBlockingReloadAnswersAtOnceWhenListed(t *testing.T) {
	f := newLLFixture(t, 50, ServerOptions{})
	for _, q := range []string{"", "?_HLS_msn=12", "?_HLS_msn=13&_HLS_part=1", "?_HLS_msn=12&_HLS_part=40", "?_HLS_msn=10&_HLS_part=0&_HLS_skip=YES"} {
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, llPath(q), nil))
		require.Equal(t, http.StatusOK, rec.Code, q)
		if q == "" {
			require.Equal(t, "no-cache", rec.Header().Get("Cache-Control"))
		}
	}
}

func TestBlockingReloadTimesOutAfterThreeTargetDurations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLLFixture(t, 50, ServerOptions{})
		done := f.start(llPath("?_HLS_msn=15&_HLS_part=0"))
		time.Sleep(6*time.Second - time.Millisecond)
		synctest.Wait()
		require.Empty(t, done)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		rec := <-done
		requireJSONError(t, rec, http.StatusServiceUnavailable)
		require.Equal(t, "1", rec.Header().Get("Retry-After"))
	})
}

func TestBlockingReloadRefusesBadRequests(t *testing.T) {
	f := newLLFixture(t, 50, ServerOptions{})
	for _, q := range []string{
		"?_HLS_msn=16",  // more than two segments past 13, the one in progress
		"?_HLS_part=1",  // a part without a segment
		"?_HLS_msn=abc", // not a number
		"?_HLS_msn=-1",  // not a segment number
		"?_HLS_msn=1&_HLS_msn=2",
		"?_HLS_msn=13&_HLS_part=99999999",
		"?_HLS_msn=99999999999999999999999",
	} {
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, llPath(q), nil))
		requireJSONError(t, rec, http.StatusBadRequest)
	}
	require.Zero(t, f.srv.blocked.Load())
}

func TestBlockingRequestsAreCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLLFixture(t, 50, ServerOptions{MaxBlocked: 1})
		first := f.start(llPath("?_HLS_msn=13&_HLS_part=2"))
		synctest.Wait()
		second := f.start("/live/" + testStream + "/13.2.mp4")
		synctest.Wait()
		rec := <-second
		requireJSONError(t, rec, http.StatusServiceUnavailable)
		require.Equal(t, "1", rec.Header().Get("Retry-After"))
		f.addUntilPartEnd(t, first)
		synctest.Wait()
		require.Equal(t, http.StatusOK, (<-first).Code)
	})
}

func TestPreloadHintedPartWaitsForItsChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLLFixture(t, 50, ServerOptions{})
		done := f.start("/live/" + testStream + "/13.2.mp4")
		synctest.Wait()
		require.Empty(t, done)
		f.addUntilPartEnd(t, done)
		synctest.Wait()
		rec := <-done
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, ContentTypeMP4, rec.Header().Get("Content-Type"))
		require.Equal(t, CacheImmutable, rec.Header().Get("Cache-Control"))
		want, err := f.w.Part(13, 2)
		require.NoError(t, err)
		require.Equal(t, want, rec.Body.Bytes())
	})
}

func TestPartBeyondTheEndOfItsSegmentIsNotFoundOnceItEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLLFixture(t, 12, ServerOptions{})            // segment 13 will have 3 parts
		done := f.start("/live/" + testStream + "/13.3.mp4") // the part after the hint
		synctest.Wait()
		require.Empty(t, done)
		f.addUntilPartEnd(t, done)
		synctest.Wait()
		requireJSONError(t, <-done, http.StatusNotFound)
	})
}

func TestPartsFarAheadAreNotWaitedFor(t *testing.T) {
	f := newLLFixture(t, 50, ServerOptions{})
	for _, path := range []string{"13.4.mp4", "14.1.mp4", "15.0.mp4", "2.0.mp4", "013.0.mp4", "13.00.mp4", "13.-1.mp4", "13..mp4", ".mp4"} {
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/"+path, nil))
		requireJSONError(t, rec, http.StatusNotFound)
	}
	require.Zero(t, f.srv.blocked.Load())
}

func TestServesInitSegmentsAndMaster(t *testing.T) {
	f := newLLFixture(t, 50, ServerOptions{})
	for _, tc := range []struct {
		file, contentType string
	}{
		{"init.mp4", ContentTypeMP4},
		{"12.mp4", ContentTypeMP4},
		{"12.3.mp4", ContentTypeMP4},
		{"master.m3u8", ContentTypePlaylist},
	} {
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/"+tc.file, nil))
		require.Equal(t, http.StatusOK, rec.Code, tc.file)
		require.Equal(t, tc.contentType, rec.Header().Get("Content-Type"), tc.file)
		require.Equal(t, "*", rec.Header().Get("Access-Control-Allow-Origin"))
		require.NotEmpty(t, rec.Body.Bytes())
	}
	requireJSONError(t, httpGet(f.e, "/live/"+testStream+"/13.mp4"), http.StatusNotFound) // in progress
	requireJSONError(t, httpGet(f.e, "/live/nope/ll.m3u8"), http.StatusNotFound)
}

func httpGet(e *echo.Echo, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestParseBlockQuery(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  blockRequest
		bad   bool
	}{
		{"", blockRequest{part: -1}, false},
		{"_HLS_msn=7", blockRequest{block: true, msn: 7, part: -1}, false},
		{"_HLS_msn=7&_HLS_part=0", blockRequest{block: true, msn: 7, part: 0}, false},
		{"_HLS_skip=YES&_HLS_msn=7&_HLS_part=3", blockRequest{block: true, msn: 7, part: 3}, false},
		{"_HLS_msn=18446744073709551615", blockRequest{block: true, msn: 1<<64 - 1, part: -1}, false},
		{"_HLS_part=3", blockRequest{}, true},
		{"_HLS_msn=", blockRequest{}, true},
		{"_HLS_msn=+7", blockRequest{}, true},
		{"_HLS_msn=7&_HLS_part=65536", blockRequest{}, true},
		{"_HLS_msn=7&_HLS_part=1&_HLS_part=2", blockRequest{}, true},
		{"_HLS_msn=18446744073709551616", blockRequest{}, true},
	} {
		q, err := url.ParseQuery(tc.query)
		require.NoError(t, err)
		got, err := parseBlockQuery(q)
		if tc.bad {
			require.ErrorIs(t, err, errBadQuery, tc.query)
			continue
		}
		require.NoError(t, err, tc.query)
		require.Equal(t, tc.want, got, tc.query)
	}
}

// A graceful HTTP shutdown waits for requests in flight: blocked ones must end at once.
func TestShutdownEndsBlockedRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newLLFixture(t, 50, ServerOptions{})
		reload := f.start(llPath("?_HLS_msn=13&_HLS_part=2"))
		part := f.start("/live/" + testStream + "/13.2.mp4")
		synctest.Wait()
		require.Empty(t, reload)
		require.Empty(t, part)
		f.srv.Shutdown()
		synctest.Wait()
		requireJSONError(t, <-reload, http.StatusServiceUnavailable)
		requireJSONError(t, <-part, http.StatusServiceUnavailable)
		f.srv.Shutdown() // twice is fine
	})
}

// TestWaitingRequestsSayWhatThePlayerWaitsFor: a blocking reload and a request for the
// preload-hinted part tell OnPartWait which part they wait for (a peer fetches that part from the
// CDN when the swarm is late); a request the window answers at once tells nothing.
func TestWaitingRequestsSayWhatThePlayerWaitsFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex // the waiting requests run in goroutines of their own
		var waits []PartWait
		seen := func() []PartWait {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(waits)
		}
		f := newLLFixture(t, 50, ServerOptions{OnPartWait: func(stream string, w PartWait) {
			require.Equal(t, testStream, stream)
			mu.Lock()
			defer mu.Unlock()
			waits = append(waits, w)
		}})
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, llPath("?_HLS_msn=13&_HLS_part=1"), nil))
		require.Equal(t, http.StatusOK, rec.Code)
		require.Empty(t, seen(), "part 13.1 is listed: nobody waits")

		reload := f.start(llPath("?_HLS_msn=13&_HLS_part=2"))
		hinted := f.start("/live/" + testStream + "/13.2.mp4")
		whole := f.start(llPath("?_HLS_msn=13"))
		synctest.Wait()
		require.ElementsMatch(t, []PartWait{
			{Seq: 13, Part: 2, PartTarget: 200 * time.Millisecond},
			{Seq: 13, Part: 2, PartTarget: 200 * time.Millisecond},
			{Seq: 13, Part: -1, PartTarget: 200 * time.Millisecond},
		}, seen())
		for len(f.rest) > 0 {
			f.addUntilPartEnd(t, whole)
		}
		synctest.Wait()
		for _, done := range []<-chan *httptest.ResponseRecorder{reload, hinted, whole} {
			require.Equal(t, http.StatusOK, (<-done).Code)
		}
	})
}
