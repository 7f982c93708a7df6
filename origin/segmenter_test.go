package origin

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/proto"
)

// testSPS/testPPS come from libx264 (-preset ultrafast -tune zerolatency, 320x240): baseline
// profile with pic_order_cnt_type 2, so DTS equals PTS and slice bodies need not be real.
var (
	testSPS = []byte{0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0xa3, 0xc5, 0x0a, 0xa8}
	testPPS = []byte{0x68, 0xce, 0x0f, 0xc8}
	testAAC = &mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 1}
)

const frame25 = clockRate / 25 // one frame at 25 fps

// fakeClock is a manual clock for the segmenter and chunker.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// harness runs a segmenter and records what it emits.
type harness struct {
	t      *testing.T
	seg    *segmenter
	clock  *fakeClock
	pub    ed25519.PublicKey
	chunks []*proto.Chunk
	infos  map[uint64]proto.SegmentInfo
}

func newHarness(t *testing.T, target time.Duration, chunkSize int) *harness {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	h := &harness{t: t, pub: pub, clock: &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, infos: map[uint64]proto.SegmentInfo{}}
	h.seg = newSegmenter(segmenterConfig{
		Stream: "cam", Target: target, ChunkSize: chunkSize, ChunkInterval: 200 * time.Millisecond,
		Key: priv, Now: h.clock.now,
		Emit:      func(c *proto.Chunk) { h.chunks = append(h.chunks, c) },
		OnSegment: func(seq uint64, info proto.SegmentInfo) { h.infos[seq] = info },
	})
	return h
}

func videoAU(idr bool, size int) [][]byte {
	body := make([]byte, size)
	_, _ = rand.Read(body)
	if idr {
		body[0] = byte(h264.NALUTypeIDR) | 0x60
	} else {
		body[0] = byte(h264.NALUTypeNonIDR) | 0x40
	}
	return [][]byte{body}
}

// segmentBytes concatenates the chunks of seq, checking order, signatures and flags.
func (h *harness) segmentBytes(seq uint64) ([]byte, []*proto.Chunk) {
	var data []byte
	var chunks []*proto.Chunk
	for _, c := range h.chunks {
		if c.ID.Seq != seq {
			continue
		}
		require.NoError(h.t, c.Verify(h.pub))
		require.Equal(h.t, uint32(len(chunks)), c.ID.Index, "chunks of a segment come in index order")
		chunks = append(chunks, c)
		data = append(data, c.Data...)
	}
	require.NotEmpty(h.t, chunks)
	last := chunks[len(chunks)-1]
	require.True(h.t, last.Last())
	for _, c := range chunks[:len(chunks)-1] {
		require.False(h.t, c.Last())
	}
	require.Equal(h.t, uint32(len(chunks)), last.Info.ChunkCount)
	require.Equal(h.t, uint64(len(data)), last.Info.ByteLength)
	return data, chunks
}

// demux reads a segment back: it must be valid MPEG-TS on its own.
type demuxed struct {
	videoDTS  []int64
	idrHasSPS []bool
	audioPTS  []int64 // one per PES
	audioAUs  int
}

func demux(t *testing.T, b []byte) demuxed {
	require.Zero(t, len(b)%188, "whole TS packets")
	require.Equal(t, byte(0x47), b[0])
	pid := uint16(b[1]&0x1f)<<8 | uint16(b[2])
	require.Equal(t, uint16(0), pid, "a segment opens with the PAT")
	r := &mpegts.Reader{R: bytes.NewReader(b)}
	require.NoError(t, r.Initialize())
	var d demuxed
	for _, tr := range r.Tracks() {
		switch tr.Codec.(type) {
		case *tscodecs.H264:
			r.OnDataH264(tr, func(_, dts int64, au [][]byte) error {
				d.videoDTS = append(d.videoDTS, dts)
				if h264.IsRandomAccess(au) {
					hasSPS := false
					for _, n := range au {
						if h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS {
							hasSPS = true
						}
					}
					d.idrHasSPS = append(d.idrHasSPS, hasSPS)
				}
				return nil
			})
		case *tscodecs.MPEG4Audio:
			r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
				d.audioPTS = append(d.audioPTS, pts)
				d.audioAUs += len(aus)
				return nil
			})
		}
	}
	for {
		err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	return d
}

