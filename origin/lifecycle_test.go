package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/proto"
)

// runCard publishes the built-in test card (one keyframe a second) to the stream for d, then
// stops, as a broadcaster who ends the show does: the RTSP session closes.
func runCard(o *testOrigin, name string, d time.Duration) error {
	pub, err := testcard.New(testcard.Config{URL: o.rtsp + "/" + name})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return pub.Run(ctx)
}

// publishCard is runCard on the test's goroutine.
func publishCard(t *testing.T, o *testOrigin, name string, d time.Duration) {
	t.Helper()
	require.NoError(t, runCard(o, name, d))
}

// publishCardAsync is runCard in the background; the channel gets its result when it stops.
func publishCardAsync(o *testOrigin, name string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() { done <- runCard(o, name, d) }()
	return done
}

func (o *testOrigin) playlistText(t *testing.T, stream string) string {
	t.Helper()
	code, body := httpGet(t, o.base+"/live/"+stream+"/index.m3u8")
	require.Equal(t, http.StatusOK, code, string(body))
	return string(body)
}

func (o *testOrigin) waitEnded(t *testing.T, stream string) string {
	t.Helper()
	var text string
	require.Eventually(t, func() bool {
		text = o.playlistText(t, stream)
		return strings.HasSuffix(text, "#EXT-X-ENDLIST\n")
	}, 10*time.Second, 20*time.Millisecond, "the playlist should end")
	return text
}

func (o *testOrigin) streamCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.streams)
}

