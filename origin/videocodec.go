package origin

import (
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
)

// videoCodec is what the segmenter needs to know of a video codec: how to tell a keyframe and
// parameter sets from pictures, how to get DTS from PTS, and how to mux it. H.264 and H.265 share
// everything else (cutting at keyframes, parameter sets in front of every keyframe, parts).
type videoCodec interface {
	name() string
	// filter drops the parameter sets of an access unit (remembering them: ffmpeg sends them
	// only in the SDP, other encoders change them in band) and its delimiter (the MPEG-TS writer
	// adds its own). keyframe: the access unit can start a segment; picture: it holds one.
	filter(au [][]byte) (out [][]byte, keyframe, picture bool)
	// withParams puts the current parameter sets in front of a keyframe, so every segment
	// carries what a decoder needs to start there.
	withParams(au [][]byte) ([][]byte, error)
	extractDTS(au [][]byte, pts int64) (int64, error)
	// resync forgets the DTS state; the next keyframe starts it again.
	resync()
	tsCodec() tscodecs.Codec
	write(w *mpegts.Writer, track *mpegts.Track, pts, dts int64, au [][]byte) error
}

// h264Video follows an H.264 track.
type h264Video struct {
	sps, pps []byte
	dts      *h264.DTSExtractor
}

func (*h264Video) name() string { return "h264" }

func (v *h264Video) filter(au [][]byte) ([][]byte, bool, bool) {
	out := make([][]byte, 0, len(au)+2)
	idr, picture := false, false
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		switch h264.NALUType(nalu[0] & 0x1F) {
		case h264.NALUTypeSPS:
			v.sps = nalu
			continue
		case h264.NALUTypePPS:
			v.pps = nalu
			continue
		case h264.NALUTypeAccessUnitDelimiter:
			continue
		case h264.NALUTypeIDR:
			idr, picture = true, true
		case h264.NALUTypeNonIDR:
			picture = true
		}
		out = append(out, nalu)
	}
	return out, idr, picture
}

func (v *h264Video) withParams(au [][]byte) ([][]byte, error) {
	if v.sps == nil || v.pps == nil {
		return nil, fmt.Errorf("IDR frame without SPS/PPS (neither in the SDP nor in the stream)")
	}
	return append([][]byte{v.sps, v.pps}, au...), nil
}

func (v *h264Video) extractDTS(au [][]byte, pts int64) (int64, error) {
	if v.dts == nil {
		v.dts = &h264.DTSExtractor{}
		v.dts.Initialize()
	}
	return v.dts.Extract(au, pts)
}

func (v *h264Video) resync()               { v.dts = nil }
func (*h264Video) tsCodec() tscodecs.Codec { return &tscodecs.H264{} }
func (*h264Video) write(w *mpegts.Writer, track *mpegts.Track, pts, dts int64, au [][]byte) error {
	return w.WriteH264(track, pts, dts, au)
}

// h265Video follows an H.265 track. Segments start at IRAP pictures (IDR, and CRA, which
// libx265 makes with its default open GOP): a decoder that starts at a CRA drops the RASL
// pictures after it, which reach back before it; played from the previous segment they decode.
type h265Video struct {
	vps, sps, pps []byte
	dts           *h265.DTSExtractor
}

func (*h265Video) name() string { return "h265" }

func (v *h265Video) filter(au [][]byte) ([][]byte, bool, bool) {
	out := make([][]byte, 0, len(au)+3)
	irap, picture := false, false
	for _, nalu := range au {
		if len(nalu) < 2 { // an H.265 NAL unit header is two bytes
			continue
		}
		switch typ := h265.NALUType((nalu[0] >> 1) & 0x3f); {
		case typ == h265.NALUType_VPS_NUT:
			v.vps = nalu
			continue
		case typ == h265.NALUType_SPS_NUT:
			v.sps = nalu
			continue
		case typ == h265.NALUType_PPS_NUT:
			v.pps = nalu
			continue
		case typ == h265.NALUType_AUD_NUT:
			continue
		case typ >= h265.NALUType_BLA_W_LP && typ <= h265.NALUType_CRA_NUT:
			irap, picture = true, true
		case typ <= h265.NALUType_RASL_R:
			picture = true
		}
		out = append(out, nalu)
	}
	return out, irap, picture
}

func (v *h265Video) withParams(au [][]byte) ([][]byte, error) {
	if v.vps == nil || v.sps == nil || v.pps == nil {
		return nil, fmt.Errorf("IRAP frame without VPS/SPS/PPS (neither in the SDP nor in the stream)")
	}
	return append([][]byte{v.vps, v.sps, v.pps}, au...), nil
}

func (v *h265Video) extractDTS(au [][]byte, pts int64) (int64, error) {
	if v.dts == nil {
		v.dts = &h265.DTSExtractor{}
		v.dts.Initialize()
	}
	return v.dts.Extract(au, pts)
}

func (v *h265Video) resync()               { v.dts = nil }
func (*h265Video) tsCodec() tscodecs.Codec { return &tscodecs.H265{} }
func (*h265Video) write(w *mpegts.Writer, track *mpegts.Track, pts, dts int64, au [][]byte) error {
	return w.WriteH265(track, pts, dts, au)
}