func TestSegmenterCutsAtFirstKeyframeAfterTarget(t *testing.T) {
	h := newHarness(t, time.Second, 4096)
	// The SDP carries SPS/PPS; the stream never repeats them (ffmpeg's RTSP publisher).
	require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))

	// A keyframe every 10 frames (0.4 s): with a 1 s target the cuts fall at 1.2 s.
	for i := range 70 {
		require.NoError(t, h.seg.writeH264(int64(i*frame25), videoAU(i%10 == 0, 900)))
		h.clock.advance(40 * time.Millisecond)
	}
	h.seg.endSession()

	require.Len(t, h.infos, 3)
	require.Equal(t, 1200*time.Millisecond, h.infos[0].Duration)
	require.Equal(t, 1200*time.Millisecond, h.infos[1].Duration)
	// The session ended 10 frames into the third segment: its real duration, not the target.
	require.Equal(t, 400*time.Millisecond, h.infos[2].Duration)

	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for seq := range uint64(3) {
		data, chunks := h.segmentBytes(seq)
		require.Equal(t, start.Add(time.Duration(seq)*1200*time.Millisecond), h.infos[seq].ProgramDateTime)
		for _, c := range chunks {
			require.Zero(t, c.Flags&proto.FlagDiscontinuity, "first session: no discontinuity")
		}
		d := demux(t, data)
		wantFrames := 30
		if seq == 2 {
			wantFrames = 10
		}
		require.Len(t, d.videoDTS, wantFrames)
		require.NotEmpty(t, d.idrHasSPS)
		for _, has := range d.idrHasSPS {
			require.True(t, has, "SPS/PPS precede every IDR")
		}
		require.Equal(t, int64(seq)*30*frame25, d.videoDTS[0]-tsOffset, "segment starts at its keyframe")
	}
}

func TestSegmenterDropsMediaBeforeFirstKeyframe(t *testing.T) {
	h := newHarness(t, time.Second, 4096)
	require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS, AAC: testAAC}))
	require.NoError(t, h.seg.writeH264(0, videoAU(false, 500)))
	require.NoError(t, h.seg.writeAAC(0, [][]byte{make([]byte, 100)}))
	require.Empty(t, h.chunks)
	require.Equal(t, uint64(0), h.seg.nextSeq())

	require.NoError(t, h.seg.writeH264(frame25, videoAU(true, 500)))
	require.NoError(t, h.seg.writeAAC(frame25, [][]byte{make([]byte, 100)}))
	h.seg.endSession()
	data, _ := h.segmentBytes(0)
	d := demux(t, data)
	require.Len(t, d.videoDTS, 1)
	require.Len(t, d.audioPTS, 1)
}

func TestChunkerClosesAtSizeAndAfterInterval(t *testing.T) {
	h := newHarness(t, time.Second, 1024)
	require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))

	// A big keyframe: the chunker closes full 1024-byte chunks at once.
	require.NoError(t, h.seg.writeH264(0, videoAU(true, 5000)))
	require.NotEmpty(t, h.chunks)
	for _, c := range h.chunks {
		require.Len(t, c.Data, 1024, "closed by size")
	}
	n := len(h.chunks)

	// The rest waits for more data or for the interval.
	h.clock.advance(199 * time.Millisecond)
	h.seg.tick(h.clock.now())
	require.Len(t, h.chunks, n)
	h.clock.advance(time.Millisecond)
	h.seg.tick(h.clock.now())
	require.Len(t, h.chunks, n+1, "closed by time")
	require.Less(t, len(h.chunks[n].Data), 1024)
	require.False(t, h.chunks[n].Last())

	// Nothing pending: ticks emit nothing, and the last chunk may carry no data at all.
	h.clock.advance(time.Second)
	h.seg.tick(h.clock.now())
	require.Len(t, h.chunks, n+1)
	h.seg.endSession()
	last := h.chunks[len(h.chunks)-1]
	require.True(t, last.Last())
	require.Empty(t, last.Data)
	data, _ := h.segmentBytes(0)
	demux(t, data)
}