// startViewer runs a peer of the stream that knows the origin's mesh and HTTP addresses and
// serves its own local HLS; its logs go to the returned buffer.
func startViewer(t *testing.T, o *testOrigin, stream string) (*peer.Node, string, *syncBuffer) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { hln.Close() })
	logs := &syncBuffer{}
	n, err := peer.New(peer.Config{
		Stream: stream, OriginKey: o.PublicKey(), PacketConn: pc, HTTPListener: hln,
		Bootstrap: []string{o.MeshAddr().String()}, OriginHTTP: o.base, TargetDuration: time.Second,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Registry: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return n, "http://" + hln.Addr().String() + "/live/" + stream + "/index.m3u8", logs
}

// TestPublisherStopEndsEveryPlaylist: when the broadcaster stops, the origin finishes the segment
// and signs the end into its last chunk; the origin's playlist and a connected peer's both end
// with EXT-X-ENDLIST, and the peer says it waits for the publisher. The end flag is the origin's
// word: set on any other chunk it fails verification.
func TestPublisherStopEndsEveryPlaylist(t *testing.T) {
	t.Parallel()
	cfg, logs := testConfig(t)
	logOnFailure(t, logs)
	o := startOrigin(t, cfg)

	done := publishCardAsync(o, "show", 4*time.Second)
	o.waitSegments(t, "show", 1)
	require.NotContains(t, o.playlistText(t, "show"), "ENDLIST", "a live stream's playlist does not end")
	viewer, viewerURL, viewerLogs := startViewer(t, o, "show")
	require.NoError(t, <-done)

	text := o.waitEnded(t, "show")
	si, ok := o.streamInfo(t, "show")
	require.True(t, ok)
	require.False(t, si.Live)
	require.True(t, si.Ended)

	p := parsePlaylist(t, []byte(text))
	require.GreaterOrEqual(t, len(p.segments), 2)
	lastSeq := p.segments[len(p.segments)-1].seq
	_, chunks := fetchChunks(t, o, "show", lastSeq)
	end := chunks[len(chunks)-1]
	require.True(t, end.End(), "the last chunk of the last segment carries the end")
	for _, c := range chunks[:len(chunks)-1] {
		require.False(t, c.End())
	}

	// Forging the end on the segment before fails verification, on the struct and on the wire.
	_, before := fetchChunks(t, o, "show", lastSeq-1)
	forged := *before[len(before)-1]
	require.False(t, forged.End())
	forged.Flags |= proto.FlagEnd
	require.ErrorIs(t, forged.Verify(o.PublicKey()), proto.ErrBadSignature)
	parsed, _, err := proto.ParseChunk(forged.Append(nil))
	require.NoError(t, err)
	require.ErrorIs(t, parsed.Verify(o.PublicKey()), proto.ErrBadSignature)

	// The peer learns of the end from the signed chunk and ends its own playlist too.
	require.Eventually(t, func() bool {
		code, body := httpGet(t, viewerURL)
		return code == http.StatusOK && strings.HasSuffix(string(body), fmt.Sprintf("%d.ts\n#EXT-X-ENDLIST\n", lastSeq))
	}, 15*time.Second, 50*time.Millisecond, "the peer's playlist should end too: %+v", viewer.Stats())
	require.True(t, viewer.Window().Ended())
	require.Zero(t, viewer.Stats().ChunksRejected)
	require.Eventually(t, func() bool {
		return strings.Contains(viewerLogs.String(), "stream ended; waiting for the publisher to come back")
	}, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, strings.Count(viewerLogs.String(), "stream ended;"), "one clear line, once")
}

// TestNewSessionAfterEndContinuesTheStream: a publisher that comes back after the end continues
// the same stream: the playlist loses its ENDLIST, the new session starts with a discontinuity
// and its sequence numbers go on from the last session's.
func TestNewSessionAfterEndContinuesTheStream(t *testing.T) {
	t.Parallel()
	cfg, logs := testConfig(t)
	logOnFailure(t, logs)
	o := startOrigin(t, cfg)

	publishCard(t, o, "again", 2500*time.Millisecond)
	first := parsePlaylist(t, []byte(o.waitEnded(t, "again")))
	lastOfFirst := first.segments[len(first.segments)-1].seq

	done := publishCardAsync(o, "again", 3500*time.Millisecond)
	var p playlist
	require.Eventually(t, func() bool {
		text := o.playlistText(t, "again")
		p = parsePlaylist(t, []byte(text))
		return !strings.Contains(text, "ENDLIST") && p.segments[len(p.segments)-1].seq > lastOfFirst
	}, 10*time.Second, 20*time.Millisecond, "the new session's first segment un-ends the playlist")
	si, _ := o.streamInfo(t, "again")
	require.True(t, si.Live)
	require.False(t, si.Ended)
	var resumed *playlistSegment
	for i := range p.segments {
		if p.segments[i].seq == lastOfFirst+1 {
			resumed = &p.segments[i]
		}
	}
	require.NotNil(t, resumed, "the sequence continues right after the last session's: %+v", p.segments)
	require.True(t, resumed.discontinuity, "the new session starts a new timeline")

	require.NoError(t, <-done)
	o.waitEnded(t, "again")
}

// TestEndedStreamIsRemovedAfterGrace: once the grace is over the stream is gone: not listed, no
// playlist, its window and mesh root dropped; a new publisher of the name starts afresh.
func TestEndedStreamIsRemovedAfterGrace(t *testing.T) {
	t.Parallel()
	cfg, logs := testConfig(t)
	cfg.StreamGrace = 2 * time.Second
	var mu sync.Mutex
	var removed []string
	cfg.OnStreamRemoved = func(name string) {
		mu.Lock()
		defer mu.Unlock()
		removed = append(removed, name)
	}
	o := startOrigin(t, cfg)

	publishCard(t, o, "brief", 2500*time.Millisecond)
	o.waitEnded(t, "brief")
	_, hasRoot := o.mesh.Load().meshAddr("brief")
	require.True(t, hasRoot)
	// Still there within the grace: a reconnecting broadcaster would continue it.
	_, listed := o.streamInfo(t, "brief")
	require.True(t, listed)

	require.Eventually(t, func() bool { return o.streamCount() == 0 }, 5*time.Second, 20*time.Millisecond)
	_, listed = o.streamInfo(t, "brief")
	require.False(t, listed, "/v1/streams no longer lists it")
	code, _ := httpGet(t, o.base+"/live/brief/index.m3u8")
	require.Equal(t, http.StatusNotFound, code)
	_, hasRoot = o.mesh.Load().meshAddr("brief")
	require.False(t, hasRoot, "its mesh root is stopped")
	mu.Lock()
	require.Equal(t, []string{"brief"}, removed)
	mu.Unlock()
	require.Contains(t, logs.String(), "stream removed")
	_, metrics := httpGet(t, o.base+"/metrics")
	require.Contains(t, string(metrics), "crowdsurf_origin_streams_removed_total 1\n")

	// The name is free again, and its new mesh root can take the stream's name on the mux.
	publishCard(t, o, "brief", 2500*time.Millisecond)
	o.waitEnded(t, "brief")
	_, hasRoot = o.mesh.Load().meshAddr("brief")
	require.True(t, hasRoot)
}

// TestAnonymousOriginCapsItsStreams: without a publish key anyone can publish, so the origin
// holds at most MaxStreams streams, says so at start, and refuses one more with 503 and a log
// line; a publisher returning to a stream it holds is always let in.
func TestAnonymousOriginCapsItsStreams(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, logs := testConfig(t)
	cfg.MaxStreams = 2
	o := startOrigin(t, cfg)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "no --publish-key: anyone who can reach RTSP can publish; at most 2 streams")
	}, 5*time.Second, 10*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, name := range []string{"one", "two"} {
		pub, err := testcard.New(testcard.Config{URL: o.rtsp + "/" + name})
		require.NoError(t, err)
		wg.Go(func() { _ = pub.Run(ctx) })
	}
	require.Eventually(t, func() bool {
		a, _ := o.streamInfo(t, "one")
		b, _ := o.streamInfo(t, "two")
		return a.Live && b.Live
	}, 10*time.Second, 20*time.Millisecond)

	stderr, err := publish(context.Background(), o.rtsp+"/three", publishOpts{video: true, seconds: 1})
	require.Error(t, err, "the third stream must be refused")
	require.Contains(t, stderr, "503", stderr)
	require.Contains(t, logs.String(), "too many streams")
	_, listed := o.streamInfo(t, "three")
	require.False(t, listed)
	require.Equal(t, 2, o.streamCount())
}

