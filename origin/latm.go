package origin

import (
	"fmt"

	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// latmAudio unpacks MP4A-LATM (RFC 6416; GStreamer's rtpmp4apay, ffmpeg -rtpflags latm) into
// raw AAC frames, which the segmenter writes as ADTS: HLS players do not play LATM in MPEG-TS.
type latmAudio struct {
	format *format.MPEG4AudioLATM
	config *mpeg4audio.AudioSpecificConfig
}

// newLATMAudio accepts the common case: one program with one AAC layer.
func newLATMAudio(f *format.MPEG4AudioLATM) (*latmAudio, error) {
	smc := f.StreamMuxConfig
	if smc == nil || len(smc.Programs) != 1 || len(smc.Programs[0].Layers) != 1 ||
		smc.Programs[0].Layers[0].AudioSpecificConfig == nil {
		return nil, fmt.Errorf("%w MPEG-4 Audio LATM with other than one program of one layer", ErrUnsupportedCodec)
	}
	return &latmAudio{format: f, config: smc.Programs[0].Layers[0].AudioSpecificConfig}, nil
}

// frames extracts the AAC frames of one audioMuxElement.
func (l *latmAudio) frames(element []byte) ([][]byte, error) {
	el := mpeg4audio.AudioMuxElement{MuxConfigPresent: l.format.CPresent, StreamMuxConfig: l.format.StreamMuxConfig}
	if err := el.Unmarshal(element); err != nil {
		return nil, fmt.Errorf("LATM audioMuxElement: %w", err)
	}
	aus := make([][]byte, 0, len(el.Payloads))
	// Indexes: subframe, program, layer. An empty payload is no AAC frame (a zero payload
	// length decodes fine): written as one it would be an empty ADTS frame that decoders reject
	// and that counts 1024 samples of nothing into the segment's duration.
	for _, sub := range el.Payloads {
		if len(sub) > 0 && len(sub[0]) > 0 && len(sub[0][0]) > 0 {
			aus = append(aus, sub[0][0])
		}
	}
	return aus, nil
}
