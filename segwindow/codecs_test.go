package segwindow

import (
	"bytes"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/substructs"
	"github.com/stretchr/testify/require"
)

// A 1080p Main-profile SPS (mediacommon's test case) whose constraint flags hold emulation
// prevention bytes: read raw, bytes 8 to 13 would give the wrong codecs name.
var hevcTestSPS = []byte{
	0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03,
	0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03,
	0x00, 0x78, 0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5,
	0x96, 0x66, 0x69, 0x24, 0xca, 0xe0, 0x10, 0x00,
	0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x01,
	0xe0, 0x80,
}

func TestHEVCCodecNameFollowsAnnexE(t *testing.T) {
	var sps h265.SPS
	require.NoError(t, sps.Unmarshal(hevcTestSPS))
	// Main (1), compatible with Main and Main 10 (flags 1, 2: 0x6), Main tier, level 4 (120),
	// progressive and frame-only (0x90).
	require.Equal(t, "hvc1.1.6.L120.90", hevcCodecName(&sps, hevcTestSPS))

	sps.ProfileTierLevel.GeneralTierFlag = 1
	sps.ProfileTierLevel.GeneralProfileSpace = 1
	require.Equal(t, "hvc1.A1.6.H120.90", hevcCodecName(&sps, hevcTestSPS))
}

// opusPacket returns an Opus packet of n 20 ms CELT fullband frames (RFC 6716 3.1: config 31,
// frame count code 3 for more than one frame).
func opusPacket(frames int) []byte {
	if frames == 1 {
		return []byte{31 << 3, 0xaa, 0xbb} // frame count code 0: one frame
	}
	return []byte{31<<3 | 3, byte(frames), 0xaa, 0xbb}
}

// muxOpusTS writes an audio-only Opus segment as the origin does: packets of the given numbers
// of 20 ms frames, three per PES, from PTS 10 s. It returns the sample durations they make.
func muxOpusTS(t testing.TB, channels int, framesPerPacket []int) ([]byte, []uint32) {
	var buf bytes.Buffer
	track := &mpegts.Track{Codec: &tscodecs.Opus{Desc: &substructs.OpusAudioDescriptor{ChannelConfigCode: uint8(channels)}}}
	w := &mpegts.Writer{W: &buf, Tracks: []*mpegts.Track{track}}
	require.NoError(t, w.Initialize())
	pts := int64(900000)
	var packets [][]byte
	var want []uint32
	var pesFrames int64
	for i, n := range framesPerPacket {
		packets = append(packets, opusPacket(n))
		want = append(want, uint32(n*960))
		pesFrames += int64(n)
		if len(packets) == 3 || i == len(framesPerPacket)-1 {
			require.NoError(t, w.WriteOpus(track, pts, packets))
			pts += pesFrames * 1800 // 20 ms in 90 kHz
			packets, pesFrames = nil, 0
		}
	}
	return buf.Bytes(), want
}

// TestOpusPartsFromTS: an Opus stream muxed as the origin does (audio-only, a few packets per
// PES) derives an init segment that declares Opus with its channel count and parts whose samples
// last as long as their packets say, in the 48 kHz timescale.
func TestOpusPartsFromTS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		channels int
		frames   []int // 20 ms frames per packet, PES of 3 packets
	}{
		{"mono 20 ms", 1, []int{1, 1, 1, 1, 1, 1}},
		{"stereo 60 ms", 2, []int{3, 3, 3}},
		{"stereo mixed", 2, []int{1, 3, 1, 2, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seg, want := muxOpusTS(t, tc.channels, tc.frames)
			buf := bytes.NewBuffer(seg)

			init, err := deriveInit(buf.Bytes())
			require.NoError(t, err)
			require.Equal(t, "opus", init.codecs)
			require.True(t, init.fmp4Only)
			var parsed fmp4.Init
			require.NoError(t, parsed.Unmarshal(bytes.NewReader(init.body)))
			require.Len(t, parsed.Tracks, 1)
			require.Equal(t, uint32(48000), parsed.Tracks[0].TimeScale)
			require.Equal(t, &codecs.Opus{ChannelCount: tc.channels}, parsed.Tracks[0].Codec)

			part, err := derivePart(buf.Bytes(), 0, 7, 0, clockHint{})
			require.NoError(t, err)
			require.True(t, part.independent)
			parts, _ := parseFMP4Part(t, part.body)
			require.Len(t, parts, 1)
			require.Len(t, parts[0].Tracks, 1)
			require.Equal(t, uint64(900000*48000/90000), parts[0].Tracks[0].BaseTime)
			var got []uint32
			var total uint32
			for _, s := range parts[0].Tracks[0].Samples {
				got = append(got, s.Duration)
				total += s.Duration
			}
			require.Equal(t, want, got)
			require.Equal(t, int64(total)*1e9/48000, int64(part.duration))
		})
	}
}

// TestOpusControlHeaderLimits: opus_access_units that run past their PES are refused, never
// read beyond it.
func TestOpusControlHeaderLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"no prefix", []byte{0x00, 0x00, 0x01, 0xf8}},
		{"size beyond", []byte{0x7f, 0xe0, 0x05, 0xf8}},
		{"size run without end", []byte{0x7f, 0xe0, 0xff, 0xff}},
		{"zero size", []byte{0x7f, 0xe0, 0x00}},
		{"extension beyond", []byte{0x7f, 0xe4, 0x01}},
		{"no duration", []byte{0x7f, 0xe0, 0x01, 0xfb}}, // code 3 without its count byte
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := opusFrames(tsPES{data: tc.data})
			require.ErrorIs(t, err, errBadTS)
		})
	}
	frames, err := opusFrames(tsPES{data: []byte{0x7f, 0xf8, 0x02, 0x00, 0x10, 0x00, 0x20, 0xf8, 0x01}})
	require.NoError(t, err, "start and end trim fields are skipped")
	require.Equal(t, []audioFrame{{au: []byte{0xf8, 0x01}, duration: 960}}, frames)
}