// TestManyShortPublishesLeaveNoMemoryBehind is the measurement behind the stream lifecycle: ten
// broadcasts to distinct names used to stay in memory for good (23 MB -> 370 MB RSS). After the
// grace the heap is back near where it started.
func TestManyShortPublishesLeaveNoMemoryBehind(t *testing.T) {
	// Not parallel: the heap figures must be this test's alone.
	cfg, _ := testConfig(t)
	cfg.StreamGrace = 4 * time.Second // the peak is measured within it
	o := startOrigin(t, cfg)

	heapInuse := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	start := heapInuse()
	var results []<-chan error
	for i := range 10 {
		results = append(results, publishCardAsync(o, fmt.Sprintf("short-%d", i), 3*time.Second))
	}
	for _, done := range results {
		require.NoError(t, <-done)
	}
	peak := heapInuse()
	require.Eventually(t, func() bool { return o.streamCount() == 0 }, 10*time.Second, 20*time.Millisecond)
	end := heapInuse()
	t.Logf("HeapInuse after GC: start %.1f MB, after 10 publishes %.1f MB, after the grace %.1f MB (growth %.1f MB)",
		mb(start), mb(peak), mb(end), mb(end)-mb(start))
	require.Less(t, mb(end)-mb(start), 50.0, "the removed streams' memory must be freed")
	require.Less(t, end-min(end, start), (peak-min(peak, start))/2, "most of what the streams held is freed")
}

func logOnFailure(t *testing.T, logs *syncBuffer) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// TestOnlyTheSessionsLastChunkEndsTheStream: the end flag goes on exactly one chunk per
// session, the last chunk of its last segment; cuts inside a session never carry it.
func TestOnlyTheSessionsLastChunkEndsTheStream(t *testing.T) {
	h := newHarness(t, time.Second, 1024)
	var ends []proto.ChunkID
	session := func(from int) {
		require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))
		for i := range 60 { // a keyframe a second, 2.4 s: three segments
			require.NoError(t, h.seg.writeH264(int64((from+i)*frame25), videoAU(i%25 == 0, 900)))
			h.clock.advance(40 * time.Millisecond)
		}
		h.seg.endSession()
	}
	session(0)
	session(0) // the publisher comes back; its timestamps start over
	for _, c := range h.chunks {
		require.NoError(t, c.Verify(h.pub))
		if c.End() {
			require.True(t, c.Last())
			ends = append(ends, c.ID)
		}
	}
	last := func(seq uint64) proto.ChunkID {
		return proto.ChunkID{Stream: "cam", Seq: seq, Index: h.infos[seq].ChunkCount - 1}
	}
	require.Len(t, h.infos, 6)
	require.Equal(t, []proto.ChunkID{last(2), last(5)}, ends)
}

