package player

import (
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// The low-latency tests run in synctest bubbles against llStream over an in-memory transport:
// the clock is fake and moves only when every goroutine waits, so the player's figures come
// out exact (to the millisecond of EXT-X-PROGRAM-DATE-TIME) whatever the machine's load, and a
// 10 s run takes no wall time. A bubble also fails the test if Run leaves a goroutine behind.

// llNet is the network delay the tests give every response: startup is three responses
// (playlist, init segment, first part) and every part arrives this long after it exists.
const llNet = 20 * time.Millisecond

func TestLowLatencyJoinsAtPartHoldBackFromAnIndependentPart(t *testing.T) {
	for _, tc := range []struct {
		name             string
		independentEvery int
		// wantStart is the first part played, counted back from the first playlist's end.
		wantBack int
	}{
		// Every part starts with an IDR: exactly PART-HOLD-BACK (3 parts) behind the end.
		{name: "every part independent", independentEvery: 1, wantBack: llHoldBackParts},
		// IDRs at segment starts only: back from the hold-back point (part 2 of segment 3) to
		// the segment's first part.
		{name: "independent at segment starts", independentEvery: llPartsPerSeg, wantBack: llPartsPerSeg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newLLStream(t)
				s.independentEvery = tc.independentEvery
				s.delay = llNet
				end := time.Now().Add(10 * time.Second)
				var statuses []Status // OnStatus runs on the player's goroutine
				sum := playLL(t, s, 10*time.Second, Config{OnStatus: func(st Status) { statuses = append(statuses, st) }})
				t.Logf("summary: %+v", sum)

				require.Equal(t, ModeLowLatency, sum.Mode)
				require.Zero(t, sum.Errors, sum.ErrorMessages)
				served := s.served()
				require.NotEmpty(t, served)
				start := llPrefillParts - tc.wantBack
				require.Equal(t, start, served[0], "first part played")
				for i, k := range served {
					require.Equal(t, start+i, k, "parts are fetched in order, each once")
				}

				// Startup: playlist, init segment and the parts up to the one holding the
				// PART-HOLD-BACK point, one network delay each: a player decodes from the
				// independent part but presents from the hold-back point, as hls.js does.
				decodedOnly := tc.wantBack - llHoldBackParts
				startup := time.Duration(3+decodedOnly) * llNet
				require.InDelta(t, ms(startup), sum.StartupMs, 0.001)
				_, _, _, inits, segments := s.requests()
				require.Equal(t, 1, inits, "the init segment is fetched once")
				require.Zero(t, segments, "a player at the live edge fetches parts, not segments")

				// Live latency: playback starts at the hold-back point when the part holding it
				// arrives: PART-HOLD-BACK plus startup behind live; every later part arrives a
				// network delay after it exists, long before the playhead needs it, so the
				// latency never changes and nothing stalls.
				require.Equal(t, s.arrival(start).Sub(s.pdt(start)), time.Duration(tc.wantBack)*llPartDur+3*llNet)
				want := ms(llHoldBackParts*llPartDur + startup)
				require.Zero(t, sum.Stalls)
				require.Positive(t, sum.LiveLatencyMs.Samples)
				require.InDelta(t, want, sum.LiveLatencyMs.P50, 0.001)
				require.InDelta(t, want, sum.LiveLatencyMs.P95, 0.001)
				// The parts decoded before the hold-back point may report "starting" (the first
				// status comes with the first part); every later status is "playing".
				for len(statuses) > 0 && statuses[0].State == "starting" && decodedOnly > 0 {
					statuses = statuses[1:]
					decodedOnly--
				}
				require.GreaterOrEqual(t, len(statuses), 9, "about once a second")
				for i, st := range statuses {
					require.Equal(t, "playing", st.State)
					require.True(t, st.HasLatency)
					require.InDelta(t, want, st.LatencyMs, 0.001)
					if i > 0 {
						require.Greater(t, st.Parts, statuses[i-1].Parts)
					}
				}

				// Parts: everything from the start part on that had arrived when the run ended;
				// all but the ones already listed when the player joined came through preload
				// hints.
				require.Equal(t, len(served), sum.Parts)
				require.Equal(t, s.published(end.Add(-llNet))-start, sum.Parts)
				require.Equal(t, sum.Parts-tc.wantBack, sum.PreloadedParts)
			})
		})
	}
}