func TestSegmenterNewSessionIsDiscontinuity(t *testing.T) {
	h := newHarness(t, time.Second, 4096)
	for session := range 2 {
		require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))
		// Publisher timestamps restart at 0 with every session.
		for i := range 30 {
			require.NoError(t, h.seg.writeH264(int64(i*frame25), videoAU(i%25 == 0, 300)))
			h.clock.advance(40 * time.Millisecond)
		}
		h.seg.endSession()
		_ = session
	}
	// Each session: a 1 s segment cut at frame 25, then a 0.2 s tail.
	require.Len(t, h.infos, 4)
	require.Equal(t, uint64(4), h.seg.nextSeq(), "sequence numbers continue across sessions")
	for seq := range uint64(4) {
		_, chunks := h.segmentBytes(seq)
		for _, c := range chunks {
			require.Equal(t, seq == 2, c.Flags&proto.FlagDiscontinuity != 0, "seq %d", seq)
		}
	}
	// The new timeline's date-time follows the wall clock, never going back.
	require.True(t, h.infos[2].ProgramDateTime.After(h.infos[1].ProgramDateTime))
}

func TestSegmenterAudioOnlyCutsOnTime(t *testing.T) {
	h := newHarness(t, time.Second, 4096)
	require.NoError(t, h.seg.startSession(trackSet{AAC: testAAC}))
	frame := int64(1024 * clockRate / 48000) // 1920 ticks, 21.333 ms
	for i := range 100 {
		require.NoError(t, h.seg.writeAAC(int64(i)*frame, [][]byte{make([]byte, 200)}))
	}
	h.seg.endSession()
	// 1 s / 21.333 ms = 46.9: the 47th frame (at 1.0027 s) opens the second segment.
	require.Len(t, h.infos, 3)
	require.Equal(t, tsToDuration(47*frame), h.infos[0].Duration)
	require.Equal(t, tsToDuration(47*frame), h.infos[1].Duration)
	require.Equal(t, tsToDuration(6*frame), h.infos[2].Duration)
	for seq, frames := range []int{47, 47, 6} {
		data, _ := h.segmentBytes(uint64(seq))
		d := demux(t, data)
		require.Equal(t, frames, d.audioAUs, "segment %d", seq)
		// Frames travel in groups, so PAT/PMT (repeated before every PES of the PCR track)
		// do not double the bitrate.
		require.Equal(t, (frames+audioFramesPerPES-1)/audioFramesPerPES, len(d.audioPTS), "segment %d", seq)
		require.Equal(t, int64(tsOffset)+int64(seq)*47*frame, d.audioPTS[0])
	}
}

func TestSegmenterRejectsSessionWithoutTracks(t *testing.T) {
	h := newHarness(t, time.Second, 4096)
	require.ErrorIs(t, h.seg.startSession(trackSet{}), errNoTracks)
}

func TestSegmenterTimestampJumpStartsNewTimeline(t *testing.T) {
	h := newHarness(t, time.Second, 4096)
	require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))
	for i := range 10 {
		require.NoError(t, h.seg.writeH264(int64(1000*clockRate+i*frame25), videoAU(i == 0, 300)))
	}
	// The publisher's clock goes back (corrupt RTP, a restarted encoder behind a relay): the
	// frames until the next keyframe are refused, then a new timeline starts.
	require.Error(t, h.seg.writeH264(0, videoAU(false, 300)))
	for i := range 30 {
		require.NoError(t, h.seg.writeH264(int64(frame25+i*frame25), videoAU(i%25 == 0, 300)))
	}
	h.seg.endSession()
	require.Len(t, h.infos, 3)
	require.Equal(t, 400*time.Millisecond, h.infos[0].Duration, "the interrupted segment ends where its media ended")
	require.Equal(t, time.Second, h.infos[1].Duration)
	_, chunks := h.segmentBytes(1)
	require.NotZero(t, chunks[0].Flags&proto.FlagDiscontinuity)
}