// TestViewerOutlivesStreamRemoval: a peer left running while the stream is removed keeps waiting,
// and plays the stream again when a publisher of the name comes back later.
func TestViewerOutlivesStreamRemoval(t *testing.T) {
	t.Parallel()
	cfg, logs := testConfig(t)
	logOnFailure(t, logs)
	cfg.StreamGrace = 500 * time.Millisecond
	o := startOrigin(t, cfg)

	done := publishCardAsync(o, "comeback", 3*time.Second)
	o.waitSegments(t, "comeback", 1)
	viewer, viewerURL, viewerLogs := startViewer(t, o, "comeback")
	require.NoError(t, <-done)
	require.Eventually(t, viewer.Window().Ended, 15*time.Second, 50*time.Millisecond)
	oldNewest, _ := viewer.Window().NewestComplete()
	require.Eventually(t, func() bool { return o.streamCount() == 0 }, 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return viewer.Stats().Neighbours == 0 }, 10*time.Second, 20*time.Millisecond,
		"the stream's mesh root is gone; the viewer waits on its own")
	require.True(t, viewer.Window().Ended())

	done = publishCardAsync(o, "comeback", 5*time.Second)
	defer func() { require.NoError(t, <-done) }()
	require.Eventually(t, func() bool {
		code, body := httpGet(t, viewerURL)
		n, _ := viewer.Window().NewestComplete()
		return code == http.StatusOK && !strings.Contains(string(body), "ENDLIST") && n > oldNewest
	}, 20*time.Second, 50*time.Millisecond, "the viewer plays the stream again: %+v", viewer.Stats())
	require.Equal(t, 1, strings.Count(viewerLogs.String(), "stream ended;"))
	require.NotContains(t, viewerLogs.String(), "level=ERROR")
}

// TestJunkStreamNamesAreRefused: a name that cannot be a stream (too long, a leading dot, a
// character outside [A-Za-z0-9._-]) is refused at ANNOUNCE and leaves nothing behind.
func TestJunkStreamNamesAreRefused(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, logs := testConfig(t)
	o := startOrigin(t, cfg)
	for _, name := range []string{strings.Repeat("x", proto.MaxStreamNameLen+1), ".hidden", "semi;colon"} {
		stderr, err := publish(context.Background(), o.rtsp+"/"+name, publishOpts{video: true, seconds: 1})
		require.Error(t, err, name)
		require.Contains(t, stderr, "400", "%s: %s", name, stderr)
	}
	require.Zero(t, o.streamCount())
	require.Equal(t, 3, strings.Count(logs.String(), "publisher rejected: bad stream name"))
}

// TestAnnounceFloodLeavesNoStreams is the measured attack: ANNOUNCEs of ever new names without a
// publish key used to leave a permanent stream each. Now the streams never exceed the cap, the
// ones beyond it are refused, and each one that never published goes away with its session.
func TestAnnounceFloodLeavesNoStreams(t *testing.T) {
	t.Parallel()
	cfg, _ := testConfig(t)
	cfg.MaxStreams = 4
	o := startOrigin(t, cfg)
	u, err := base.ParseURL(o.rtsp)
	require.NoError(t, err)
	desc := &description.Session{Medias: []*description.Media{{
		Type:    description.MediaTypeVideo,
		Formats: []format.Format{&format.H264{PayloadTyp: 96, SPS: testSPS, PPS: testPPS, PacketizationMode: 1}},
	}}}
	codes := map[base.StatusCode]int{}
	for i := range 30 {
		c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host}
		require.NoError(t, c.Start())
		target, err := base.ParseURL(fmt.Sprintf("%s/junk-%d", o.rtsp, i))
		require.NoError(t, err)
		_, err = c.Announce(target, desc)
		var bad liberrors.ErrClientBadStatusCode
		switch {
		case err == nil:
			codes[base.StatusOK]++
		case errors.As(err, &bad):
			codes[bad.Code]++
			require.Contains(t, bad.Message, "too many streams")
		default:
			require.NoError(t, err)
		}
		require.LessOrEqual(t, o.streamCount(), 4)
		c.Close()
	}
	require.Equal(t, 30, codes[base.StatusOK]+codes[base.StatusServiceUnavailable], "%v", codes)
	require.Positive(t, codes[base.StatusServiceUnavailable], "%v", codes)
	require.Eventually(t, func() bool { return o.streamCount() == 0 }, 5*time.Second, 20*time.Millisecond,
		"streams that never published are removed as their sessions close")
}

