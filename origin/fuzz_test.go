package origin

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/stretchr/testify/require"
)

// FuzzSegmenterNeverPanics feeds arbitrary access units and timestamps (what a broken or
// hostile publisher's RTP decodes to) to an audio+video session: errors are fine, panics and
// invalid chunks are not.
func FuzzSegmenterNeverPanics(f *testing.F) {
	seed := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		return b
	}
	f.Add(seed(append([]byte{0, 0, 0, 0, 0}, videoAU(true, 50)[0]...), append([]byte{1, 0, 0, 0, 0}, 1, 2, 3)))
	f.Add(seed(append([]byte{0, 0, 0, 0, 9}, testSPS...), append([]byte{0, 0, 0, 1, 0}, 0x65, 1), append([]byte{0, 255, 255, 255, 255}, 0x41)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newHarness(t, 100*time.Millisecond, 188)
		if err := h.seg.startSession(trackSet{H264: true, SPS: testSPS, PPS: testPPS, AAC: testAAC}); err != nil {
			t.Fatal(err)
		}
		// Each record: 2-byte length, then kind (0 video, else audio), 4-byte signed timestamp
		// in ms, then the NALU or AAC frame.
		for len(data) >= 2 {
			n := int(binary.BigEndian.Uint16(data))
			data = data[2:]
			if n > len(data) || n < 5 {
				break
			}
			rec := data[:n]
			data = data[n:]
			ts := int64(int32(binary.BigEndian.Uint32(rec[1:5]))) * clockRate / 1000
			if rec[0] == 0 {
				_ = h.seg.writeH264(ts, [][]byte{rec[5:]})
			} else {
				_ = h.seg.writeAAC(ts, [][]byte{rec[5:]})
			}
			h.clock.advance(10 * time.Millisecond)
			h.seg.tick(h.clock.now())
		}
		h.seg.endSession()
		for seq := range h.infos {
			h.segmentBytes(seq) // verifies every chunk and the segment info
		}
	})
}

// FuzzLATMFrames unpacks arbitrary audioMuxElements (from a publisher's RTP): no panic, and
// what comes out is a set of non-empty AAC frames, no bigger together than the element, each of
// which packed alone into an element unpacks to itself.
func FuzzLATMFrames(f *testing.F) {
	l, err := newLATMAudio(&format.MPEG4AudioLATM{StreamMuxConfig: &mpeg4audio.StreamMuxConfig{
		Programs: []*mpeg4audio.StreamMuxConfigProgram{{Layers: []*mpeg4audio.StreamMuxConfigLayer{{
			AudioSpecificConfig: testAAC,
		}}}},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0x03, 1, 2, 3})
	f.Add([]byte{0xff, 0xff, 0x10, 9})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		aus, err := l.frames(data)
		if err != nil {
			require.Empty(t, aus)
			return
		}
		total := 0
		for _, au := range aus {
			require.NotEmpty(t, au)
			total += len(au)
			el, err := mpeg4audio.AudioMuxElement{
				StreamMuxConfig: l.format.StreamMuxConfig,
				Payloads:        [][][][]byte{{{au}}},
			}.Marshal()
			require.NoError(t, err)
			again, err := l.frames(el)
			require.NoError(t, err)
			require.Equal(t, [][]byte{au}, again)
		}
		require.Less(t, total, max(len(data), 1), "a payload length comes with every frame")
	})
}
