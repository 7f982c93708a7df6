package segwindow

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
)

// The codecs the origin muxes into MPEG-TS and the derivation carries over into fMP4: H.264 or
// H.265 video, AAC (ADTS) or Opus audio. What differs between them is here; the demuxer and the
// fMP4 derivation share the rest.

// videoCodec is the video codec of a segment's program.
type videoCodec int

const (
	videoNone videoCodec = iota
	videoH264
	videoH265
)

// audioCodec is the audio codec of a segment's program.
type audioCodec int

const (
	audioNone audioCodec = iota
	audioAAC
	audioOpus
)

const (
	// MPEG-TS stream types (ISO 13818-1 Table 2-34) that the origin writes.
	streamTypeH264    = 0x1b
	streamTypeH265    = 0x24
	streamTypeAACADTS = 0x0f
	// streamTypePrivate carries Opus, named by a registration descriptor (ETSI TS 102 366
	// style, as ffmpeg and mediacommon write it).
	streamTypePrivate = 0x06

	descriptorRegistration = 0x05
	descriptorExtension    = 0x7f
	// extensionOpus is the descriptor_tag_extension of the opus_audio_descriptor.
	extensionOpus = 0x80
	// opusSampleRate is Opus's only timescale in MPEG-TS and fMP4.
	opusSampleRate = 48000
)

// opusRegistration is the format_identifier of an Opus stream.
var opusRegistration = []byte("Opus")

// opusChannels reads an opus_audio_descriptor's channel_config_code: mono or stereo only, the
// channel mapping family 0 that the fMP4 dOps box declares.
func opusChannels(desc []byte) (int, error) {
	if len(desc) < 1 {
		return 0, errors.New("empty Opus descriptor")
	}
	switch code := desc[0]; code {
	case 1, 2:
		return int(code), nil
	default:
		return 0, fmt.Errorf("opus channel configuration %#x (mono or stereo only)", code)
	}
}

// isParamOrDelimiter reports a NAL unit that the fMP4 samples leave out: parameter sets (the
// init segment carries them) and access unit delimiters (no place in fMP4).
func (c videoCodec) isParamOrDelimiter(nalu []byte) bool {
	if c == videoH265 {
		switch h265.NALUType((nalu[0] >> 1) & 0x3f) {
		case h265.NALUType_VPS_NUT, h265.NALUType_SPS_NUT, h265.NALUType_PPS_NUT, h265.NALUType_AUD_NUT:
			return true
		}
		return false
	}
	switch h264.NALUType(nalu[0] & 0x1f) {
	case h264.NALUTypeSPS, h264.NALUTypePPS, h264.NALUTypeAccessUnitDelimiter:
		return true
	}
	return false
}

// isKeyframe reports an access unit a decoder can start at: an IDR picture (H.265: or a CRA,
// where the origin cuts segments too).
func (c videoCodec) isKeyframe(au [][]byte) bool {
	if c == videoH265 {
		return h265.IsRandomAccess(au)
	}
	return h264.IsRandomAccess(au)
}

// findVideoConfig finds the parameter sets in front of the segment's first keyframe and returns
// the fMP4 codec and its RFC 6381 name.
func findVideoConfig(prog tsProgram, pes []tsPES) (mp4codecs.Codec, string, error) {
	for _, p := range pes {
		if p.pid != prog.videoPID {
			continue
		}
		au, err := annexB(p)
		if err != nil {
			return nil, "", err
		}
		if prog.video == videoH265 {
			if codec, name, ok, err := h265Config(au); ok || err != nil {
				return codec, name, err
			}
			continue
		}
		if codec, name, ok, err := h264Config(au); ok || err != nil {
			return codec, name, err
		}
	}
	return nil, "", fmt.Errorf("%w: no parameter sets in the segment", errBadTS)
}

