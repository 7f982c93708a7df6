package segwindow

import (
	"fmt"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
)

// The fMP4 (CMAF) variant of a stream is derived from its signed MPEG-TS chunks, by this code on
// the origin and on every peer alike: a part's bytes are a function of its segment's bytes up to
// the part's end and nothing else (no clock, no state from earlier segments), so every node
// serves byte-identical init segments and parts, and the mesh carries one stream only.

const (
	tsClockRate = 90000
	// timestampMask keeps MPEG-TS timestamps (33 bits) and differences of them in range.
	timestampMask = 1<<33 - 1
	// defaultVideoFrame is the duration of a part's only video sample when nothing came before
	// it in its segment (a segment of one frame): 1/30 s.
	defaultVideoFrame = tsClockRate / 30
	// maxSampleGap bounds the time between two samples of one track within a segment: the
	// origin cuts a segment when its timestamps jump, so a bigger gap means broken input.
	maxSampleGap = 10 * tsClockRate
)

// cmafPart is one derived LL-HLS part.
type cmafPart struct {
	body        []byte // moof + mdat
	duration    time.Duration
	independent bool    // its first video sample is an IDR (audio-only: always)
	clock       tsClock // how its segment's timestamps became decode times
}

// tsClock places a segment's 33-bit MPEG-TS timestamps (they wrap every 2^33 ticks, 26.5 h) on
// the 64-bit decode timeline of fMP4: the segment's first timestamp, origin, is decode time
// base, and every other one is read as a signed distance from it, so a wrap inside a segment
// costs nothing and a segment continues its predecessor's timeline across a wrap.
type tsClock struct {
	origin int64
	base   uint64
}

// at is the decode time of ts (90 kHz), never below 0.
func (c tsClock) at(ts int64) uint64 {
	d := (ts - c.origin) & timestampMask
	if d > timestampMask/2 {
		d -= timestampMask + 1 // before origin
	}
	if d < 0 && uint64(-d) > c.base {
		return 0
	}
	return uint64(int64(c.base) + d)
}

// clockHint is what a part's derivation knows of its segment's clock: its own (another part of
// the segment was derived: every part uses the same) or the previous segment's of the same
// timeline, to continue from. With neither, the timeline starts at this segment for this node
// and decode times start at its raw timestamps.
type clockHint struct {
	own, prev *tsClock
}

// resolve returns the segment's clock; first is the segment's first timestamp.
func (h clockHint) resolve(first int64) tsClock {
	switch {
	case h.own != nil:
		return *h.own
	case h.prev != nil:
		return tsClock{origin: first, base: h.prev.at(first)}
	default:
		return tsClock{origin: first, base: uint64(first)}
	}
}

// trackIDs numbers the tracks of the init segment and of every part: video first.
func trackIDs(prog tsProgram) (video, audio int) {
	switch {
	case prog.videoPID >= 0 && prog.audioPID >= 0:
		return 1, 2
	case prog.videoPID >= 0:
		return 1, 0
	default:
		return 0, 1
	}
}

// cmafInit is a derived init segment and the RFC 6381 codecs it declares (for CODECS in the
// multivariant playlist).
type cmafInit struct {
	body   []byte
	codecs string
	// fmp4Only: the multivariant playlist lists the fMP4 variant alone, because players that
	// choose a variant by its CODECS (hls.js, Safari) would pick the MPEG-TS one and fail on
	// H.265 or Opus in MPEG-TS, which they do not demux. index.m3u8 still serves it.
	fmp4Only bool
}

// deriveInit builds the fMP4 init segment from a segment's bytes: the parameter sets in front of
// its first keyframe (H.264: SPS, PPS; H.265: VPS, SPS, PPS) and the AAC configuration of its
// first ADTS header, or the Opus channel count of its PMT.
func deriveInit(seg []byte) (out cmafInit, err error) {
	defer recoverBadTS(&err)
	return remuxInit(seg)
}

// remuxInit is deriveInit without the safety net, so fuzzing sees any panic.
func remuxInit(seg []byte) (cmafInit, error) {
	prog, pes, err := demuxTS(seg, 0)
	if err != nil {
		return cmafInit{}, err
	}
	videoID, audioID := trackIDs(prog)
	var (
		init   fmp4.Init
		codecs []string
	)
	if videoID != 0 {
		codec, name, err := findVideoConfig(prog, pes)
		if err != nil {
			return cmafInit{}, err
		}
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: videoID, TimeScale: tsClockRate, Codec: codec})
		codecs = append(codecs, name)
	}
	if audioID != 0 && prog.audio == audioOpus {
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: audioID, TimeScale: opusSampleRate,
			Codec: &mp4codecs.Opus{ChannelCount: prog.opusChannels}})
		codecs = append(codecs, "opus")
	} else if audioID != 0 {
		config, err := findAACConfig(prog, pes)
		if err != nil {
			return cmafInit{}, err
		}
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: audioID, TimeScale: uint32(config.SampleRate),
			Codec: &mp4codecs.MPEG4Audio{Config: *config}})
		codecs = append(codecs, fmt.Sprintf("mp4a.40.%d", config.Type))
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return cmafInit{}, fmt.Errorf("%w: init segment: %w", errBadTS, err)
	}
	return cmafInit{body: buf.Bytes(), codecs: strings.Join(codecs, ","),
		fmp4Only: prog.video == videoH265 || prog.audio == audioOpus}, nil
}

