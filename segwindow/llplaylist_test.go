package segwindow

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/labstack/echo/v5"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// llStream builds a window with complete segments from..to-1 (2 s each: 50 frames at 25 fps,
// parts of 5 frames) and the first chunks of segment `to` up to and including the end of its
// part `partsInProgress`-1 (none: no chunk of it at all).
func llStream(t *testing.T, from, to uint64, partsInProgress int, edit func(c *proto.Chunk)) *Window {
	t.Helper()
	w := testWindow(6, 10)
	for seq := from; seq < to; seq++ {
		for _, c := range llTestSegment(t, seq, 50) {
			if edit != nil {
				edit(c)
			}
			w.AddChunk(c)
		}
	}
	if partsInProgress > 0 {
		ends := 0
		for _, c := range llTestSegment(t, to, 50) {
			if edit != nil {
				edit(c)
			}
			w.AddChunk(c)
			if c.PartEnd() {
				if ends++; ends == partsInProgress {
					break
				}
			}
		}
	}
	return w
}

// decodeLL parses the LL playlist with hls-m3u8, as a Go player would.
func decodeLL(t *testing.T, body []byte) *m3u8.MediaPlaylist {
	t.Helper()
	p, kind, err := m3u8.DecodeFrom(bytes.NewReader(body), true)
	require.NoError(t, err, string(body))
	require.Equal(t, m3u8.MEDIA, kind)
	return p.(*m3u8.MediaPlaylist)
}

func partURIs(p *m3u8.MediaPlaylist) []string {
	var uris []string
	for _, ps := range p.PartialSegments {
		uris = append(uris, ps.URI)
	}
	return uris
}

func segmentURIs(p *m3u8.MediaPlaylist) []string {
	var uris []string
	for _, s := range p.GetAllSegments() {
		uris = append(uris, s.URI)
	}
	return uris
}

func partsOfSeg(seq string, n int) []string {
	var uris []string
	for i := range n {
		uris = append(uris, seq+"."+formatSeq(uint64(i))+".mp4")
	}
	return uris
}