func TestLowLatencyWaitsWithBlockingReloadsInsteadOfPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newLLStream(t)
		s.delay = llNet
		joined := time.Now()
		sum := playLL(t, s, 10*time.Second, Config{})
		require.Zero(t, sum.Errors, sum.ErrorMessages)

		// One playlist load to join, then one blocking reload per part published while the
		// player played (the last may still be waiting when the run ends): never a reload
		// the server could answer at once.
		appeared := s.published(time.Now()) - s.published(joined)
		playlists, blocking, notWaited, _, _ := s.requests()
		t.Logf("%d parts appeared; %d playlist requests, %d blocking", appeared, playlists, blocking)
		require.Equal(t, playlists-1, blocking, "every reload is a blocking one")
		require.Zero(t, notWaited, "no blocking reload asks for a part already published")
		require.GreaterOrEqual(t, blocking, appeared)
		require.LessOrEqual(t, blocking, appeared+1)
		require.Equal(t, playlists, sum.PlaylistLoads+1, "the reload under way when the run ended is not a load")
	})
}

func TestLowLatencyPollsEveryPartTargetWhenTheServerCannotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newLLStream(t)
		s.noBlocking = true
		sum := playLL(t, s, 10*time.Second, Config{})
		require.Zero(t, sum.Errors, sum.ErrorMessages)
		require.Equal(t, ModeLowLatency, sum.Mode)
		playlists, blocking, _, _, _ := s.requests()
		require.Zero(t, blocking)
		// A reload every part target over 10 s, and not more often.
		require.InDelta(t, int(10*time.Second/llPartDur), playlists, 2)
		require.Zero(t, sum.Stalls)
	})
}

func TestLowLatencyServerThatStopsPublishingIsOneStall(t *testing.T) {
	for _, tc := range []struct {
		name string
		hold time.Duration
		// wantErrors: the server gives up holding a blocking reload after three target
		// durations (503), which the player counts as a failed playlist load.
		wantErrors int
	}{
		{name: "shorter than the server's blocking timeout", hold: 2500 * time.Millisecond, wantErrors: 0},
		{name: "longer than the server's blocking timeout", hold: 6 * time.Second, wantErrors: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newLLStream(t)
				s.delay = llNet
				joined := time.Now()
				s.holdFrom = joined.Add(2 * time.Second)
				s.holdUntil = s.holdFrom.Add(tc.hold)
				var last Status // OnStatus runs on the player's goroutine
				sum := playLL(t, s, 10*time.Second, Config{OnStatus: func(st Status) { last = st }})
				t.Logf("summary: %+v", sum)

				require.Equal(t, tc.wantErrors, sum.Errors, sum.ErrorMessages)
				require.Equal(t, tc.wantErrors, sum.FetchErrors, sum.ErrorMessages)
				for _, m := range sum.ErrorMessages {
					require.Contains(t, m, "503")
				}

				// The playhead runs at 1x from the first part's arrival, so it reaches the end
				// of the last part published before the hold that many parts later; the stall
				// ends when the first held part arrives: the preload-hinted request gets it the
				// moment it is published. After a hold longer than the server keeps parts listed
				// (three segments), the playlist that ends the stall no longer lists it, and the
				// player plays on from the whole segment, one round trip later.
				first := s.served()[0]
				lastBefore := s.published(s.holdFrom.Add(-time.Nanosecond)) - 1
				dry := s.arrival(first).Add(time.Duration(lastBefore+1-first) * llPartDur)
				resumed := s.arrival(lastBefore + 1)
				if tc.hold < llPartWindowSegs*llPartsPerSeg*llPartDur {
					require.Equal(t, s.holdUntil.Add(llNet), resumed, "the held part arrives the moment it is published")
				} else {
					resumed = s.segmentArrival((lastBefore + 1) / llPartsPerSeg)
					require.Equal(t, s.holdUntil.Add(2*llNet), resumed)
				}
				want := ms(resumed.Sub(dry))
				require.Greater(t, want, 1000.0, "the hold must outlast the buffer")
				require.Equal(t, 1, sum.Stalls)
				require.InDelta(t, want, sum.MaxStallMs, 0.001)
				require.InDelta(t, want, sum.StallMs, 0.001)

				// The stall adds its length to the live latency; after it the player plays at
				// llCatchUpRate until it is back within a part of PART-HOLD-BACK, so the
				// latency is never above before+want and, by the end of the short hold's run,
				// back to where it was (within the part of slack).
				before := ms(s.arrival(first).Sub(s.pdt(first)))
				require.LessOrEqual(t, sum.LiveLatencyMs.P95, before+want+0.001)
				require.Greater(t, sum.LiveLatencyMs.P95, before+0.001, "the stall shows in the latency")
				if tc.wantErrors == 0 {
					require.True(t, last.HasLatency)
					require.InDelta(t, before+ms(llPartDur)/2, last.LatencyMs, ms(llPartDur)/2+0.001, "caught up")
				}
			})
		})
	}
}