func TestSegmenterDateTimeFollowsSenderReportsWhenSane(t *testing.T) {
	for _, tc := range []struct {
		name string
		skew time.Duration
		want time.Duration // offset of the first segment's date-time from our clock
	}{
		{"publisher clock 3s ahead is trusted", 3 * time.Second, 3 * time.Second},
		{"camera clock an hour off is ignored", -time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, time.Second, 4096)
			require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))
			start := h.clock.now()
			for i := range 30 {
				h.seg.setSampleNTP(h.clock.now().Add(tc.skew))
				require.NoError(t, h.seg.writeH264(int64(i*frame25), videoAU(i%25 == 0, 300)))
				h.clock.advance(40 * time.Millisecond)
			}
			h.seg.endSession()
			require.Equal(t, start.Add(tc.want), h.infos[0].ProgramDateTime)
			require.Equal(t, start.Add(tc.want+time.Second), h.infos[1].ProgramDateTime)
		})
	}
}

// continuityBreaks counts the TS packets whose continuity counter does not follow the previous
// packet of their PID (a packet without payload repeats it), as a demuxer checks them.
func continuityBreaks(t *testing.T, ts []byte) int {
	t.Helper()
	require.Zero(t, len(ts)%188, "whole TS packets")
	last := map[uint16]byte{}
	breaks := 0
	for off := 0; off < len(ts); off += 188 {
		p := ts[off : off+188]
		require.Equal(t, byte(0x47), p[0])
		pid := uint16(p[1]&0x1f)<<8 | uint16(p[2])
		cc := p[3] & 0x0f
		hasPayload := p[3]&0x10 != 0
		if prev, ok := last[pid]; ok {
			want := prev
			if hasPayload {
				want = (prev + 1) & 0x0f
			}
			if cc != want {
				breaks++
			}
		}
		last[pid] = cc
	}
	return breaks
}

// requireFFmpegReadsCleanly demuxes ts with ffmpeg at warning level: it must say nothing.
func requireFFmpegReadsCleanly(t *testing.T, ts []byte) {
	t.Helper()
	requireFFmpeg(t)
	cmd := exec.CommandContext(t.Context(), "ffmpeg", "-hide_banner", "-nostdin", "-v", "warning",
		"-f", "mpegts", "-i", "pipe:0", "-map", "0", "-c", "copy", "-f", "null", "-")
	cmd.Stdin = bytes.NewReader(ts)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	require.NoError(t, cmd.Run(), errBuf.String())
	require.Empty(t, errBuf.String(), "ffmpeg warns reading the segments back to back")
}

