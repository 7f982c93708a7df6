package peer

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

func TestPartLimitIsWhatTheHeldPartEndsProve(t *testing.T) {
	const (
		plain = iota
		partEnd
		last
	)
	tests := []struct {
		name   string
		chunks []int // per index: -1 not held, else its kind
		part   int
		limit  int
		known  bool
	}{
		{"part 0 ends at the first part end", []int{plain, partEnd, plain, partEnd}, 0, 1, true},
		{"part 1 at the second", []int{plain, partEnd, plain, partEnd, plain}, 1, 3, true},
		{"nothing held proves part 2's end", []int{plain, partEnd, plain, partEnd, plain}, 2, 0, false},
		// A missing chunk may itself end a part: the held part ends bound the limit from above.
		{"a gap: part 1 ends at index 3 or before", []int{plain, -1, plain, partEnd, plain, partEnd}, 0, 3, true},
		{"the missing part end of part 0", []int{plain, -1, plain, partEnd}, 1, 0, false},
		{"the last chunk ends every part", []int{plain, partEnd, plain, last}, 5, 3, true},
		{"the whole segment ends at its last chunk", []int{plain, partEnd, plain, last}, -1, 3, true},
		{"the whole segment, last chunk missing", []int{plain, partEnd, plain}, -1, 0, false},
		{"nothing held", nil, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			have := make([]bool, len(tc.chunks))
			chunk := func(i uint32) (*proto.Chunk, bool) {
				if int(i) >= len(tc.chunks) || tc.chunks[i] < 0 {
					return nil, false
				}
				c := &proto.Chunk{ID: proto.ChunkID{Stream: testStream, Index: i}}
				switch tc.chunks[i] {
				case partEnd:
					c.Flags = proto.FlagPartEnd
				case last:
					c.Flags = proto.FlagLast
				}
				return c, true
			}
			for i, k := range tc.chunks {
				have[i] = k >= 0
			}
			limit, known := partLimit(chunk, have, tc.part)
			require.Equal(t, tc.known, known)
			if tc.known {
				require.Equal(t, tc.limit, limit)
			}
		})
	}
}

func TestPartIsDueAPartGraceAfterTheCadenceSaysItIsHere(t *testing.T) {
	begun := time.Unix(1000, 0)
	const pt, target = 200 * time.Millisecond, 2 * time.Second
	require.Equal(t, begun.Add(800*time.Millisecond), partDueAt(begun, 0, pt, target))
	require.Equal(t, begun.Add(1600*time.Millisecond), partDueAt(begun, 4, pt, target))
	require.Equal(t, begun.Add(2600*time.Millisecond), partDueAt(begun, -1, pt, target), "the whole segment")
}

func TestPartWaitsGiveTheEarliestUncoveredAndForget(t *testing.T) {
	var p partWaits
	t0 := time.Unix(1000, 0)
	require.True(t, p.none())
	p.waiting(segwindow.PartWait{Seq: 7, Part: 3, PartTarget: 200 * time.Millisecond}, t0)
	p.waiting(segwindow.PartWait{Seq: 7, Part: -1}, t0)
	p.waiting(segwindow.PartWait{Seq: 7, Part: 2, PartTarget: 200 * time.Millisecond}, t0)
	p.waiting(segwindow.PartWait{Seq: 6, Part: -1}, t0)

	edge := partKey{seq: 7, part: 0}
	k, w, ok := p.earliest(t0, time.Second, edge, true)
	require.True(t, ok)
	require.Equal(t, partKey{7, 2}, k, "segment 6 is listed; part 2 comes before part 3 and the whole of 7")
	require.Equal(t, 200*time.Millisecond, w.partTarget)

	k, _, _ = p.earliest(t0, time.Second, partKey{seq: 7, part: 3}, true)
	require.Equal(t, partKey{7, 3}, k, "part 2 arrived")
	k, _, _ = p.earliest(t0, time.Second, partKey{seq: 7, part: 4}, true)
	require.Equal(t, partKey{7, -1}, k, "parts 2 and 3 are listed, the whole segment not yet")
	_, _, ok = p.earliest(t0.Add(2*time.Second), time.Second, partKey{seq: 7, part: 4}, true)
	require.False(t, ok, "nobody asked for a while")
	require.True(t, p.none())
	p.waiting(segwindow.PartWait{Seq: 7, Part: -1}, t0)
	_, _, ok = p.earliest(t0, time.Second, partKey{seq: 8, part: 0}, true)
	require.False(t, ok, "segment 7 is listed")

	for i := range 3 * maxPartWaits {
		p.waiting(segwindow.PartWait{Seq: 100, Part: i}, t0.Add(time.Duration(i)*time.Millisecond))
	}
	require.Len(t, p.waits, maxPartWaits)
	k, _, _ = p.earliest(t0, time.Minute, partKey{}, false)
	require.Equal(t, partKey{100, 2 * maxPartWaits}, k, "the oldest waits made room")
}

