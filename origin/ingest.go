package origin

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpfragmented"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/pion/rtp"
)

// rtpSource is what the RTSP server session (publish) and the RTSP client (pull) have in common.
type rtpSource interface {
	OnPacketRTP(medi *description.Media, forma format.Format, cb gortsplib.OnPacketRTPFunc)
	PacketPTS(medi *description.Media, pkt *rtp.Packet) (int64, bool)
	PacketNTP(medi *description.Media, pkt *rtp.Packet) (time.Time, bool)
}

// ingestPlan is the choice of media and formats to take from a session.
type ingestPlan struct {
	tracks     trackSet
	videoMedia *description.Media
	video      *format.H264
	h265       *format.H265
	audioMedia *description.Media
	audio      *format.MPEG4Audio
	latm       *latmAudio
	opus       *format.Opus
	ignored    []string // codecs of media left out
}

// rtpMaps names the formats taken, as their SDP rtpmap says (e.g. "MP4A-LATM/44100/1"), for logs.
func (p *ingestPlan) rtpMaps() []string {
	var m []string
	if p.video != nil {
		m = append(m, p.video.RTPMap())
	}
	if p.h265 != nil {
		m = append(m, p.h265.RTPMap())
	}
	if p.opus != nil {
		m = append(m, p.opus.RTPMap())
	}
	if p.audio != nil {
		m = append(m, p.audio.RTPMap())
	}
	if p.latm != nil {
		m = append(m, p.latm.format.RTPMap())
	}
	return m
}

// codecName names a format for the operator, in the words gortsplib's deprecated Format.Codec
// used; a format without a name of its own goes by its rtpmap encoding, or its payload type.
func codecName(f format.Format) string {
	switch f.(type) {
	case *format.H264:
		return "H264"
	case *format.H265:
		return "H265"
	case *format.AV1:
		return "AV1"
	case *format.VP8:
		return "VP8"
	case *format.VP9:
		return "VP9"
	case *format.MPEG4Video:
		return "MPEG-4 Video"
	case *format.MPEG1Video:
		return "MPEG-1/2 Video"
	case *format.MJPEG:
		return "M-JPEG"
	case *format.MPEG4Audio:
		return "MPEG-4 Audio"
	case *format.MPEG4AudioLATM:
		return "MPEG-4 Audio LATM"
	case *format.MPEG1Audio:
		return "MPEG-1/2 Audio"
	case *format.Opus:
		return "Opus"
	case *format.AC3:
		return "AC-3"
	case *format.G711:
		return "G711"
	case *format.G722:
		return "G722"
	case *format.G726:
		return "G726"
	case *format.LPCM:
		return "LPCM"
	case *format.Speex:
		return "Speex"
	case *format.Vorbis:
		return "Vorbis"
	case *format.KLV:
		return "KLV"
	case *format.MPEGTS:
		return "MPEG-TS"
	}
	if enc, _, _ := strings.Cut(f.RTPMap(), "/"); enc != "" {
		return enc
	}
	return fmt.Sprintf("payload type %d", f.PayloadType())
}

func (p *ingestPlan) medias() []*description.Media {
	var m []*description.Media
	if p.videoMedia != nil {
		m = append(m, p.videoMedia)
	}
	if p.audioMedia != nil && p.audioMedia != p.videoMedia {
		m = append(m, p.audioMedia)
	}
	return m
}

// supportedCodecs tells a publisher (in the 415's reason) and an operator (in the log) what
// the origin takes.
const supportedCodecs = "send H.264 or H.265 video and/or AAC or Opus (mono or stereo) audio"

// planIngest picks the first H.264 or H.265 format and the first AAC or Opus one. strict (publishing) rejects any
// media with nothing we can mux, so the encoder's operator learns at once; a pulled camera cannot
// be reconfigured, so there unsupported media are left out as long as something remains.
func planIngest(medias []*description.Media, strict bool) (*ingestPlan, error) {
	p := &ingestPlan{}
	for _, medi := range medias {
		used := false
		var names []string
		for _, forma := range medi.Formats {
			switch f := forma.(type) {
			case *format.H264:
				if p.videoMedia == nil {
					p.video, p.videoMedia, used = f, medi, true
				}
			case *format.H265:
				if p.videoMedia == nil {
					p.h265, p.videoMedia, used = f, medi, true
				}
			case *format.Opus:
				if p.audioMedia == nil {
					if f.ChannelCount <= 2 {
						p.opus, p.audioMedia, used = f, medi, true
					} else {
						names = append(names, fmt.Sprintf("Opus with %d channels", f.ChannelCount))
					}
				}
			case *format.MPEG4Audio:
				if p.audioMedia == nil && f.Config != nil {
					p.audio, p.audioMedia, used = f, medi, true
				}
			case *format.MPEG4AudioLATM:
				if p.audioMedia == nil {
					if l, err := newLATMAudio(f); err == nil {
						p.latm, p.audioMedia, used = l, medi, true
					} else {
						names = append(names, codecName(forma)+" (not one program of one layer)")
					}
				}
			default:
				names = append(names, codecName(forma))
			}
			if used {
				break
			}
		}
		if !used {
			if len(names) == 0 {
				names = []string{string(medi.Type)}
			}
			p.ignored = append(p.ignored, names...)
		}
	}
	if (strict && len(p.ignored) > 0) || (p.videoMedia == nil && p.audioMedia == nil) {
		what := strings.Join(p.ignored, ", ")
		if what == "" {
			what = "no media"
		}
		return nil, fmt.Errorf("%w %s: %s", ErrUnsupportedCodec, what, supportedCodecs)
	}
	if p.video != nil {
		// The description is ours alone (parsed from this session's SDP): nothing sets its
		// parameters concurrently, so they are read directly.
		p.tracks.H264, p.tracks.SPS, p.tracks.PPS = true, p.video.SPS, p.video.PPS
	}
	if p.h265 != nil {
		p.tracks.H265, p.tracks.VPS, p.tracks.SPS, p.tracks.PPS = true, p.h265.VPS, p.h265.SPS, p.h265.PPS
	}
	if p.opus != nil {
		p.tracks.Opus = max(p.opus.ChannelCount, 1)
	}
	if p.audio != nil {
		p.tracks.AAC = p.audio.Config
	}
	if p.latm != nil {
		p.tracks.AAC = p.latm.config
	}
	return p, nil
}

