package origin

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"

	"github.com/crowdsurf/crowdsurf/proto"
)

// clockRate is the MPEG-TS clock; the segmenter takes every timestamp in it.
const clockRate = 90000

// cutTolerance lets a keyframe that lands a hair before the target (RTP clock rounding, encoders
// whose GOP is exactly the target) cut the segment, instead of doubling it to the next keyframe.
const cutTolerance = clockRate / 100

// tsOffset shifts a session's timeline (which starts at 0) so that DTS and PCR, which run a little
// behind PTS, never go negative in the muxed stream.
const tsOffset = 10 * clockRate

// errNoTracks is returned when a session offers nothing the segmenter can mux.
var errNoTracks = errors.New("no H.264/H.265 video or AAC/Opus audio track")

// trackSet is what one publishing session carries: at most one video track (H.264 or H.265)
// and one audio track (AAC or Opus).
type trackSet struct {
	H264          bool
	H265          bool
	VPS, SPS, PPS []byte // from the SDP; ffmpeg sends them only there (VPS: H.265 only)

	// AAC is the audio config of an MPEG-4 audio (AAC) track, or nil.
	AAC *mpeg4audio.AudioSpecificConfig
	// Opus is the channel count (1 or 2) of an Opus track, 0 when there is none.
	Opus int
}

func (t trackSet) hasVideo() bool { return t.H264 || t.H265 }
func (t trackSet) hasAudio() bool { return t.AAC != nil || t.Opus > 0 }

func (t trackSet) codecs() []string {
	var c []string
	switch {
	case t.H264:
		c = append(c, "H264")
	case t.H265:
		c = append(c, "H265")
	}
	switch {
	case t.AAC != nil:
		c = append(c, "AAC")
	case t.Opus > 0:
		c = append(c, "Opus")
	}
	return c
}

// videoCodec and audioCodec return the session's codecs, nil for a track it does not have.
func (t trackSet) videoCodec() videoCodec {
	switch {
	case t.H264:
		return &h264Video{sps: t.SPS, pps: t.PPS}
	case t.H265:
		return &h265Video{vps: t.VPS, sps: t.SPS, pps: t.PPS}
	}
	return nil
}

func (t trackSet) audioCodec() audioCodec {
	switch {
	case t.AAC != nil:
		return aacAudio{config: t.AAC}
	case t.Opus > 0:
		return opusAudio{channels: t.Opus}
	}
	return nil
}

type segmenterConfig struct {
	Stream        string
	Target        time.Duration
	ChunkSize     int
	ChunkInterval time.Duration
	// ChunkDuration, when positive, sizes each segment's chunks to about this much of the
	// stream at the bit rate of the segments before it (ChunkSizeFor; ChunkSize at least).
	ChunkDuration time.Duration
	// PartTarget is the LL-HLS part target duration; parts end at access-unit boundaries so that
	// none is longer than it (give or take cutTolerance). Zero: no parts.
	PartTarget time.Duration
	Key        ed25519.PrivateKey
	FirstSeq   uint64
	Now        func() time.Time
	// Emit receives every chunk in order; it runs under the caller's lock and must not block.
	Emit func(*proto.Chunk)
	// OnSegment is called after a segment's last chunk was emitted.
	OnSegment func(seq uint64, info proto.SegmentInfo)
	// OnError hears about muxing errors that happen outside a write call.
	OnError func(error)
}

func (c segmenterConfig) onError(err error) {
	if c.OnError != nil {
		c.OnError(err)
	}
}

// segmenter turns the access units of a stream's publishing sessions into self-contained MPEG-TS
// segments, cut at keyframes once the target duration is reached (audio-only: cut on time), and
// hands their bytes to a chunker while they are written. It is not safe for concurrent use: the
// stream serialises calls.
type segmenter struct {
	cfg        segmenterConfig
	target     int64 // in clockRate units
	partTarget int64 // in clockRate units; 0: no parts
	seq        uint64

	// session state: reset by startSession
	tracks       trackSet
	video        videoCodec // nil: no video
	audio        audioCodec // nil: no audio
	inSession    bool
	discNext     bool // the next segment opens a new timeline
	dtsStarted   bool // the DTS extractor has seen a keyframe
	anchored     bool
	anchorTS     int64
	anchorWall   time.Time
	sampleNTP    time.Time
	lastVideoDTS int64
	videoFrame   int64 // duration of the last video frame, for the end of a cut-short segment
	haveVideoDTS bool

	// byteRate is the stream's bytes per second over its recent segments (a moving average),
	// which sizes the next segment's chunks; 0 until a segment was long enough to measure.
	byteRate float64

	// tl muxes the current timeline; nil until its first segment opens.
	tl *timeline

	cur *openSegment
}

