package player

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/stretchr/testify/require"
)

// The test server plays a live encoder whose output is known in advance: segment n holds media
// [n*D, (n+1)*D), its capture started at base + n*D and it becomes available when its capture
// ends, at base + (n+1)*D. The first `prefill` segments are available at once, so a player can
// join three target durations behind the edge straight away. Tests then bend the schedule
// (hold output back, renumber, restart timestamps) and compare what the player measured with
// what the server did.

const (
	testSegDur         = 500 * time.Millisecond
	testTargetDuration = 1 // seconds; EXT-X-TARGETDURATION is an integer
	testPrefill        = 8 // 4 s of media ready when the player joins
	testWindow         = 20
	testFramesPerSeg   = 5
	testFrameTicks     = 90000 * int64(testSegDur/time.Millisecond) / 1000 / testFramesPerSeg
)

type testStream struct {
	t    testing.TB
	srv  *httptest.Server
	base time.Time // capture start of segment 0

	// Knobs, set before the player starts.
	pdtOffset     time.Duration                     // added to every date-time (negative: encoder delay)
	holdFrom      time.Time                         // output held back from holdFrom ...
	holdUntil     time.Time                         // ... until holdUntil, then the backlog is released
	seqOffset     func(now time.Time) int64         // renumbering of the media sequence at a given time
	playlistDelay time.Duration                     // before answering a playlist request
	firstSegDelay time.Duration                     // before answering the first segment request
	restartAt     int                               // segment index where timestamps restart (0: never)
	tagRestart    bool                              // put EXT-X-DISCONTINUITY on restartAt
	corrupt       map[int]bool                      // segment indexes served as garbage
	segmentHook   func(index int, before time.Time) // called before a segment is written
	endList       bool                              // a closed playlist: the prefill only, then EXT-X-ENDLIST

	mu                sync.Mutex
	firstPlaylistAt   time.Time
	lastPlaylistAt    time.Time
	firstSegmentIndex int
	firstSegmentAt    time.Time // just before the first segment's bytes were written
	segmentsServed    int
}

func newTestStream(t testing.TB) *testStream {
	s := &testStream{
		t:                 t,
		base:              time.Now().Add(-testPrefill * testSegDur),
		firstSegmentIndex: -1,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *testStream) url() string { return s.srv.URL + "/live/test/index.m3u8" }

// availableAt is when segment index n appears in the playlist.
func (s *testStream) availableAt(n int) time.Time {
	at := s.base.Add(time.Duration(n+1) * testSegDur)
	if n < testPrefill {
		at = s.base.Add(testPrefill * testSegDur)
	}
	if !s.holdFrom.IsZero() && !at.Before(s.holdFrom) && at.Before(s.holdUntil) {
		at = s.holdUntil
	}
	return at
}

// available is the number of segments published at now.
func (s *testStream) available(now time.Time) int {
	if s.endList {
		return testPrefill
	}
	n := 0
	for !s.availableAt(n).After(now) {
		n++
	}
	return n
}

// pdt is the EXT-X-PROGRAM-DATE-TIME of segment n, as the playlist writes it (ms precision).
func (s *testStream) pdt(n int) time.Time {
	return s.base.Add(time.Duration(n)*testSegDur + s.pdtOffset).Round(0).Truncate(time.Millisecond)
}

func (s *testStream) offset(now time.Time) int64 {
	if s.seqOffset == nil {
		return 0
	}
	return s.seqOffset(now)
}

func (s *testStream) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	switch {
	case strings.HasSuffix(r.URL.Path, "/index.m3u8"):
		s.mu.Lock()
		if s.firstPlaylistAt.IsZero() {
			s.firstPlaylistAt = now
		}
		s.lastPlaylistAt = now
		s.mu.Unlock()
		time.Sleep(s.playlistDelay)
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		_, _ = w.Write([]byte(s.playlist(now)))
	case strings.HasSuffix(r.URL.Path, ".ts"):
		name := strings.TrimSuffix(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:], ".ts")
		n, err := strconv.Atoi(strings.TrimPrefix(name, "seg"))
		if err != nil || n < 0 || n >= s.available(time.Now()) {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		first := s.firstSegmentIndex < 0
		if first {
			s.firstSegmentIndex = n
		}
		s.mu.Unlock()
		if first {
			time.Sleep(s.firstSegDelay)
		}
		data := s.segment(n)
		before := time.Now()
		s.mu.Lock()
		if first {
			s.firstSegmentAt = before
		}
		s.segmentsServed++
		s.mu.Unlock()
		if s.segmentHook != nil {
			s.segmentHook(n, before)
		}
		w.Header().Set("Content-Type", "video/mp2t")
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		_, _ = w.Write(data)
	default:
		http.NotFound(w, r)
	}
}

// playlist is the live media playlist at now: the last testWindow published segments.
func (s *testStream) playlist(now time.Time) string {
	avail := s.available(now)
	first := max(0, avail-testWindow)
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n", testTargetDuration)
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", int64(first)+s.offset(now))
	for n := first; n < avail; n++ {
		if s.tagRestart && n == s.restartAt && s.restartAt > 0 {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", s.pdt(n).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
		fmt.Fprintf(&b, "#EXTINF:%.3f,\nseg%d.ts\n", testSegDur.Seconds(), n)
	}
	if s.endList {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return b.String()
}

// segment is segment n as MPEG-TS: one H.264 track, an IDR then non-IDR frames, DTS running on
// from segment to segment (or restarting at restartAt). Every segment has the same size.
func (s *testStream) segment(n int) []byte {
	if s.corrupt[n] {
		return bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 940)
	}
	return makeSegment(s.t, s.firstDTS(n))
}

func (s *testStream) firstDTS(n int) int64 {
	const clockStart = 10 * 90000
	if s.restartAt > 0 && n >= s.restartAt {
		return clockStart + int64(n-s.restartAt)*testFramesPerSeg*testFrameTicks
	}
	// Far ahead of the restarted clock, so a restart is a real jump back.
	return 1000*90000 + int64(n)*testFramesPerSeg*testFrameTicks
}

func makeSegment(t testing.TB, firstDTS int64) []byte {
	var buf bytes.Buffer
	w := &mpegts.Writer{W: &buf, Tracks: []*mpegts.Track{{Codec: &codecs.H264{}}}}
	require.NoError(t, w.Initialize())
	payload := bytes.Repeat([]byte{0xab}, 1500)
	for i := range int64(testFramesPerSeg) {
		nalType := byte(1) // non-IDR slice
		if i == 0 {
			nalType = 5 // IDR: the segment starts with a random access point
		}
		au := [][]byte{append([]byte{nalType}, payload...)}
		dts := firstDTS + i*testFrameTicks
		require.NoError(t, w.WriteH264(w.Tracks[0], dts+2*testFrameTicks, dts, au))
	}
	return buf.Bytes()
}

func (s *testStream) firstSegment() (index int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstSegmentIndex, s.firstSegmentAt
}

func (s *testStream) lastPlaylist() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastPlaylistAt
}

func (s *testStream) firstPlaylist() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstPlaylistAt
}

// naturalIndexAt is the first segment whose capture ends at or after t, ignoring any hold.
func (s *testStream) naturalIndexAt(t time.Time) int {
	n := 0
	for s.base.Add(time.Duration(n+1) * testSegDur).Before(t) {
		n++
	}
	return n
}