// TestSegmentsContinueContinuityCounters pins issue 11: consecutive segments of a timeline,
// played back to back, keep every PID's continuity counter running (a player saw "Packet
// corrupt" three times per boundary when each segment restarted them at 0), while each segment
// still opens with PAT/PMT and a keyframe. A new session starts a new timeline, from 0.
func TestSegmentsContinueContinuityCounters(t *testing.T) {
	clip, err := testcard.Load() // real H.264 and AAC, so that ffmpeg has nothing else to say
	require.NoError(t, err)
	for _, tc := range []struct {
		name         string
		video, audio bool
	}{
		{"video and audio", true, true},
		{"video only", true, false},
		{"audio only", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, time.Second, 4096)
			tracks := trackSet{}
			if tc.video {
				tracks.H264, tracks.SPS, tracks.PPS = true, clip.SPS, clip.PPS
			}
			if tc.audio {
				tracks.AAC = clip.AudioConfig
			}
			for range 2 {
				require.NoError(t, h.seg.startSession(tracks))
				// Two loops of the clip, audio interleaved by timestamp.
				for loop := range int64(2) {
					off := loop * clip.DurationTicks
					a := 0
					writeAudioUntil := func(ts int64) {
						for ; tc.audio && a < len(clip.Audio) && clip.Audio[a].PTS <= ts; a++ {
							require.NoError(t, h.seg.writeAAC(off+clip.Audio[a].PTS, [][]byte{clip.Audio[a].AU}))
						}
					}
					for _, au := range clip.Video {
						writeAudioUntil(au.DTS)
						if tc.video {
							require.NoError(t, h.seg.writeH264(off+au.PTS, au.NALUs))
						}
						h.clock.advance(tsToDuration(clip.FrameTicks))
					}
					writeAudioUntil(clip.DurationTicks)
				}
				h.seg.endSession()
			}
			require.GreaterOrEqual(t, len(h.infos), 6)

			var timeline []byte
			for seq := range uint64(len(h.infos)) {
				data, chunks := h.segmentBytes(seq)
				d := demux(t, data) // opens with the PAT, decodes on its own
				if tc.video {
					require.True(t, d.idrHasSPS[0], "segment %d opens with a keyframe", seq)
				}
				if chunks[0].Flags&proto.FlagDiscontinuity != 0 {
					require.Zero(t, continuityBreaks(t, timeline), "first timeline")
					requireFFmpegReadsCleanly(t, timeline)
					timeline = nil
				}
				timeline = append(timeline, data...)
			}
			require.Zero(t, continuityBreaks(t, timeline), "second timeline")
			requireFFmpegReadsCleanly(t, timeline)
		})
	}
}

// TestSegmentsAreNoLongerThanTheirKeyframesNeed pins the cut rule behind issue 11's durations:
// a segment ends at the first keyframe (audio-only: frame) at the 2 s target, less 10 ms, so
// common frame rates and AAC rates give segments that round to the target, never a GOP more.
func TestSegmentsAreNoLongerThanTheirKeyframesNeed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame int64 // clockRate ticks per video frame, or 0 for audio only
		gop   int   // frames per keyframe
		rate  int   // AAC sample rate, audio only
		want  time.Duration
	}{
		{name: "29.97 fps, keyframe every 60 frames", frame: 3003, gop: 60, want: 2002 * time.Millisecond},
		{name: "29.97 fps, keyframe every 30 frames", frame: 3003, gop: 30, want: 2002 * time.Millisecond},
		{name: "25 fps, keyframe every 50 frames", frame: 3600, gop: 50, want: 2 * time.Second},
		{name: "30 fps, keyframe every 60 frames", frame: 3000, gop: 60, want: 2 * time.Second},
		{name: "59.94 fps, keyframe every 120 frames", frame: 1501, gop: 120, want: tsToDuration(120 * 1501)},
		{name: "AAC 48 kHz: 94 frames", rate: 48000, want: tsToDuration(94 * 1024 * clockRate / 48000)},
		{name: "AAC 44.1 kHz: 86 frames", rate: 44100, want: tsToDuration(86 * (1024 * clockRate / 44100))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 2*time.Second, 4096)
			if tc.frame > 0 {
				require.NoError(t, h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS}))
				for i := range 10 * tc.gop {
					require.NoError(t, h.seg.writeH264(int64(i)*tc.frame, videoAU(i%tc.gop == 0, 100)))
				}
			} else {
				aac := *testAAC
				aac.SampleRate = tc.rate
				require.NoError(t, h.seg.startSession(trackSet{AAC: &aac}))
				frame := int64(1024 * clockRate / tc.rate)
				for i := range int64(1000) {
					require.NoError(t, h.seg.writeAAC(i*frame, [][]byte{make([]byte, 50)}))
				}
			}
			h.seg.endSession()
			require.GreaterOrEqual(t, len(h.infos), 3)
			for seq := range uint64(len(h.infos) - 1) { // the last one was cut short by the end
				d := h.infos[seq].Duration
				require.Equal(t, tc.want, d, "segment %d", seq)
				require.InDelta(t, 2, d.Seconds(), 0.5, "segment %d rounds to the target", seq)
			}
		})
	}
}