func findAACConfig(prog tsProgram, pes []tsPES) (*mpeg4audio.AudioSpecificConfig, error) {
	for _, p := range pes {
		if p.pid != prog.audioPID {
			continue
		}
		pkts, err := adts(p)
		if err != nil {
			return nil, err
		}
		return &mpeg4audio.AudioSpecificConfig{Type: pkts[0].Type, SampleRate: pkts[0].SampleRate, ChannelConfig: pkts[0].ChannelConfig}, nil
	}
	return nil, fmt.Errorf("%w: no AAC frame in the segment", errBadTS)
}

// derivePart builds part number n of segment seq, which spans seg[start:]: seg is the
// segment's bytes up to the part's end.
func derivePart(seg []byte, start int, seq uint64, n int, clock clockHint) (part cmafPart, err error) {
	defer recoverBadTS(&err)
	return remuxPart(seg, start, seq, n, clock)
}

// remuxPart is derivePart without the safety net, so fuzzing sees any panic.
func remuxPart(seg []byte, start int, seq uint64, n int, clock clockHint) (part cmafPart, err error) {
	prog, pes, err := demuxTS(seg, start)
	if err != nil {
		return cmafPart{}, err
	}
	if len(pes) == 0 {
		return cmafPart{}, fmt.Errorf("%w: part %d of segment %d has no PES packet", errBadTS, n, seq)
	}
	part.clock = clock.resolve(pes[0].dts)
	videoID, audioID := trackIDs(prog)
	out := fmp4.Part{SequenceNumber: uint32(seq)*1000 + uint32(n)}
	var timescale, total uint64

	if videoID != 0 {
		track, independent, err := videoSamples(prog, pes, part.clock)
		if err != nil {
			return cmafPart{}, err
		}
		if track != nil {
			track.ID = videoID
			out.Tracks = append(out.Tracks, track)
			timescale, total = tsClockRate, sumDurations(track)
			part.independent = independent
		}
	}
	if audioID != 0 {
		track, rate, err := audioSamples(prog, pes, part.clock)
		if err != nil {
			return cmafPart{}, err
		}
		if track != nil {
			track.ID = audioID
			out.Tracks = append(out.Tracks, track)
			if videoID == 0 {
				timescale, total = uint64(rate), sumDurations(track)
				part.independent = true
			}
		}
	}
	if timescale == 0 {
		return cmafPart{}, fmt.Errorf("%w: part %d of segment %d has no sample of its leading track", errBadTS, n, seq)
	}
	var buf seekablebuffer.Buffer
	if err := out.Marshal(&buf); err != nil {
		return cmafPart{}, fmt.Errorf("%w: part: %w", errBadTS, err)
	}
	part.body = buf.Bytes()
	part.duration = time.Duration(total * uint64(time.Second) / timescale)
	return part, nil
}

// videoSamples turns the video PES packets of the part into fMP4 samples. Each sample lasts until
// the next one; the last one as long as the one before it (the origin ends a part when the next
// access unit arrives, so a constant frame rate gets exact durations), which may lie before the
// part.
func videoSamples(prog tsProgram, pes []tsPES, clock tsClock) (*fmp4.PartTrack, bool, error) {
	type frame struct {
		pts, dts int64
		au       [][]byte
		idr      bool
	}
	var (
		frames  []frame
		prevDTS int64 = -1 // the last video DTS before the part
	)
	for _, p := range pes {
		if p.pid != prog.videoPID {
			continue
		}
		if p.data == nil {
			prevDTS = p.dts
			continue
		}
		au, err := annexB(p)
		if err != nil {
			return nil, false, err
		}
		f := frame{pts: p.pts, dts: p.dts, idr: prog.video.isKeyframe(au)}
		for _, nalu := range au {
			if !prog.video.isParamOrDelimiter(nalu) {
				f.au = append(f.au, nalu)
			}
		}
		if len(f.au) == 0 {
			return nil, false, fmt.Errorf("%w: access unit at %d holds no picture", errBadTS, p.offset)
		}
		frames = append(frames, f)
	}
	if len(frames) == 0 {
		return nil, false, nil
	}
	track := &fmp4.PartTrack{BaseTime: clock.at(frames[0].dts)}
	for i, f := range frames {
		var dur int64
		switch {
		case i+1 < len(frames):
			dur = (frames[i+1].dts - f.dts) & timestampMask
		case i > 0:
			dur = (f.dts - frames[i-1].dts) & timestampMask
		case prevDTS >= 0:
			dur = (f.dts - prevDTS) & timestampMask
		default:
			dur = defaultVideoFrame
		}
		if dur == 0 || dur > maxSampleGap {
			return nil, false, fmt.Errorf("%w: video sample of %d ticks", errBadTS, dur)
		}
		offset := (f.pts - f.dts) & timestampMask
		if offset > timestampMask/2 {
			offset -= timestampMask + 1 // PTS before DTS: negative, allowed by trun version 1
		}
		if offset > maxSampleGap || offset < -maxSampleGap {
			return nil, false, fmt.Errorf("%w: PTS %d ticks from DTS", errBadTS, offset)
		}
		payload, err := h264.AVCC(f.au).Marshal() // length-prefixed NAL units: H.265 alike
		if err != nil {
			return nil, false, fmt.Errorf("%w: %w", errBadTS, err)
		}
		track.Samples = append(track.Samples, &fmp4.Sample{
			Duration: uint32(dur), PTSOffset: int32(offset), IsNonSyncSample: !f.idr, Payload: payload,
		})
	}
	return track, frames[0].idr, nil
}