// timeline is one MPEG-TS writer for all the segments of a timeline, so that continuity
// counters run on across segment boundaries as a player reading them back to back expects
// (restarting them at every segment makes ffmpeg flag "Packet corrupt" three times per
// boundary). Its output goes to the open segment's chunker. A new timeline, and so counters
// from 0, starts only at a discontinuity.
type timeline struct {
	w     *mpegts.Writer
	video *mpegts.Track
	audio *mpegts.Track
	out   segmentSink
}

// segmentSink forwards the writer's bytes to the open segment's chunker.
type segmentSink struct{ w io.Writer }

func (s *segmentSink) Write(p []byte) (int, error) {
	if s.w == nil {
		return 0, errors.New("mpeg-ts bytes outside a segment")
	}
	return s.w.Write(p)
}

type openSegment struct {
	seq   uint64
	w     *mpegts.Writer
	video *mpegts.Track
	audio *mpegts.Track
	ch    *Chunker
	start int64 // first DTS (video) or PTS (audio-only) in clockRate units
	// partStart is where the current LL-HLS part began, on the same clock as start.
	partStart int64
	videoEnd  int64
	audioEnd  int64
	pdt       time.Time

	// audio-only: frames waiting to be written as one PES
	pendingAudio    [][]byte
	pendingAudioPTS int64
}

func newSegmenter(cfg segmenterConfig) *segmenter {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &segmenter{cfg: cfg, seq: cfg.FirstSeq, target: durationToTS(cfg.Target), partTarget: durationToTS(max(cfg.PartTarget, 0))}
}

func durationToTS(d time.Duration) int64 { return int64(d) * clockRate / int64(time.Second) }
func tsToDuration(ts int64) time.Duration {
	return time.Duration(ts) * time.Second / clockRate
}

// nextSeq is the sequence number the next segment will get.
func (s *segmenter) nextSeq() uint64 { return s.seq }

// startSession begins a new timeline: publisher timestamps restart, so the first segment of every
// session after the first one carries a discontinuity.
func (s *segmenter) startSession(t trackSet) error {
	if !t.hasVideo() && !t.hasAudio() {
		return errNoTracks
	}
	s.endSession()
	s.tracks = t
	s.video, s.audio = t.videoCodec(), t.audioCodec()
	s.inSession = true
	s.discNext = s.seq != s.cfg.FirstSeq
	s.dtsStarted = false
	s.anchored = false
	s.haveVideoDTS = false
	s.videoFrame = 0
	s.tl = nil
	return nil
}

// endSession finishes the open segment with its real duration, so a publisher that vanishes
// mid-segment never leaves a broken segment behind, and marks it as the end of the stream
// (proto.FlagEnd on its last chunk) so playlists end. A session that never reached a keyframe
// has no segment to mark; the previous session's end then still stands.
func (s *segmenter) endSession() { s.stopSession(true) }

// stopSession is endSession; without endStream the stream does not end (a pull that reconnects).
func (s *segmenter) stopSession(endStream bool) {
	if s.cur != nil {
		end := s.cur.videoEnd
		if s.cur.video == nil {
			end = s.cur.audioEnd
		}
		s.finishSegmentAs(end, endStream)
	}
	s.inSession = false
}

// tick lets the chunker close a chunk on time when no new data arrives.
func (s *segmenter) tick(now time.Time) {
	if s.cur != nil {
		s.cur.ch.Tick(now)
	}
}

// maxNTPSkew bounds how far a publisher's NTP clock (RTCP sender reports) may be from ours
// before we trust our own clock instead: many cameras never set theirs.
const maxNTPSkew = 10 * time.Second

