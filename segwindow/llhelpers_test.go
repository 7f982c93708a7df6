package segwindow

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// A real SPS/PPS (libx264, baseline, 320x240, pic_order_cnt_type 2) so the fMP4 init segment
// can be built; slice bodies need not be real for the remux.
var (
	llTestSPS = []byte{0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0c, 0xa3, 0xc5, 0x0a, 0xa8}
	llTestPPS = []byte{0x68, 0xce, 0x0f, 0xc8}
	llTestAAC = mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelConfig: 2}
)

// tsSegment is a segment muxed like the origin's: PAT/PMT first, an IDR with SPS/PPS, a part end
// before every partFrames-th frame, and AAC interleaved after each frame when audio is on.
type tsSegment struct {
	data     []byte
	partEnds []int // byte offsets where parts end (the last one is len(data))
	frames   int
}

type tsSpec struct {
	frames     int
	fps        int
	partFrames int
	audio      bool
	firstPTS   int64  // in 90 kHz
	frameBytes int    // default 200
	sps        []byte // default llTestSPS
}

// muxTS writes the segment with mediacommon's MPEG-TS writer, as the origin does.
func muxTS(t testing.TB, s tsSpec) tsSegment {
	var buf bytes.Buffer
	video := &mpegts.Track{Codec: &tscodecs.H264{}}
	tracks := []*mpegts.Track{video}
	var audio *mpegts.Track
	if s.audio {
		audio = &mpegts.Track{Codec: &tscodecs.MPEG4Audio{Config: llTestAAC}}
		tracks = append(tracks, audio)
	}
	w := &mpegts.Writer{W: &buf, Tracks: tracks}
	require.NoError(t, w.Initialize())
	frame := int64(90000 / s.fps)
	aacFrame := int64(1024 * 90000 / 48000)
	nextAudio := s.firstPTS
	out := tsSegment{frames: s.frames}
	for i := range s.frames {
		if i > 0 && i%s.partFrames == 0 {
			out.partEnds = append(out.partEnds, buf.Len())
		}
		body := make([]byte, max(s.frameBytes, 200)+i%7)
		_, _ = rand.Read(body)
		au := [][]byte{body}
		if i == 0 {
			body[0] = byte(h264.NALUTypeIDR) | 0x60
			sps := llTestSPS
			if s.sps != nil {
				sps = s.sps
			}
			au = [][]byte{sps, llTestPPS, body}
		} else {
			body[0] = byte(h264.NALUTypeNonIDR) | 0x40
		}
		pts := s.firstPTS + int64(i)*frame
		require.NoError(t, w.WriteH264(video, pts, pts, au))
		for audio != nil && nextAudio < pts+frame {
			aac := make([]byte, 50)
			_, _ = rand.Read(aac)
			require.NoError(t, w.WriteMPEG4Audio(audio, nextAudio, [][]byte{aac}))
			nextAudio += aacFrame
		}
	}
	out.data = buf.Bytes()
	out.partEnds = append(out.partEnds, len(out.data))
	return out
}

// tsChunks cuts a muxed segment into chunks of at most size bytes that also end at every part
// end (FlagPartEnd), like the origin's chunker.
func tsChunks(seq uint64, seg tsSegment, size int, dur time.Duration) []*proto.Chunk {
	var cs []*proto.Chunk
	start := 0
	for _, end := range seg.partEnds {
		for off := start; off < end; off += size {
			c := &proto.Chunk{ID: proto.ChunkID{Stream: testStream, Seq: seq, Index: uint32(len(cs))}, Data: seg.data[off:min(off+size, end)]}
			if off+size >= end {
				c.Flags = proto.FlagPartEnd
			}
			cs = append(cs, c)
		}
		start = end
	}
	last := cs[len(cs)-1]
	last.Flags = proto.FlagLast // the last chunk ends the last part without the flag
	last.Info = proto.SegmentInfo{ChunkCount: uint32(len(cs)), ByteLength: uint64(len(seg.data)), Duration: dur,
		ProgramDateTime: testEpoch.Add(time.Duration(seq) * dur)}
	return cs
}

// llSegment is one segment of a test stream at 25 fps, parts of 5 frames (200 ms).
func llTestSegment(t testing.TB, seq uint64, frames int) []*proto.Chunk {
	seg := muxTS(t, tsSpec{frames: frames, fps: 25, partFrames: 5, audio: true, firstPTS: 900000 + int64(seq)*int64(frames)*3600})
	return tsChunks(seq, seg, 1000, time.Duration(frames)*40*time.Millisecond)
}

// parseFMP4Part decodes a part and returns its tracks' sample counts by track ID.
func parseFMP4Part(t testing.TB, b []byte) (fmp4.Parts, map[int]int) {
	var parts fmp4.Parts
	require.NoError(t, parts.Unmarshal(b))
	counts := map[int]int{}
	for _, p := range parts {
		for _, tr := range p.Tracks {
			counts[tr.ID] += len(tr.Samples)
		}
	}
	return parts, counts
}