func TestLowLatencyCorruptPartIsAParseError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newLLStream(t)
		bad := llPrefillParts + 5
		s.corrupt = map[int]bool{bad: true}
		sum := playLL(t, s, 5*time.Second, Config{})
		require.Equal(t, 1, sum.ParseErrors, sum.ErrorMessages)
		require.Equal(t, 1, sum.Errors, sum.ErrorMessages)
		require.Contains(t, sum.ErrorMessages[0], ErrFMP4Parse.Error())
		require.Contains(t, sum.ErrorMessages[0], "part 5.0")
		require.Greater(t, s.served()[len(s.served())-1], bad, "the player plays on past it")
	})
}

func TestLowLatencyPlaylistPlayedAsPlainHLSWithNoLowLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newLLStream(t)
		s.delay = llNet
		sum := playLL(t, s, 10*time.Second, Config{NoLowLatency: true})
		t.Logf("summary: %+v", sum)
		require.Equal(t, ModeHLS, sum.Mode)
		require.Zero(t, sum.Errors, sum.ErrorMessages)
		require.Zero(t, sum.Parts)
		require.Empty(t, s.served(), "whole segments only")
		playlists, blocking, _, inits, segments := s.requests()
		require.Zero(t, blocking)
		require.Equal(t, 1, inits, "the init segment is fetched once")
		require.Equal(t, sum.Segments, segments)
		// Reloads every target duration (1 s) while the playlist changes.
		require.InDelta(t, 10, playlists, 2)

		// Three target durations behind the end of the first playlist (segments 0-3 complete:
		// segment 1), plus startup (playlist, init, segment).
		require.InDelta(t, ms(3*time.Second+3*llNet), sum.LiveLatencyMs.P50, 0.001)
		require.InDelta(t, ms(3*time.Second+3*llNet), sum.LiveLatencyMs.P95, 0.001)
		require.Zero(t, sum.Stalls)
	})
}

// Over real sockets and the real clock: what the synctest runs prove holds on a real network
// stack, with bounds loose enough for a loaded machine.
func TestLowLatencyOverRealHTTP(t *testing.T) {
	t.Parallel()
	s := newLLStream(t)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	p, err := New(Config{URL: srv.URL + "/live/test/ll.m3u8", Duration: 3 * time.Second})
	require.NoError(t, err)
	require.NoError(t, p.Run(t.Context()))
	sum := p.Summary()
	t.Logf("summary: %+v", sum)
	require.Equal(t, ModeLowLatency, sum.Mode)
	require.Zero(t, sum.Errors, sum.ErrorMessages)
	require.Greater(t, sum.Parts, 5)
	require.Positive(t, sum.PreloadedParts)
	// A part cannot arrive before it exists, so latency is at least PART-HOLD-BACK (less the
	// millisecond of date-time precision); the slack above is for a loaded machine.
	hold := ms(llHoldBackParts * llPartDur)
	require.GreaterOrEqual(t, sum.LiveLatencyMs.P50, hold-1)
	require.Less(t, sum.LiveLatencyMs.P95, hold+1000+sum.StallMs)
}

func TestLowLatencyTimestampRestart(t *testing.T) {
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
			synctest.Test(t, func(t *testing.T) {
				s := newLLStream(t)
				s.restartSeg = llPrefillParts/llPartsPerSeg + 2 // published 2 s after the player joins
				s.tagRestart = tc.tagged
				sum := playLL(t, s, 5*time.Second, Config{})
				require.Greater(t, s.served()[len(s.served())-1], s.restartSeg*llPartsPerSeg, "played past the restart")
				require.Equal(t, tc.wantErrors, sum.Errors, sum.ErrorMessages)
				require.Equal(t, tc.wantErrors, sum.TimestampErrors, sum.ErrorMessages)
				require.Equal(t, tc.wantDisc, sum.Discontinuities)
				if tc.wantErrors > 0 {
					require.Contains(t, sum.ErrorMessages[0], ErrTimestampBack.Error())
				}
			})
		})
	}
}