// setSampleNTP tells the segmenter the publisher's wall clock for the next sample, when RTCP
// sender reports gave one; zero means unknown.
func (s *segmenter) setSampleNTP(t time.Time) { s.sampleNTP = t }

// anchor maps the session's timeline to the wall clock at its first sample: through the RTP/NTP
// mapping of the publisher's sender reports when they are sane, else by arrival time.
func (s *segmenter) anchor(ts int64) {
	if s.anchored {
		return
	}
	s.anchored = true
	s.anchorTS = ts
	now := s.cfg.Now()
	s.anchorWall = now
	if ntp := s.sampleNTP; !ntp.IsZero() && ntp.Sub(now).Abs() <= maxNTPSkew {
		s.anchorWall = ntp
	}
}

// writeH264 takes one H.264 access unit with its PTS in clockRate units.
func (s *segmenter) writeH264(pts int64, au [][]byte) error {
	if !s.inSession || !s.tracks.H264 {
		return fmt.Errorf("h264 access unit outside a session with H.264 video")
	}
	return s.writeVideo(pts, au)
}

// writeH265 takes one H.265 access unit with its PTS in clockRate units.
func (s *segmenter) writeH265(pts int64, au [][]byte) error {
	if !s.inSession || !s.tracks.H265 {
		return fmt.Errorf("h265 access unit outside a session with H.265 video")
	}
	return s.writeVideo(pts, au)
}

func (s *segmenter) writeVideo(pts int64, au [][]byte) error {
	s.anchor(pts)
	v := s.video
	filtered, idr, picture := v.filter(au)
	if !picture {
		return nil
	}
	if idr {
		var err error
		if filtered, err = v.withParams(filtered); err != nil {
			return err
		}
	}

	if !s.dtsStarted {
		if !idr {
			return nil // a segment must start with a keyframe
		}
		s.dtsStarted = true
	}
	dts, err := v.extractDTS(filtered, pts)
	if err != nil {
		v.resync() // resynchronise at the next keyframe
		s.dtsStarted = false
		return fmt.Errorf("%s timestamps: %w", v.name(), err)
	}

	if s.cur != nil && s.jumped(dts) {
		if !idr {
			return fmt.Errorf("%s timestamp jumped by %v; waiting for a keyframe", v.name(), tsToDuration(dts-s.cur.start))
		}
		s.restartTimeline(s.cur.videoEnd, pts)
	}
	if s.cur != nil && idr && dts-s.cur.start >= s.target-cutTolerance {
		s.finishSegment(dts)
	}
	if s.cur == nil {
		if !idr {
			return nil
		}
		if err := s.openSegment(dts); err != nil {
			return err
		}
	} else if s.partFull(dts, s.videoFrame) {
		s.endPart(dts)
	}

	if s.haveVideoDTS && dts > s.lastVideoDTS {
		s.videoFrame = dts - s.lastVideoDTS
	}
	s.lastVideoDTS, s.haveVideoDTS = dts, true
	s.cur.videoEnd = max(s.cur.videoEnd, dts+s.videoFrame)
	if err := v.write(s.cur.w, s.cur.video, pts+tsOffset, dts+tsOffset, filtered); err != nil {
		return fmt.Errorf("mux %s: %w", v.name(), err)
	}
	return nil
}

// writeAAC takes the AAC access units of one RTP packet; pts is the first one's, in clockRate units.
func (s *segmenter) writeAAC(pts int64, aus [][]byte) error {
	if !s.inSession || s.tracks.AAC == nil {
		return fmt.Errorf("aac access unit outside a session with AAC audio")
	}
	return s.writeAudio(pts, aus)
}

// writeOpus takes the Opus packets of one RTP packet; pts is the first one's, in clockRate units.
func (s *segmenter) writeOpus(pts int64, packets [][]byte) error {
	if !s.inSession || s.tracks.Opus == 0 {
		return fmt.Errorf("opus packet outside a session with Opus audio")
	}
	return s.writeAudio(pts, packets)
}