func h264Config(au [][]byte) (*mp4codecs.H264, string, bool, error) {
	var sps, pps []byte
	for _, nalu := range au {
		switch h264.NALUType(nalu[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = nalu
		case h264.NALUTypePPS:
			pps = nalu
		}
	}
	if len(sps) < 4 || pps == nil {
		return nil, "", false, nil
	}
	var parsed h264.SPS
	if err := parsed.Unmarshal(sps); err != nil {
		return nil, "", false, fmt.Errorf("%w: SPS: %w", errBadTS, err)
	}
	return &mp4codecs.H264{SPS: sps, PPS: pps}, fmt.Sprintf("avc1.%02x%02x%02x", sps[1], sps[2], sps[3]), true, nil
}

// hevcSPSMinLen covers the SPS's NAL header and its general profile_tier_level (ISO 23008-2
// 7.3.3), which the hvcC box and the codecs name copy, with room for emulation prevention.
const hevcSPSMinLen = 15

func h265Config(au [][]byte) (*mp4codecs.H265, string, bool, error) {
	var vps, sps, pps []byte
	for _, nalu := range au {
		if len(nalu) < 2 {
			continue
		}
		switch h265.NALUType((nalu[0] >> 1) & 0x3f) {
		case h265.NALUType_VPS_NUT:
			vps = nalu
		case h265.NALUType_SPS_NUT:
			sps = nalu
		case h265.NALUType_PPS_NUT:
			pps = nalu
		}
	}
	if vps == nil || sps == nil || pps == nil {
		return nil, "", false, nil
	}
	if len(sps) < hevcSPSMinLen {
		return nil, "", false, fmt.Errorf("%w: H.265 SPS of %d bytes", errBadTS, len(sps))
	}
	var parsed h265.SPS
	if err := parsed.Unmarshal(sps); err != nil {
		return nil, "", false, fmt.Errorf("%w: H.265 SPS: %w", errBadTS, err)
	}
	return &mp4codecs.H265{VPS: vps, SPS: sps, PPS: pps}, hevcCodecName(&parsed, sps), true, nil
}

// hevcCodecName writes the RFC 6381 name of an H.265 stream as ISO 14496-15 Annex E gives it
// (what Safari and hls.js match against): hvc1.PROFILE.COMPAT.TIER LEVEL.CONSTRAINTS, e.g.
// hvc1.1.6.L93.B0 for Main profile, level 3.1.
func hevcCodecName(sps *h265.SPS, raw []byte) string {
	ptl := sps.ProfileTierLevel
	var b strings.Builder
	b.WriteString("hvc1.")
	if ptl.GeneralProfileSpace > 0 {
		b.WriteByte("ABC"[ptl.GeneralProfileSpace-1])
	}
	b.WriteString(strconv.Itoa(int(ptl.GeneralProfileIdc)))
	// The 32 compatibility flags in reverse bit order, in hex.
	var compat uint32
	for j, set := range ptl.GeneralProfileCompatibilityFlag {
		if set {
			compat |= 1 << j
		}
	}
	fmt.Fprintf(&b, ".%X.", compat)
	if ptl.GeneralTierFlag != 0 {
		b.WriteByte('H')
	} else {
		b.WriteByte('L')
	}
	b.WriteString(strconv.Itoa(int(ptl.GeneralLevelIdc)))
	// The six bytes of constraint flags after the compatibility flags (bytes 8 to 13 of the SPS
	// without emulation prevention), without trailing zero bytes.
	rbsp := h264.EmulationPreventionRemove(raw)
	if len(rbsp) >= 14 {
		constraints := rbsp[8:14]
		n := len(constraints)
		for n > 0 && constraints[n-1] == 0 {
			n--
		}
		for _, c := range constraints[:n] {
			fmt.Fprintf(&b, ".%X", c)
		}
	}
	return b.String()
}

// audioFrame is one audio access unit of a PES and how long it lasts, in samples.
type audioFrame struct {
	au       []byte
	duration uint64
}

// audioFrames splits an audio PES into frames; rate is the sample rate, the timescale of the
// fMP4 track.
func (c audioCodec) frames(p tsPES) (frames []audioFrame, rate int, err error) {
	if c == audioOpus {
		frames, err := opusFrames(p)
		return frames, opusSampleRate, err
	}
	pkts, err := adts(p)
	if err != nil {
		return nil, 0, err
	}
	rate = pkts[0].SampleRate
	for _, pkt := range pkts {
		if pkt.SampleRate != rate {
			return nil, 0, fmt.Errorf("%w: AAC sample rate changes from %d to %d", errBadTS, rate, pkt.SampleRate)
		}
		frames = append(frames, audioFrame{au: pkt.AU, duration: mpeg4audio.SamplesPerAccessUnit})
	}
	return frames, rate, nil
}

// opusFrames splits a PES of opus_access_units (ETSI TS 102 366 draft, table 6-6: an 11-bit
// 0x3ff prefix, trim and extension flags, the payload size as a run of 255s and a final byte,
// the optional fields, then the Opus packet).
func opusFrames(p tsPES) ([]audioFrame, error) {
	var frames []audioFrame
	b := p.data
	for len(b) > 0 {
		if len(b) < 3 || b[0] != 0x7f || b[1]&0xe0 != 0xe0 {
			return nil, fmt.Errorf("%w: no Opus control header at %d", errBadTS, p.offset)
		}
		startTrim, endTrim, ext := b[1]&0x10 != 0, b[1]&0x08 != 0, b[1]&0x04 != 0
		i, size := 2, 0
		for {
			if i >= len(b) {
				return nil, fmt.Errorf("%w: Opus size beyond the PES at %d", errBadTS, p.offset)
			}
			size += int(b[i])
			i++
			if b[i-1] != 0xff {
				break
			}
		}
		if startTrim {
			i += 2
		}
		if endTrim {
			i += 2
		}
		if ext {
			if i >= len(b) {
				return nil, fmt.Errorf("%w: Opus extension beyond the PES at %d", errBadTS, p.offset)
			}
			i += 1 + int(b[i])
		}
		if size == 0 || i+size > len(b) {
			return nil, fmt.Errorf("%w: Opus packet of %d bytes beyond the PES at %d", errBadTS, size, p.offset)
		}
		pkt := b[i : i+size]
		dur := opus.PacketDuration2(pkt)
		if dur <= 0 {
			return nil, fmt.Errorf("%w: Opus packet without duration at %d", errBadTS, p.offset)
		}
		frames = append(frames, audioFrame{au: pkt, duration: uint64(dur)})
		b = b[i+size:]
	}
	if len(frames) == 0 {
		return nil, fmt.Errorf("%w: no Opus packet at %d", errBadTS, p.offset)
	}
	return frames, nil
}