// TestPulledCameraDropDoesNotEndTheStream: the origin reconnects to a pulled camera by itself, so
// a dropped pull is a gap, not an end: players keep polling instead of stopping for good.
func TestPulledCameraDropDoesNotEndTheStream(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	_, relayURL := startRelay(t)
	cfg, logs := testConfig(t)
	cfg.Pulls = map[string]string{"lobby": relayURL + "/lobby"}
	cfg.PullBackoffMin = 50 * time.Millisecond
	cfg.PullBackoffMax = 200 * time.Millisecond
	o := startOrigin(t, cfg)

	stderr, err := publish(context.Background(), relayURL+"/lobby", publishOpts{video: true, seconds: 3})
	require.NoError(t, err, stderr)
	o.waitIdle(t, "lobby")
	o.waitSegments(t, "lobby", 2)
	require.Contains(t, logs.String(), "publishing interrupted")
	require.NotContains(t, o.playlistText(t, "lobby"), "ENDLIST")
	si, _ := o.streamInfo(t, "lobby")
	require.False(t, si.Ended)
}

// TestGraceTimingInABubble checks the removal clock with the default one-minute grace, in a
// synctest bubble: a stream that made segments stays while it is published and for the whole
// grace after its publisher left, a publisher coming back within it keeps it, and it goes once
// the grace has passed; a stream that never made a segment goes at once.
func TestGraceTimingInABubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &Origin{cfg: Config{}.withDefaults(), streams: map[string]*stream{}}
		o.log = o.cfg.Logger
		o.metrics = newMetrics(o.cfg.Registry)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go o.removeStreams(ctx, nil)

		show, err := o.claimStream("show", "publisher", true)
		require.NoError(t, err)
		show.hasNewest = true // it made segments
		_, err = o.claimStream("empty", "announcer", true)
		require.NoError(t, err)
		o.streams["empty"].release("announcer")

		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		_, ok := o.lookup("empty")
		require.False(t, ok, "a stream that never made a segment goes at once")
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		_, ok = o.lookup("show")
		require.True(t, ok, "a published stream stays")

		show.release("publisher")
		time.Sleep(DefaultStreamGrace - time.Second)
		synctest.Wait()
		_, err = o.claimStream("show", "publisher again", true) // back within the grace
		require.NoError(t, err)
		show.release("publisher again")
		time.Sleep(DefaultStreamGrace - time.Second)
		synctest.Wait()
		_, ok = o.lookup("show")
		require.True(t, ok, "the grace starts over when the publisher leaves again")

		time.Sleep(2 * time.Second)
		synctest.Wait()
		_, ok = o.lookup("show")
		require.False(t, ok, "removed once the grace has passed")
	})
}

// TestRootSharesTheStreamsWindow: the origin keeps each segment once: the stream's mesh root
// pushes from the window the origin serves over HTTP instead of keeping a copy of its own.
func TestRootSharesTheStreamsWindow(t *testing.T) {
	t.Parallel()
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)
	publishCard(t, o, "shared", 2500*time.Millisecond)
	st, ok := o.lookup("shared")
	require.True(t, ok)
	m := o.mesh.Load()
	m.mu.Lock()
	r := m.roots["shared"]
	m.mu.Unlock()
	require.NotNil(t, r, "the stream has a mesh root")
	require.Same(t, st.window, r.node.Window())
	seqs := st.window.Seqs()
	require.NotEmpty(t, seqs)
	require.Positive(t, r.node.Stats().BytesPublished, "the root took the chunks the origin put in the shared window")
}