// LL-HLS test stream: real MPEG-TS (so the peer can derive fMP4 parts), 2 s segments of 50
// frames at 25 fps, a part every 5 frames (200 ms), chunks of at most llChunkSize bytes that
// also end at every part end, as the origin cuts them.
const (
	llFrames      = 50
	llPartFrames  = 5
	llParts       = llFrames / llPartFrames
	llSegDur      = 2 * time.Second
	llPartDur     = llSegDur / llParts
	llChunkSize   = 500
	llFrameTicks  = 90000 / 25
	llFirstTicks  = 900000
	llPlaylistLen = 6
)

// A real SPS/PPS (libx264, baseline, 320x240) so the init segment can be built.
var (
	llSPS = []byte{0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0xa3, 0xc5, 0x0a, 0xa8}
	llPPS = []byte{0x68, 0xce, 0x0f, 0xc8}
)

// llSegmentParts muxes segment seq and cuts it into signed chunks, grouped by part.
func (o *testOrigin) llSegmentParts(t testing.TB, seq uint64) [][]*proto.Chunk {
	var buf bytes.Buffer
	video := &mpegts.Track{Codec: &tscodecs.H264{}}
	w := &mpegts.Writer{W: &buf, Tracks: []*mpegts.Track{video}}
	require.NoError(t, w.Initialize())
	var ends []int
	for i := range llFrames {
		if i > 0 && i%llPartFrames == 0 {
			ends = append(ends, buf.Len())
		}
		body := make([]byte, 300)
		_, _ = rand.Read(body)
		au := [][]byte{body}
		if i == 0 {
			body[0] = byte(h264.NALUTypeIDR) | 0x60
			au = [][]byte{llSPS, llPPS, body}
		} else {
			body[0] = byte(h264.NALUTypeNonIDR) | 0x40
		}
		pts := int64(llFirstTicks) + int64(seq)*llFrames*llFrameTicks + int64(i)*llFrameTicks
		require.NoError(t, w.WriteH264(video, pts, pts, au))
	}
	data := buf.Bytes()
	ends = append(ends, len(data))
	var parts [][]*proto.Chunk
	index, start := uint32(0), 0
	for _, end := range ends {
		var part []*proto.Chunk
		for off := start; off < end; off += llChunkSize {
			c := &proto.Chunk{ID: proto.ChunkID{Stream: testStream, Seq: seq, Index: index}, Data: data[off:min(off+llChunkSize, end)]}
			if off+llChunkSize >= end {
				c.Flags = proto.FlagPartEnd
			}
			part = append(part, c)
			index++
		}
		parts = append(parts, part)
		start = end
	}
	last := parts[len(parts)-1][len(parts[len(parts)-1])-1]
	last.Flags = proto.FlagLast
	last.Info = proto.SegmentInfo{ChunkCount: index, ByteLength: uint64(len(data)), Duration: llSegDur,
		ProgramDateTime: testEpoch.Add(time.Duration(seq) * llSegDur)}
	for _, part := range parts {
		for _, c := range part {
			c.Sign(o.key)
		}
	}
	return parts
}

// playLL emits segments from..to-1 live, a part's chunks at once when the part ends, and records
// when each part was produced. The chunks withheld says are never given to the root, so no peer
// can push or repair them: only the CDN has them.
func (o *testOrigin) playLL(ctx context.Context, t testing.TB, from, to uint64, withheld func(seq uint64, part, chunk int) bool, produced *sync.Map) {
	tick := time.NewTicker(llPartDur)
	defer tick.Stop()
	for seq := from; seq < to; seq++ {
		for p, part := range o.llSegmentParts(t, seq) {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			produced.Store(partKey{seq, p}, time.Now())
			for i, c := range part {
				if withheld(seq, p, i) {
					o.window.AddChunk(c)
				} else {
					o.emit(c)
				}
			}
		}
	}
}

