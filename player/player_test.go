package player

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// segmentsBehindEdge is where a player joins: 3 target durations of 0.5 s segments.
const segmentsBehindEdge = 3 * testTargetDuration * int(time.Second/testSegDur)

func msBetween(a, b time.Time) float64 { return ms(b.Sub(a)) }

// runPlayer plays s until stop returns true (checked on every segment the server writes) or
// until limit, and returns the summary.
func runPlayer(t *testing.T, s *testStream, limit time.Duration, cfg Config) Summary {
	t.Helper()
	cfg.URL = s.url()
	p, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case err = <-done:
	case <-time.After(limit + 10*time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	require.NoError(t, err)
	sum := p.Summary()
	// Summary is frozen once Run returned.
	require.Equal(t, sum, p.Summary())
	return sum
}

func TestStartupAndLatencyMatchWhatTheServerDid(t *testing.T) {
	t.Parallel()
	s := newTestStream(t)
	s.playlistDelay = 200 * time.Millisecond
	s.firstSegDelay = 300 * time.Millisecond
	s.pdtOffset = -2 * time.Second // the encoder stamps media 2 s before it is published

	var mu sync.Mutex
	var statuses []Status
	p, err := New(Config{URL: s.url(), Duration: 3 * time.Second, OnStatus: func(st Status) {
		mu.Lock()
		statuses = append(statuses, st)
		mu.Unlock()
	}})
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, p.Run(t.Context()))
	require.Less(t, time.Since(start), 3*time.Second+2*time.Second, "Run must return when Duration elapses")
	sum := p.Summary()
	t.Logf("summary: %+v", sum)

	require.True(t, sum.Started)
	require.Zero(t, sum.Errors, sum.ErrorMessages)
	require.ErrorIs(t, p.Run(t.Context()), ErrRunTwice)

	// Startup: the player's first request cannot be after the server saw it, and the first
	// segment cannot have arrived before the server started writing it. So the server's figure
	// is a lower bound (and includes the 200 ms + 300 ms of delay); the slack on top is for
	// loopback delivery and scheduling on a loaded machine.
	firstIndex, firstAt := s.firstSegment()
	serverStartup := msBetween(s.firstPlaylist(), firstAt)
	require.GreaterOrEqual(t, serverStartup, 500.0)
	require.GreaterOrEqual(t, sum.StartupMs, serverStartup-1)
	require.Less(t, sum.StartupMs, serverStartup+1000)

	// Join point: three target durations behind the edge the first playlist showed.
	require.Equal(t, s.available(s.firstPlaylist())-segmentsBehindEdge, firstIndex)

	// Live latency: without stalls the playhead runs at 1x from the first segment's arrival, so
	// every sample is arrival time minus that segment's date-time. The server knows both up to
	// the delivery delay of one segment over loopback (lower bound exact, +750 ms slack).
	want := msBetween(s.pdt(firstIndex), firstAt)
	t.Logf("latency: want >= %.0f ms, startup lower bound %.0f ms", want, serverStartup)
	require.Greater(t, want, 5000.0, "2 s encoder delay + 3 s behind the edge")
	require.Positive(t, sum.LiveLatencyMs.Samples)
	require.GreaterOrEqual(t, sum.LiveLatencyMs.P50, want-2) // PDT has ms precision
	// A stall (only on a starved machine: 3 s are buffered) adds its length to later samples.
	require.Less(t, sum.LiveLatencyMs.P95, want+750+sum.StallMs)
	if sum.Stalls == 0 {
		require.InDelta(t, sum.LiveLatencyMs.P50, sum.LiveLatencyMs.P95, 5, "latency is constant while nothing stalls")
		require.Zero(t, sum.StallRatio)
	}

	// Bytes: every segment the server makes has the same size.
	require.GreaterOrEqual(t, sum.Segments, segmentsBehindEdge)
	require.Equal(t, int64(sum.Segments)*int64(len(s.segment(0))), sum.Bytes)
	require.InDelta(t, ms(time.Since(start))-sum.StartupMs, sum.WatchedMs, 1000)

	mu.Lock()
	defer mu.Unlock()
	// About once a second over a 3 s run; each one a plausible picture of the player.
	require.GreaterOrEqual(t, len(statuses), 2)
	for _, st := range statuses {
		require.Contains(t, []string{"playing", "stalled"}, st.State)
		require.True(t, st.HasLatency)
		require.GreaterOrEqual(t, st.LatencyMs, want-2)
		// Never more buffered than the 3 s it joined behind plus what was published since.
		require.LessOrEqual(t, st.BufferMs, 3000+ms(st.Time.Sub(firstAt))+1)
		require.Positive(t, st.Segments)
	}

	b, err := json.Marshal(sum)
	require.NoError(t, err)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(b, &fields))
	for _, k := range []string{"startup_ms", "stalls", "stall_ms", "live_latency_ms", "segments", "bytes", "errors", "error_messages", "stall_ratio", "watched_ms", "discontinuities"} {
		require.Contains(t, fields, k)
	}
	require.Contains(t, fields["live_latency_ms"], "p50")
	require.Contains(t, fields["live_latency_ms"], "p95")
}

