package player

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/stretchr/testify/require"
)

// The low-latency test server is a live fMP4 packager whose output is known in advance, laid
// out as the origin lays out ll.m3u8 (init.mp4, SEQ.mp4, SEQ.PART.mp4). Part k (counted from the
// start of the stream; part k%llPartsPerSeg of segment k/llPartsPerSeg) holds media
// [k*P, (k+1)*P), its capture started at base + k*P and it is published when its capture ends,
// at base + (k+1)*P. Parts are real fMP4 (mediacommon's writer) of synthetic H.264 samples.
// The server blocks playlist reloads (_HLS_msn, _HLS_part) and requests for the next part until
// that part is published, as RFC 8216bis 6.2.5.2 asks, and answers 503 after three target
// durations. Tests run it behind an in-memory transport inside a synctest bubble, so its
// clock is the test's and every figure the player measures can be compared exactly with what
// the server did.

const (
	llPartDur        = 200 * time.Millisecond
	llPartsPerSeg    = 5 // 1 s segments
	llTargetDuration = 1
	llPrefillParts   = 20 // 4 s of media published when the player joins
	llWindowSegs     = 8  // segments in the playlist
	llPartWindowSegs = 3  // complete segments whose parts are still listed
	llFramesPerPart  = 6  // 30 fps
	llFrameTicks     = 3000
	llBlockTimeout   = 3 * llTargetDuration * time.Second
	llHoldBackParts  = 3 // PART-HOLD-BACK = 3 part targets
)

// Bytes of a real SPS (1920x1080 baseline) and PPS, so the init segment describes a decodable
// stream.
var (
	llTestSPS = []byte{
		0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02,
		0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
		0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9,
		0x20,
	}
	llTestPPS = []byte{0x08}
)

type llStream struct {
	t    testing.TB
	base time.Time // capture start of part 0

	// Knobs, set before the player starts.
	independentEvery int           // a part starts with an IDR every this many parts (default: every part)
	holdFrom         time.Time     // parts due from holdFrom ...
	holdUntil        time.Time     // ... are published at holdUntil
	corrupt          map[int]bool  // part numbers served as garbage
	noBlocking       bool          // no CAN-BLOCK-RELOAD, no waiting for parts: the player must poll
	delay            time.Duration // network delay of every response
	restartSeg       int           // segment whose decode times restart from 0 (0: never)
	tagRestart       bool          // put EXT-X-DISCONTINUITY on restartSeg

	mu               sync.Mutex
	playlistRequests int
	blockingReloads  int
	reloadsNotWaited int // blocking reloads for a part already published, after the first part played
	partsServed      []int
	partArrivals     map[int]time.Time // when the response to part k was complete
	segmentArrivals  map[int]time.Time // when the response to segment n was complete
	segmentsServed   int
	initRequests     int
}

func newLLStream(t testing.TB) *llStream {
	return &llStream{
		t:                t,
		base:             time.Now().Add(-llPrefillParts * llPartDur),
		independentEvery: 1,
		partArrivals:     map[int]time.Time{},
		segmentArrivals:  map[int]time.Time{},
	}
}

// client is an HTTP client that reaches the server in memory, so a synctest bubble's fake
// clock runs the whole exchange.
func (s *llStream) client() *http.Client {
	return &http.Client{Transport: handlerTransport{s}}
}

func (s *llStream) url() string { return "http://ll.test/live/test/ll.m3u8" }

// handlerTransport serves requests with a handler in the caller's goroutine.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// availableAt is when part k is published.
func (s *llStream) availableAt(k int) time.Time {
	at := s.base.Add(time.Duration(k+1) * llPartDur)
	if !s.holdFrom.IsZero() && !at.Before(s.holdFrom) && at.Before(s.holdUntil) {
		at = s.holdUntil
	}
	return at
}

// published is the number of parts published at now.
func (s *llStream) published(now time.Time) int {
	k := 0
	for !s.availableAt(k).After(now) {
		k++
	}
	return k
}

// pdt is the EXT-X-PROGRAM-DATE-TIME of part k (of segment n: pdt(n*llPartsPerSeg)).
func (s *llStream) pdt(k int) time.Time {
	return s.base.Add(time.Duration(k) * llPartDur)
}

func (s *llStream) independent(k int) bool { return k%s.independentEvery == 0 }