func (s *segmenter) writeAudio(pts int64, aus [][]byte) error {
	a := s.audio
	frames := make([]audioFrame, 0, len(aus))
	var total int64
	for _, au := range aus {
		if d := a.frameDuration(au); d > 0 {
			frames = append(frames, audioFrame{au: au, duration: d})
			total += d
		}
	}
	if len(frames) < len(aus) {
		s.cfg.onError(fmt.Errorf("%s: %d of %d frames are empty or unreadable", a.name(), len(aus)-len(frames), len(aus)))
	}
	if len(frames) == 0 {
		return nil
	}
	s.anchor(pts)
	if s.tracks.hasVideo() {
		if s.cur == nil {
			return nil // video leads: audio waits for the first keyframe
		}
	} else {
		// Audio is the PCR track here, and the MPEG-TS writer repeats PAT/PMT before every PES
		// of the PCR track: group a few frames per PES so tables do not double the bitrate.
		defer s.groupAudio(pts, frames)
		if s.cur != nil && s.jumped(pts) {
			s.restartTimeline(s.cur.audioEnd, pts)
		}
		if s.cur != nil && pts-s.cur.start >= s.target-cutTolerance {
			s.finishSegment(pts)
		}
		if s.cur == nil {
			if err := s.openSegment(pts); err != nil {
				return err
			}
		}
	}
	s.cur.audioEnd = max(s.cur.audioEnd, pts+total)
	if !s.tracks.hasVideo() {
		return nil // groupAudio writes
	}
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = f.au
	}
	if err := a.write(s.cur.w, s.cur.audio, pts+tsOffset, out); err != nil {
		return fmt.Errorf("mux %s: %w", a.name(), err)
	}
	return nil
}

// audioFrame is one audio access unit and how long it lasts, in clockRate units.
type audioFrame struct {
	au       []byte
	duration int64
}

// partFull reports whether a sample at ts lasting about frame would make the open segment's
// current part longer than the part target: the part then ends before that sample. Parts end
// after, not at, the target (minus a sample), so that at 29.97 fps a 200 ms target gives parts of
// 6 frames (200.2 ms, within cutTolerance) and not of 5 (167 ms, below the 85 % of the target
// that RFC 8216bis asks of every part but a segment's last).
func (s *segmenter) partFull(ts, frame int64) bool {
	return s.partTarget > 0 && s.cur != nil && ts > s.cur.partStart && ts+frame-s.cur.partStart > s.partTarget+cutTolerance
}

// endPart ends the open segment's current LL-HLS part before the sample at ts: the chunker
// closes its pending chunk with proto.FlagPartEnd.
func (s *segmenter) endPart(ts int64) {
	s.cur.ch.EndPart()
	s.cur.partStart = ts
}

// audioFramesPerPES groups about 100 ms of audio-only frames into one PES (5 AAC frames at
// 48 kHz, 5 Opus packets of the usual 20 ms).
const audioFramesPerPES = 5

// groupAudio queues audio-only frames (after writeAudio chose their segment) and writes them as
// one PES once enough are queued. A segment's last frames are written by finishSegment. Parts of
// an audio-only stream end on time, between two frames: the queued frames are written first, so
// a part ends at a PES boundary.
func (s *segmenter) groupAudio(pts int64, frames []audioFrame) {
	if s.cur == nil {
		return
	}
	framePTS := pts
	for _, f := range frames {
		if s.partFull(framePTS, f.duration) {
			s.flushAudio()
			s.endPart(framePTS)
		}
		if len(s.cur.pendingAudio) == 0 {
			s.cur.pendingAudioPTS = framePTS
		}
		s.cur.pendingAudio = append(s.cur.pendingAudio, append([]byte(nil), f.au...))
		framePTS += f.duration
		if len(s.cur.pendingAudio) >= audioFramesPerPES {
			s.flushAudio()
		}
	}
}

func (s *segmenter) flushAudio() {
	seg := s.cur
	if seg == nil || len(seg.pendingAudio) == 0 {
		return
	}
	aus := seg.pendingAudio
	seg.pendingAudio = nil
	if err := s.audio.write(seg.w, seg.audio, seg.pendingAudioPTS+tsOffset, aus); err != nil {
		s.cfg.onError(fmt.Errorf("mux %s: %w", s.audio.name(), err))
	}
}