func TestHeldBackOutputIsOneStallOfTheRightLength(t *testing.T) {
	t.Parallel()
	s := newTestStream(t)
	now := time.Now()
	s.holdFrom = now.Add(1500 * time.Millisecond)
	s.holdUntil = s.holdFrom.Add(4500 * time.Millisecond)

	sum := runPlayer(t, s, time.Until(s.holdUntil)+2500*time.Millisecond, Config{})

	require.Zero(t, sum.Errors, sum.ErrorMessages)

	// The playhead runs at 1x from the first segment's arrival, so it reaches the end of the
	// last segment published before the hold at firstAt + (held - first)*D; the stall ends when
	// the first held segment arrives, which is after holdUntil and at most half a target
	// duration later (the player reloads an unchanged playlist every TD/2), plus a fetch.
	// Tolerance: -100 ms because the player receives the first segment a little after the
	// server starts writing it (the stall starts that much later); +1000 ms = TD/2 + slack
	// for timers and fetches on a loaded machine under -race.
	firstIndex, firstAt := s.firstSegment()
	held := s.naturalIndexAt(s.holdFrom)
	stallStart := firstAt.Add(time.Duration(held-firstIndex) * testSegDur)
	want := msBetween(stallStart, s.holdUntil)
	t.Logf("stall: want %.0f ms, got %+v", want, sum)
	require.Greater(t, want, 1000.0, "the test must hold output longer than the buffer")
	require.GreaterOrEqual(t, sum.MaxStallMs, want-100)
	require.Less(t, sum.MaxStallMs, want+1000)
	require.InDelta(t, sum.StallMs/sum.WatchedMs, sum.StallRatio, 1e-9)

	// Count: the one stall the server caused. Right after playback starts the buffer holds a
	// single 0.5 s segment until the next ones arrive, so a scheduler hiccup of that size on a
	// starved machine is a genuine second stall; allow one such, short, and nothing more.
	require.GreaterOrEqual(t, sum.Stalls, 1)
	require.LessOrEqual(t, sum.Stalls, 2)
	require.Less(t, sum.StallMs-sum.MaxStallMs, 1000.0)

	// The stall adds its length to the live latency. Playback after the stall is more than 5 %
	// of the run, so p95 is a post-stall sample: first-segment latency plus the stall (the
	// first-segment figure is known to the server up to one loopback delivery).
	before := msBetween(s.pdt(firstIndex), firstAt)
	require.InDelta(t, before+sum.StallMs, sum.LiveLatencyMs.P95, 300)
}

func TestMediaSequenceJumps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		before, after int64
	}{
		{name: "forward past the player", before: 0, after: 40},
		{name: "back", before: 100, after: 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestStream(t)
			jumpAt := time.Now().Add(1500 * time.Millisecond)
			s.seqOffset = func(now time.Time) int64 {
				if now.Before(jumpAt) {
					return tc.before
				}
				return tc.after
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			// Stop once the player has asked for a segment after loading a renumbered playlist:
			// it has judged the new numbering by then.
			s.segmentHook = func(_ int, before time.Time) {
				if last := s.lastPlaylist(); !last.Before(jumpAt) && before.After(last) {
					cancel()
				}
			}
			p, err := New(Config{URL: s.url()})
			require.NoError(t, err)
			runDone := make(chan struct{})
			go func() { defer close(runDone); _ = p.Run(ctx) }()
			select {
			case <-runDone:
			case <-time.After(15 * time.Second):
				t.Fatal("player never fetched past the renumbering")
			}
			sum := p.Summary()
			require.Equal(t, 1, sum.SequenceErrors, sum.ErrorMessages)
			require.Equal(t, 1, sum.Errors, sum.ErrorMessages)
			require.Contains(t, sum.ErrorMessages[0], ErrSequenceJump.Error())
		})
	}
}

func TestTimestampRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		tagged     bool
		wantErrors int
		wantDisc   int
	}{
		{name: "after EXT-X-DISCONTINUITY is fine", tagged: true, wantErrors: 0, wantDisc: 1},
		{name: "without the tag is an error", tagged: false, wantErrors: 1, wantDisc: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestStream(t)
			s.restartAt = testPrefill + 3 // published about 1.5 s after the player joins
			s.tagRestart = tc.tagged
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			// The player checks a segment before it asks for the next one.
			s.segmentHook = func(n int, _ time.Time) {
				if n == s.restartAt+2 {
					cancel()
				}
			}
			p, err := New(Config{URL: s.url()})
			require.NoError(t, err)
			runDone := make(chan struct{})
			go func() { defer close(runDone); _ = p.Run(ctx) }()
			select {
			case <-runDone:
			case <-time.After(15 * time.Second):
				t.Fatal("player never fetched past the restart")
			}
			sum := p.Summary()
			require.Equal(t, tc.wantErrors, sum.Errors, sum.ErrorMessages)
			require.Equal(t, tc.wantErrors, sum.TimestampErrors, sum.ErrorMessages)
			require.Equal(t, tc.wantDisc, sum.Discontinuities)
			if tc.wantErrors > 0 {
				require.Contains(t, sum.ErrorMessages[0], ErrTimestampBack.Error())
			}
		})
	}
}

func TestSegmentThatIsNotMPEGTSIsAParseError(t *testing.T) {
	t.Parallel()
	s := newTestStream(t)
	bad := testPrefill + 1
	s.corrupt = map[int]bool{bad: true}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s.segmentHook = func(n int, _ time.Time) {
		if n == bad+1 {
			cancel()
		}
	}
	p, err := New(Config{URL: s.url()})
	require.NoError(t, err)
	require.NoError(t, p.Run(ctx))
	sum := p.Summary()
	require.Equal(t, 1, sum.ParseErrors, sum.ErrorMessages)
	require.Equal(t, 1, sum.Errors, sum.ErrorMessages)
	require.Contains(t, sum.ErrorMessages[0], ErrTSParse.Error())
}

func TestUnreachablePlaylistCountsErrorsAndStops(t *testing.T) {
	t.Parallel()
	s := newTestStream(t)
	p, err := New(Config{URL: s.srv.URL + "/nothing/here.m3u8", Duration: 1500 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, p.Run(t.Context()))
	sum := p.Summary()
	require.False(t, sum.Started)
	require.Zero(t, sum.StartupMs)
	require.GreaterOrEqual(t, sum.FetchErrors, 1)
	require.Contains(t, sum.ErrorMessages[0], "404")
}

func TestNewRejectsNonHTTPURL(t *testing.T) {
	_, err := New(Config{URL: "rtsp://127.0.0.1/live"})
	require.Error(t, err)
}

func TestClosedPlaylistPlaysFromTheStartToTheEndThenRunReturns(t *testing.T) {
	t.Parallel()
	s := newTestStream(t)
	s.endList = true
	p, err := New(Config{URL: s.url()})
	require.NoError(t, err)
	require.NoError(t, p.Run(t.Context())) // no Duration: returns when the show is over
	sum := p.Summary()
	require.Equal(t, testPrefill, sum.Segments)
	first, _ := s.firstSegment()
	require.Zero(t, first, "a closed playlist plays from its first segment")
	require.Zero(t, sum.Stalls, "running dry at the end of a closed playlist is no stall")
	require.InDelta(t, float64(testPrefill)*ms(testSegDur), sum.WatchedMs, 300)
	require.Equal(t, 1, sum.PlaylistLoads, "a closed playlist is not reloaded")
}

// Not parallel: it counts goroutines, so the other tests must be paused meanwhile.
func TestRunLeavesNothingRunning(t *testing.T) {
	s := newTestStream(t)
	tr := &http.Transport{}
	before := runtime.NumGoroutine()
	p, err := New(Config{URL: s.url(), Duration: 1500 * time.Millisecond, HTTPClient: &http.Client{Transport: tr}})
	require.NoError(t, err)
	require.NoError(t, p.Run(t.Context()))
	require.Positive(t, p.Summary().Segments)
	tr.CloseIdleConnections() // the client's pool is the caller's, not the player's
	s.srv.CloseClientConnections()
	if !assertEventuallyFewerGoroutines(before) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines left running: %d, was %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
	}
}

func assertEventuallyFewerGoroutines(limit int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if runtime.NumGoroutine() <= limit {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
