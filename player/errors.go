package player

import (
	"errors"

	"github.com/crowdsurf/crowdsurf/internal/runonce"
)

// ErrTSParse means a segment is not MPEG-TS that a player could demux.
var ErrTSParse = errors.New("segment is not valid MPEG-TS")

// ErrTimestampBack means a track's decode timestamps went back inside one discontinuity
// sequence: the stream restarted its clock without an EXT-X-DISCONTINUITY tag.
var ErrTimestampBack = errors.New("timestamps went back without EXT-X-DISCONTINUITY")

// ErrSequenceJump means the media sequence skipped segments the player still needed or went
// back to numbers it had already played.
var ErrSequenceJump = errors.New("media sequence jumped")

// ErrNotMediaPlaylist means the URL served something that is neither a media playlist nor a
// multivariant playlist with a variant to follow.
var ErrNotMediaPlaylist = errors.New("not an HLS media playlist")

// ErrHTTPStatus means the server answered a playlist or segment request with a non-2xx status.
var ErrHTTPStatus = errors.New("unexpected HTTP status")

// ErrRunTwice means Run was called on a Player that already ran; make a new Player instead. It
// is the one "Run called twice" error of every crowdsurf component.
var ErrRunTwice = runonce.ErrRunTwice

// ErrFMP4Parse means an init segment, part or segment is not fragmented MP4 that a player could
// demux (or names a track its init segment does not declare).
var ErrFMP4Parse = errors.New("media is not valid fragmented MP4")

// ErrNotIndependent means a part the playlist marks INDEPENDENT=YES does not start its video
// with a random access point (an IDR): a player that starts there shows garbage until the
// next keyframe.
var ErrNotIndependent = errors.New("INDEPENDENT=YES part does not start with a video random access point")