// attach registers RTP callbacks that decode packets into access units and feed them to st as
// long as owner publishes it. Decoding errors (malformed or lost packets) are counted and skipped;
// a panic while muxing is contained to this session, which fail closes.
func (p *ingestPlan) attach(src rtpSource, st *stream, owner any, fail func(error)) error {
	if p.video != nil {
		dec, err := p.video.CreateDecoder()
		if err != nil {
			return fmt.Errorf("h264 decoder: %w", err)
		}
		onRTP(src, p.videoMedia, p.video, st, fail, "h264", dec.Decode,
			func(err error) bool {
				return errors.Is(err, rtph264.ErrMorePacketsNeeded) || errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious)
			},
			func(pts int64, ntp time.Time, au [][]byte) { _ = st.writeH264(owner, pts, ntp, au) }) // counted
	}
	if p.h265 != nil {
		dec, err := p.h265.CreateDecoder()
		if err != nil {
			return fmt.Errorf("h265 decoder: %w", err)
		}
		onRTP(src, p.videoMedia, p.h265, st, fail, "h265", dec.Decode,
			func(err error) bool {
				return errors.Is(err, rtph265.ErrMorePacketsNeeded) || errors.Is(err, rtph265.ErrNonStartingPacketAndNoPrevious)
			},
			func(pts int64, ntp time.Time, au [][]byte) { st.writeH265(owner, pts, ntp, au) })
	}
	if p.opus != nil {
		dec, err := p.opus.CreateDecoder()
		if err != nil {
			return fmt.Errorf("opus decoder: %w", err)
		}
		rate := int64(p.opus.ClockRate())
		onRTP(src, p.audioMedia, p.opus, st, fail, "opus", dec.Decode, never,
			func(pts int64, ntp time.Time, packet []byte) {
				st.writeOpus(owner, rescale(pts, clockRate, rate), ntp, [][]byte{packet})
			})
	}
	if p.audio != nil {
		dec, err := p.audio.CreateDecoder()
		if err != nil {
			return fmt.Errorf("aac decoder: %w", err)
		}
		rate := int64(p.audio.ClockRate())
		onRTP(src, p.audioMedia, p.audio, st, fail, "aac", dec.Decode,
			func(err error) bool { return errors.Is(err, rtpmpeg4audio.ErrMorePacketsNeeded) },
			func(pts int64, ntp time.Time, aus [][]byte) {
				_ = st.writeAAC(owner, rescale(pts, clockRate, rate), ntp, aus) // counted
			})
	}
	if p.latm != nil {
		dec, err := p.latm.format.CreateDecoder()
		if err != nil {
			return fmt.Errorf("latm decoder: %w", err)
		}
		latm := p.latm
		rate := int64(latm.format.ClockRate())
		// A LATM element is reassembled from fragments, then split into AAC frames; both steps'
		// errors are the stream's (the frames' count as malformed, never as "more needed").
		decode := func(pkt *rtp.Packet) ([][]byte, error) {
			el, err := dec.Decode(pkt)
			if err != nil {
				return nil, err
			}
			return latm.frames(el)
		}
		onRTP(src, p.audioMedia, latm.format, st, fail, "aac-latm", decode,
			func(err error) bool { return errors.Is(err, rtpfragmented.ErrMorePacketsNeeded) },
			func(pts int64, ntp time.Time, aus [][]byte) {
				_ = st.writeAAC(owner, rescale(pts, clockRate, rate), ntp, aus) // counted
			})
	}
	return nil
}

// onRTP registers the packet callback of one format: each packet with a timestamp is decoded;
// an error that only means the access unit needs more packets (partial) is skipped quietly,
// any other is counted against codec; a decoded unit goes to write with its PTS (in the format's
// clock rate) and NTP time. A panic in any of it fails this session only.
func onRTP[T any](src rtpSource, medi *description.Media, forma format.Format, st *stream, fail func(error),
	codec string, decode func(*rtp.Packet) (T, error), partial func(error) bool, write func(int64, time.Time, T)) {
	src.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		defer st.recoverPanic(fail)
		pts, ok := src.PacketPTS(medi, pkt)
		if !ok {
			return
		}
		unit, err := decode(pkt)
		if err != nil {
			if !partial(err) {
				st.rtpError(codec, err)
			}
			return
		}
		ntp, _ := src.PacketNTP(medi, pkt)
		write(pts, ntp, unit)
	})
}

// never is the partial rule of a decoder whose every error is the stream's.
func never(error) bool { return false }

// rescale converts v from clock rate from to clock rate to without overflowing.
func rescale(v, to, from int64) int64 {
	if from == to || from == 0 {
		return v
	}
	return (v/from)*to + (v%from)*to/from
}
