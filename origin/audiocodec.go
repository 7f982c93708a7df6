package origin

import (
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/substructs"
)

// audioCodec is what the segmenter needs to know of an audio codec: how long a frame lasts and
// how to mux it.
type audioCodec interface {
	name() string
	// frameDuration is how long one frame lasts, in clockRate units; 0 for a frame that is
	// none (it is dropped).
	frameDuration(au []byte) int64
	tsCodec() tscodecs.Codec
	write(w *mpegts.Writer, track *mpegts.Track, pts int64, aus [][]byte) error
}

// aacAudio is AAC, written as ADTS.
type aacAudio struct {
	config *mpeg4audio.AudioSpecificConfig
}

func (aacAudio) name() string { return "aac" }

func (a aacAudio) frameDuration(au []byte) int64 {
	if len(au) == 0 {
		return 0
	}
	rate := int64(a.config.SampleRate)
	if rate <= 0 {
		rate = 48000
	}
	return mpeg4audio.SamplesPerAccessUnit * clockRate / rate
}

func (a aacAudio) tsCodec() tscodecs.Codec { return &tscodecs.MPEG4Audio{Config: *a.config} }
func (aacAudio) write(w *mpegts.Writer, track *mpegts.Track, pts int64, aus [][]byte) error {
	return w.WriteMPEG4Audio(track, pts, aus)
}

// opusAudio is Opus (RFC 7587), written as ETSI TS 102 366 style opus_access_units with the
// registration descriptor "Opus". Mono or stereo: the fMP4 variant's dOps box says channel
// mapping family 0, which has no more channels.
type opusAudio struct{ channels int }

func (opusAudio) name() string { return "opus" }

// frameDuration reads the packet's TOC: Opus packets last 2.5 to 120 ms, 20 ms from most
// encoders.
func (opusAudio) frameDuration(au []byte) int64 {
	return opus.PacketDuration2(au) * clockRate / 48000
}

func (a opusAudio) tsCodec() tscodecs.Codec {
	return &tscodecs.Opus{Desc: &substructs.OpusAudioDescriptor{ChannelConfigCode: uint8(a.channels)}}
}

func (opusAudio) write(w *mpegts.Writer, track *mpegts.Track, pts int64, aus [][]byte) error {
	return w.WriteOpus(track, pts, aus)
}