func TestLLPlaylist(t *testing.T) {
	for _, tc := range []struct {
		name     string
		window   func(t *testing.T) *Window
		segments []string
		parts    []string
		hint     string // "" = none
		ended    bool
		contains []string // lines that must be in the text, in this order
		lacks    []string
	}{
		{
			name:     "the segment in progress lists its parts and hints at the next",
			window:   func(t *testing.T) *Window { return llStream(t, 10, 13, 2, nil) },
			segments: []string{"10.mp4", "11.mp4", "12.mp4"},
			// 13 has 0.4 s: 11 and 12 start within 3 target durations (6 s) of the end, 10 not.
			parts: append(append(partsOfSeg("11", 10), partsOfSeg("12", 10)...), "13.0.mp4", "13.1.mp4"),
			hint:  "13.2.mp4",
			contains: []string{
				`#EXT-X-PART:DURATION=0.200,URI="12.0.mp4",INDEPENDENT=YES`,
				`#EXT-X-PART:DURATION=0.200,URI="12.1.mp4"` + "\n",
				"#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:24.000Z\n#EXTINF:2.000,\n12.mp4",
				// dated where segment 12 ends, before its own date travels on its last chunk
				"#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:26.000Z",
				`#EXT-X-PART:DURATION=0.200,URI="13.0.mp4",INDEPENDENT=YES`,
				`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="13.2.mp4"`,
			},
		},
		{
			name:     "no chunk of the next segment yet: the hint is its first part",
			window:   func(t *testing.T) *Window { return llStream(t, 10, 13, 0, nil) },
			segments: []string{"10.mp4", "11.mp4", "12.mp4"},
			// 10 starts within 6 s of the end now, but it is the first: hls-m3u8 would refuse.
			parts: append(partsOfSeg("11", 10), partsOfSeg("12", 10)...),
			hint:  "13.0.mp4",
		},
		{
			name: "the stream ended: no hint, ENDLIST",
			window: func(t *testing.T) *Window {
				return llStream(t, 10, 12, 0, func(c *proto.Chunk) {
					if c.ID.Seq == 11 && c.Last() {
						c.Flags |= proto.FlagEnd
					}
				})
			},
			segments: []string{"10.mp4", "11.mp4"},
			parts:    partsOfSeg("11", 10),
			ended:    true,
			lacks:    []string{"PRELOAD-HINT"},
		},
		{
			name: "a new session in progress: a discontinuity, no date until its last chunk",
			window: func(t *testing.T) *Window {
				return llStream(t, 10, 12, 1, func(c *proto.Chunk) {
					if c.ID.Seq == 12 {
						c.Flags |= proto.FlagDiscontinuity
					}
				})
			},
			segments: []string{"10.mp4", "11.mp4"},
			parts:    append(partsOfSeg("11", 10), "12.0.mp4"),
			hint:     "12.1.mp4",
			contains: []string{"11.mp4\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n" + `#EXT-X-PART:DURATION=0.200,URI="12.0.mp4",INDEPENDENT=YES`},
			lacks:    []string{"2026-11-21T12:00:24.000Z"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.window(t)
			body, ok := w.LLPlaylist()
			require.True(t, ok)
			text := string(body)
			p := decodeLL(t, body)
			require.Equal(t, tc.segments, segmentURIs(p))
			require.Equal(t, tc.parts, partURIs(p))
			require.Equal(t, 0.2, p.PartTargetDuration)
			require.NotNil(t, p.ServerControl)
			require.True(t, p.ServerControl.CanBlockReload)
			require.Equal(t, 0.6, p.ServerControl.PartHoldBack)
			require.Equal(t, "init-0.mp4", p.Map.URI)
			require.Equal(t, tc.ended, p.Closed)
			if tc.hint == "" {
				require.Nil(t, p.PreloadHints)
			} else {
				require.NotNil(t, p.PreloadHints, text)
				require.Equal(t, "PART", p.PreloadHints.Type)
				require.Equal(t, tc.hint, p.PreloadHints.URI)
			}
			for _, s := range p.GetAllSegments() {
				require.False(t, s.ProgramDateTime.IsZero(), "every segment is dated")
			}
			rest := text
			for _, line := range tc.contains {
				i := strings.Index(rest, line)
				require.GreaterOrEqual(t, i, 0, "missing (or out of order) %q in\n%s", line, text)
				rest = rest[i+len(line):]
			}
			for _, s := range tc.lacks {
				require.NotContains(t, text, s)
			}

			// The same segments and media sequence as the MPEG-TS playlist.
			ts, ok := w.Playlist()
			require.True(t, ok)
			tsp := decodeLL(t, ts)
			require.Equal(t, tsp.SeqNo, p.SeqNo)
			require.Len(t, p.GetAllSegments(), len(tsp.GetAllSegments()))
		})
	}
}

func TestLLPlaylistNeedsACompleteSegment(t *testing.T) {
	w := llStream(t, 10, 10, 3, nil)
	_, ok := w.LLPlaylist()
	require.False(t, ok)
	_, _, ok = w.LLEdge()
	require.False(t, ok)
}

func TestLLPlaylistCachedUntilAChunkArrives(t *testing.T) {
	w := llStream(t, 10, 12, 0, nil)
	a, ok := w.LLPlaylist()
	require.True(t, ok)
	b, _ := w.LLPlaylist()
	require.Same(t, &a[0], &b[0])
	w.AddChunk(llTestSegment(t, 12, 50)[0])
	c, _ := w.LLPlaylist()
	require.NotSame(t, &a[0], &c[0])
}