// jumped reports a timestamp that cannot belong to the open segment's timeline: it went back
// before the segment's start, or leapt far ahead (a publisher bug or corrupt RTP). Cutting
// there would produce a segment with a nonsense duration.
func (s *segmenter) jumped(ts int64) bool {
	return ts < s.cur.start || ts-s.cur.start > 10*max(s.target, clockRate)
}

// restartTimeline finishes the open segment where its media ended and starts a new timeline,
// marked as a discontinuity, at ts.
func (s *segmenter) restartTimeline(end int64, ts int64) {
	s.finishSegment(end)
	s.discNext = true
	s.anchored = false
	s.haveVideoDTS = false
	s.anchor(ts)
}

func (s *segmenter) openSegment(start int64) error {
	seg := &openSegment{seq: s.seq, start: start, partStart: start, videoEnd: start, audioEnd: start}
	s.seq++
	seg.pdt = s.anchorWall.Add(tsToDuration(start - s.anchorTS)).UTC()
	var flags proto.Flags
	if s.discNext {
		flags = proto.FlagDiscontinuity
		s.discNext = false
	}
	size := ChunkSizeFor(s.byteRate, s.cfg.ChunkDuration, s.cfg.ChunkSize)
	seg.ch = NewChunker(proto.ChunkID{Stream: s.cfg.Stream, Seq: seg.seq}, flags, size,
		s.cfg.ChunkInterval, s.cfg.Key, s.cfg.Now, s.cfg.Emit)

	if s.tl == nil || flags&proto.FlagDiscontinuity != 0 {
		tl, err := s.newTimeline()
		if err != nil {
			return err
		}
		s.tl = tl
	}
	// Every segment is still self-contained: its first write is a keyframe on the PCR track (or,
	// audio-only, audio, which the writer always marks random access), and such a write makes the
	// writer emit PAT/PMT first.
	s.tl.out.w = seg.ch
	seg.w, seg.video, seg.audio = s.tl.w, s.tl.video, s.tl.audio
	s.cur = seg
	return nil
}

// newTimeline makes the writer of a new timeline. Video comes first, so that the video track
// carries the PCR and every segment opens with its keyframe.
func (s *segmenter) newTimeline() (*timeline, error) {
	tl := &timeline{}
	var tracks []*mpegts.Track
	if s.video != nil {
		tl.video = &mpegts.Track{Codec: s.video.tsCodec()}
		tracks = append(tracks, tl.video)
	}
	if s.audio != nil {
		tl.audio = &mpegts.Track{Codec: s.audio.tsCodec()}
		tracks = append(tracks, tl.audio)
	}
	tl.w = &mpegts.Writer{W: &tl.out, Tracks: tracks}
	if err := tl.w.Initialize(); err != nil {
		return nil, fmt.Errorf("mpeg-ts writer: %w", err)
	}
	return tl, nil
}

func (s *segmenter) finishSegment(end int64) { s.finishSegmentAs(end, false) }

// finishSegmentAs finishes the open segment; endStream marks it as the end of the stream.
func (s *segmenter) finishSegmentAs(end int64, endStream bool) {
	s.flushAudio()
	seg := s.cur
	s.cur = nil
	if s.tl != nil {
		s.tl.out.w = nil
	}
	dur := tsToDuration(max(end-seg.start, 0))
	var info proto.SegmentInfo
	if endStream {
		info = seg.ch.FinishStream(dur, seg.pdt)
	} else {
		info = seg.ch.Finish(dur, seg.pdt)
	}
	s.measureRate(info)
	if s.cfg.OnSegment != nil {
		s.cfg.OnSegment(seg.seq, info)
	}
}

// measureRate folds a finished segment into byteRate. A segment cut short (a discontinuity, the
// end of a session) says little about the rate, so only those of at least half the target
// count; each moves the average a quarter of the way, so one scene change does not swing the
// chunk size of the next segment.
func (s *segmenter) measureRate(info proto.SegmentInfo) {
	if info.Duration < tsToDuration(s.target)/2 || info.Duration <= 0 {
		return
	}
	rate := float64(info.ByteLength) / info.Duration.Seconds()
	if s.byteRate == 0 {
		s.byteRate = rate
		return
	}
	s.byteRate += (rate - s.byteRate) / 4
}