func (s *llStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	switch {
	case name == "ll.m3u8":
		s.servePlaylist(w, r)
	case name == "init.mp4":
		s.mu.Lock()
		s.initRequests++
		s.mu.Unlock()
		_ = s.write(w, r, "video/mp4", llTestInit(s.t))
	case strings.HasSuffix(name, ".mp4"):
		s.serveMedia(w, r, strings.TrimSuffix(name, ".mp4"))
	default:
		http.NotFound(w, r)
	}
}

// write answers after the network delay, unless the client went away in the meantime; it
// reports whether it answered.
func (s *llStream) write(w http.ResponseWriter, r *http.Request, contentType string, b []byte) bool {
	if s.delay > 0 {
		timer := time.NewTimer(s.delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return false
		}
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b)
	return true
}

// waitFor holds a request until part k is published; false when it timed out or the client
// went away.
func (s *llStream) waitFor(r *http.Request, k int) bool {
	at := s.availableAt(k)
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	if d > llBlockTimeout {
		timer := time.NewTimer(llBlockTimeout)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
		}
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (s *llStream) servePlaylist(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.mu.Lock()
	s.playlistRequests++
	s.mu.Unlock()
	q := r.URL.Query()
	if q.Has("_HLS_msn") && !s.noBlocking {
		msn, err1 := strconv.Atoi(q.Get("_HLS_msn"))
		part := 0
		var err2 error
		if q.Has("_HLS_part") {
			part, err2 = strconv.Atoi(q.Get("_HLS_part"))
		}
		if err1 != nil || err2 != nil || msn < 0 || part < 0 || part >= llPartsPerSeg {
			http.Error(w, "bad _HLS_msn/_HLS_part", http.StatusBadRequest)
			return
		}
		k := msn*llPartsPerSeg + part
		pub := s.published(now)
		if msn > pub/llPartsPerSeg+2 {
			http.Error(w, "too far ahead", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.blockingReloads++
		if k < pub && len(s.partsServed) > 0 {
			s.reloadsNotWaited++
		}
		s.mu.Unlock()
		if !s.waitFor(r, k) {
			if r.Context().Err() == nil {
				http.Error(w, "part not published in time", http.StatusServiceUnavailable)
			}
			return
		}
	}
	_ = s.write(w, r, "application/vnd.apple.mpegurl", []byte(s.playlist(time.Now())))
}

// playlist is ll.m3u8 at now.
func (s *llStream) playlist(now time.Time) string {
	pub := s.published(now)
	complete := pub / llPartsPerSeg
	first := max(0, complete-llWindowSegs)
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:%d\n", llTargetDuration)
	if s.noBlocking {
		fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=%.3f\n", (llHoldBackParts * llPartDur).Seconds())
	} else {
		fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%.3f\n", (llHoldBackParts * llPartDur).Seconds())
	}
	fmt.Fprintf(&b, "#EXT-X-PART-INF:PART-TARGET=%.3f\n", llPartDur.Seconds())
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n#EXT-X-MAP:URI=\"init.mp4\"\n", first)
	parts := func(n, count int) {
		for p := range count {
			k := n*llPartsPerSeg + p
			fmt.Fprintf(&b, "#EXT-X-PART:DURATION=%.3f,URI=\"%d.%d.mp4\"", llPartDur.Seconds(), n, p)
			if s.independent(k) {
				b.WriteString(",INDEPENDENT=YES")
			}
			b.WriteString("\n")
		}
	}
	disc := func(n int) {
		if s.tagRestart && s.restartSeg > 0 && n == s.restartSeg {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
	}
	for n := first; n < complete; n++ {
		disc(n)
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", s.pdt(n*llPartsPerSeg).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
		if n >= complete-llPartWindowSegs {
			parts(n, llPartsPerSeg)
		}
		fmt.Fprintf(&b, "#EXTINF:%.3f,\n%d.mp4\n", (llPartsPerSeg * llPartDur).Seconds(), n)
	}
	if tail := pub % llPartsPerSeg; tail > 0 {
		disc(complete)
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", s.pdt(complete*llPartsPerSeg).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
		parts(complete, tail)
	}
	if !s.noBlocking {
		fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"%d.%d.mp4\"\n", pub/llPartsPerSeg, pub%llPartsPerSeg)
	}
	return b.String()
}

// serveMedia serves "N" (segment N whole) or "N.P" (part P of segment N).
func (s *llStream) serveMedia(w http.ResponseWriter, r *http.Request, name string) {
	segPart := strings.Split(name, ".")
	n, err := strconv.Atoi(segPart[0])
	if err != nil || n < 0 || len(segPart) > 2 {
		http.NotFound(w, r)
		return
	}
	if len(segPart) == 1 {
		if s.published(time.Now()) < (n+1)*llPartsPerSeg {
			http.NotFound(w, r)
			return
		}
		var seg []byte
		for k := n * llPartsPerSeg; k < (n+1)*llPartsPerSeg; k++ {
			seg = append(seg, s.part(k)...)
		}
		if !s.write(w, r, "video/mp4", seg) {
			return
		}
		s.mu.Lock()
		s.segmentsServed++
		s.segmentArrivals[n] = time.Now()
		s.mu.Unlock()
		return
	}
	p, err := strconv.Atoi(segPart[1])
	if err != nil || p < 0 || p >= llPartsPerSeg {
		http.NotFound(w, r)
		return
	}
	k := n*llPartsPerSeg + p
	pub := s.published(time.Now())
	switch {
	case k > pub || (k == pub && s.noBlocking):
		http.NotFound(w, r)
		return
	case k == pub && !s.waitFor(r, k): // the preload-hinted part: held until it exists
		if r.Context().Err() == nil {
			http.Error(w, "part not published in time", http.StatusServiceUnavailable)
		}
		return
	}
	if !s.write(w, r, "video/mp4", s.part(k)) {
		return
	}
	s.mu.Lock()
	s.partsServed = append(s.partsServed, k)
	s.partArrivals[k] = time.Now()
	s.mu.Unlock()
}

// part is part k as fMP4: one H.264 track, an IDR first when the part is independent, decode
// time running on from part to part.
func (s *llStream) part(k int) []byte {
	if s.corrupt[k] {
		return bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 500)
	}
	return llTestPart(s.t, k, s.independent(k), s.baseTime(k))
}

// baseTime is the decode time of part k's first sample: from far ahead until restartSeg, from 0
// after it, so a restart is a real jump back.
func (s *llStream) baseTime(k int) uint64 {
	const perPart = llFramesPerPart * llFrameTicks
	if first := s.restartSeg * llPartsPerSeg; s.restartSeg > 0 && k >= first {
		return uint64(k-first) * perPart
	}
	return 1000*90000 + uint64(k)*perPart
}

func llTestInit(t testing.TB) []byte {
	init := fmp4.Init{Tracks: []*fmp4.InitTrack{{
		ID: 1, TimeScale: 90000,
		Codec: &mp4codecs.H264{SPS: llTestSPS, PPS: llTestPPS},
	}}}
	var buf seekablebuffer.Buffer
	require.NoError(t, init.Marshal(&buf))
	return buf.Bytes()
}

func llTestPart(t testing.TB, seq int, independent bool, baseTime uint64) []byte {
	samples := make([]*fmp4.Sample, llFramesPerPart)
	for i := range samples {
		nalu := append([]byte{0x41}, bytes.Repeat([]byte{0xab}, 300)...) // non-IDR slice
		sync := i == 0 && independent
		if sync {
			nalu[0] = 0x65 // IDR slice
		}
		payload, err := h264.AVCC([][]byte{nalu}).Marshal()
		require.NoError(t, err)
		samples[i] = &fmp4.Sample{Duration: llFrameTicks, IsNonSyncSample: !sync, Payload: payload}
	}
	part := fmp4.Part{SequenceNumber: uint32(seq), Tracks: []*fmp4.PartTrack{{ID: 1, BaseTime: baseTime, Samples: samples}}}
	var buf seekablebuffer.Buffer
	require.NoError(t, part.Marshal(&buf))
	return buf.Bytes()
}

// Figures the tests compare with the player's.

func (s *llStream) served() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.partsServed...)
}

func (s *llStream) arrival(k int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partArrivals[k]
}

func (s *llStream) segmentArrival(n int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.segmentArrivals[n]
}

func (s *llStream) requests() (playlists, blocking, notWaited, inits, segments int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.playlistRequests, s.blockingReloads, s.reloadsNotWaited, s.initRequests, s.segmentsServed
}

// playLL runs a player on s for d inside the caller's synctest bubble and returns its summary.
func playLL(t *testing.T, s *llStream, d time.Duration, cfg Config) Summary {
	t.Helper()
	cfg.URL = s.url()
	cfg.HTTPClient = s.client()
	cfg.Duration = d
	p, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, p.Run(context.Background()))
	sum := p.Summary()
	require.Equal(t, sum, p.Summary(), "Summary is frozen once Run returned")
	return sum
}