func TestMasterPlaylistNamesBothVariants(t *testing.T) {
	w := llStream(t, 10, 12, 0, nil)
	body, err := w.MasterPlaylist()
	require.NoError(t, err)
	p, kind, err := m3u8.DecodeFrom(bytes.NewReader(body), true)
	require.NoError(t, err)
	require.Equal(t, m3u8.MASTER, kind)
	master := p.(*m3u8.MasterPlaylist)
	require.Len(t, master.Variants, 2)
	require.Equal(t, "index.m3u8", master.Variants[0].URI)
	require.Equal(t, "ll.m3u8", master.Variants[1].URI)
	for _, v := range master.Variants {
		require.Equal(t, "avc1.42c00d,mp4a.40.2", v.Codecs)
		require.Positive(t, v.Bandwidth)
	}
}

// TestEachTimelineHasItsOwnInitSegment: a publisher that reconnects starts a new timeline
// (EXT-X-DISCONTINUITY) and may bring other parameter sets; the LL playlist names a new init
// segment after the discontinuity (EXT-X-MAP), for the segment in progress as for listed ones,
// and each init segment carries its own timeline's SPS.
func TestEachTimelineHasItsOwnInitSegment(t *testing.T) {
	otherSPS := append([]byte(nil), llTestSPS...)
	otherSPS[3] = 0x1e // level 3.0 instead of 1.3: another encoder setting
	w := testWindow(6, 10)
	add := func(seq uint64, sps []byte, parts int) {
		seg := muxTS(t, tsSpec{frames: 50, fps: 25, partFrames: 5, firstPTS: int64(seq) * 180000, sps: sps})
		ends := 0
		for _, c := range tsChunks(seq, seg, 1000, 2*time.Second) {
			if seq == 13 {
				c.Flags |= proto.FlagDiscontinuity // the publisher came back
			}
			w.AddChunk(c)
			if c.PartEnd() {
				if ends++; ends == parts {
					return
				}
			}
		}
	}
	for seq := uint64(10); seq < 13; seq++ {
		add(seq, nil, -1)
	}
	add(13, otherSPS, 2) // in progress: two parts

	body, ok := w.LLPlaylist()
	require.True(t, ok)
	text := string(body)
	require.Contains(t, text, "#EXT-X-MAP:URI=\"init-0.mp4\"\n")
	require.Contains(t, text, "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n#EXT-X-PART:DURATION=0.200,URI=\"13.0.mp4\"")
	first, err := w.TimelineInit(0)
	require.NoError(t, err)
	second, err := w.TimelineInit(1)
	require.NoError(t, err, "the new timeline's init comes from the part in progress")
	require.NotEqual(t, first, second)
	require.True(t, bytes.Contains(first, llTestSPS))
	require.True(t, bytes.Contains(second, otherSPS))
	_, err = w.TimelineInit(2)
	require.ErrorIs(t, err, ErrPartNotYet)

	add(13, otherSPS, -1) // the rest of 13: complete and listed
	add(14, otherSPS, -1)
	body, ok = w.LLPlaylist()
	require.True(t, ok)
	p := decodeLL(t, body)
	require.Equal(t, []string{"10.mp4", "11.mp4", "12.mp4", "13.mp4", "14.mp4"}, segmentURIs(p))
	again, err := w.TimelineInit(1)
	require.NoError(t, err)
	require.Equal(t, second, again)
	require.Equal(t, 1, strings.Count(string(body), "init-1.mp4"), "one EXT-X-MAP per timeline")

	// Served under its own URL.
	e := echo.New()
	NewServer(func(s string) (*Window, bool) { return w, s == testStream }, ServerOptions{}).Register(e)
	for name, want := range map[string][]byte{"init-0.mp4": first, "init-1.mp4": second} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/"+name, nil))
		require.Equal(t, http.StatusOK, rec.Code, name)
		require.Equal(t, want, rec.Body.Bytes(), name)
	}
	for _, name := range []string{"init-01.mp4", "init-.mp4", "init-9.mp4"} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live/"+testStream+"/"+name, nil))
		require.Equal(t, http.StatusNotFound, rec.Code, name)
	}
}