var preloadHint = regexp.MustCompile(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.mp4"`)

func hintOf(t testing.TB, playlist string) partKey {
	m := preloadHint.FindStringSubmatch(playlist)
	require.NotNil(t, m, playlist)
	seq, err := strconv.ParseUint(m[1], 10, 64)
	require.NoError(t, err)
	part, err := strconv.Atoi(m[2])
	require.NoError(t, err)
	return partKey{seq, part}
}

// TestLLPlayerBlockedOnAWithheldPartGetsItFromTheCDN: the swarm never gets some chunks of the
// parts a viewer's LL-HLS player waits for (a chunk inside a part, the chunk that ends a part,
// every chunk of a part). The player, at the live edge, asks for each next part with a blocking
// playlist reload; every one is answered within llAnswerBound of the origin producing the part,
// the withheld ones by fetching exactly their chunks from the CDN. The segment fallback alone
// would answer a withheld part of a segment's first half more than three seconds late: a
// quarter of a segment after the next segment begins.
func TestLLPlayerBlockedOnAWithheldPartGetsItFromTheCDN(t *testing.T) {
	const llAnswerBound = 2000 * time.Millisecond
	o := newTestOrigin(t, 2)
	cdn, cdnURL := perSegmentCDN(t, o)
	cfg := o.peerConfig(t, o.root.Addr().String())
	cfg.OriginHTTP = cdnURL
	cfg.TargetDuration = llSegDur
	n := startNode(t, cfg)

	withheld := func(seq uint64, part, chunk int) bool {
		switch seq {
		case 3:
			return part == 1 && chunk == 1 // inside a part
		case 4:
			return part == 2 && chunk == 3 // the part's last chunk: FlagPartEnd
		case 5:
			return part == 3 // a whole part
		}
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var produced sync.Map
	const segments = 6
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.playLL(ctx, t, 0, segments, withheld, &produced)
	}()

	base := n.HLSURL()[:len(n.HLSURL())-len(segwindow.PlaylistFile)]
	var playlist string
	require.Eventually(t, func() bool {
		code, body := httpGetBody(t, base+segwindow.LLPlaylistFile)
		playlist = body
		return code == 200
	}, 10*time.Second, 50*time.Millisecond)

	// The player at the live edge: a blocking reload for the hinted part, again and again.
	late := map[partKey]time.Duration{}
	for hint := hintOf(t, playlist); hint.seq < segments; hint = hintOf(t, playlist) {
		var code int
		code, playlist = httpGetBody(t, fmt.Sprintf("%s%s?_HLS_msn=%d&_HLS_part=%d", base, segwindow.LLPlaylistFile, hint.seq, hint.part))
		answered := time.Now()
		require.Equal(t, 200, code, playlist)
		at, ok := produced.Load(hint)
		require.True(t, ok, "part %v listed before the origin produced it", hint)
		late[hint] = answered.Sub(at.(time.Time))
	}
	<-done
	for _, k := range []partKey{{3, 1}, {4, 2}, {5, 3}} {
		require.Contains(t, late, k, "the player waited for the withheld part")
	}
	for k, d := range late {
		require.Less(t, d, llAnswerBound, "part %d.%d answered %v after the origin produced it", k.seq, k.part, d)
	}
	t.Logf("answered after the origin produced the part: withheld 3.1 %v, 4.2 %v, 5.3 %v; others up to %v",
		late[partKey{3, 1}], late[partKey{4, 2}], late[partKey{5, 3}], maxExcept(late, partKey{3, 1}, partKey{4, 2}, partKey{5, 3}))

	s := n.Stats()
	require.Positive(t, s.PartFetches, "%+v", s)
	require.Positive(t, s.BytesFromHTTP)
	// Exactly the withheld chunks, give or take the 404 that ends a walk past the held ones
	// when a fetch comes before the part's chunks exist.
	for seq, want := range map[uint64]int{3: 1, 4: 1, 5: len(o.llSegmentParts(t, 5)[3])} {
		cdn.mu.Lock()
		got := cdn.perSeq[seq]
		cdn.mu.Unlock()
		require.GreaterOrEqual(t, got, want, "segment %d", seq)
		require.LessOrEqual(t, got, want+2, "segment %d", seq)
	}
}

func maxExcept(m map[partKey]time.Duration, except ...partKey) time.Duration {
	var out time.Duration
	for k, d := range m {
		skip := false
		for _, e := range except {
			skip = skip || k == e
		}
		if !skip {
			out = max(out, d)
		}
	}
	return out
}