// audioSamples turns the audio PES packets of the part into fMP4 samples (AAC: 1024 PCM samples
// each; Opus: as long as its packet says), in the timescale of the stream's sample rate. When a
// PES starts later than the frames before it end (the publisher dropped audio), the last frame
// before it stretches to it, so audio stays where its timestamps say.
func audioSamples(prog tsProgram, pes []tsPES, clock tsClock) (*fmp4.PartTrack, int, error) {
	type group struct {
		start  uint64 // in the sample rate's timescale
		frames []audioFrame
	}
	var (
		groups []group
		rate   int
	)
	for _, p := range pes {
		if p.pid != prog.audioPID || p.data == nil {
			continue
		}
		frames, r, err := prog.audio.frames(p)
		if err != nil {
			return nil, 0, err
		}
		if rate == 0 {
			rate = r
		} else if r != rate {
			return nil, 0, fmt.Errorf("%w: audio sample rate changes from %d to %d", errBadTS, rate, r)
		}
		groups = append(groups, group{start: clock.at(p.pts) * uint64(rate) / tsClockRate, frames: frames})
	}
	if len(groups) == 0 {
		return nil, 0, nil
	}
	track := &fmp4.PartTrack{BaseTime: groups[0].start}
	for i, g := range groups {
		end := g.start // where the frame being added starts
		for j, f := range g.frames {
			dur := f.duration
			if j == len(g.frames)-1 && i+1 < len(groups) {
				if next := groups[i+1].start; next > end && next-end <= 4*f.duration {
					dur = next - end
				}
			}
			end += f.duration
			track.Samples = append(track.Samples, &fmp4.Sample{Duration: uint32(dur), Payload: f.au})
		}
	}
	return track, rate, nil
}

func sumDurations(t *fmp4.PartTrack) uint64 {
	var d uint64
	for _, s := range t.Samples {
		d += uint64(s.Duration)
	}
	return d
}

// annexB splits a video PES into NAL units, refusing empty ones.
func annexB(p tsPES) ([][]byte, error) {
	var au h264.AnnexB
	if err := au.Unmarshal(p.data); err != nil {
		return nil, fmt.Errorf("%w: video at %d: %w", errBadTS, p.offset, err)
	}
	for _, nalu := range au {
		if len(nalu) == 0 {
			return nil, fmt.Errorf("%w: empty NAL unit at %d", errBadTS, p.offset)
		}
	}
	if len(au) == 0 {
		return nil, fmt.Errorf("%w: no NAL unit at %d", errBadTS, p.offset)
	}
	return au, nil
}

// adts splits an audio PES into AAC frames.
func adts(p tsPES) (mpeg4audio.ADTSPackets, error) {
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(p.data); err != nil {
		return nil, fmt.Errorf("%w: ADTS at %d: %w", errBadTS, p.offset, err)
	}
	if len(pkts) == 0 {
		return nil, fmt.Errorf("%w: no AAC frame at %d", errBadTS, p.offset)
	}
	if pkts[0].SampleRate <= 0 {
		return nil, fmt.Errorf("%w: AAC sample rate %d at %d", errBadTS, pkts[0].SampleRate, p.offset)
	}
	return pkts, nil
}

// recoverBadTS turns a panic of the media libraries on hostile input into an error. Our own
// parsing checks every bound; the libraries' parsers are fuzzed upstream, but a publisher's
// garbage must never take a node down, so the derivation does not bet on it.
func recoverBadTS(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %v", errBadTS, r)
	}
}
