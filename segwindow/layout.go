package segwindow

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/crowdsurf/crowdsurf/proto"
)

// The URL layout of a stream's HLS and chunks, the same on the origin and on every peer. This
// file is its one definition: the routes (Server.Register), the playlist's segment URIs and
// every client that builds a URL (the peer's CDN path, the load test, the demo) use it.
//
//	/live/STREAM/index.m3u8          the live playlist (MPEG-TS segments)
//	/live/STREAM/SEQ.ts              a whole complete segment
//	/live/STREAM/SEQ/INDEX.chunk     one signed chunk frame
//	/live/STREAM/SEQ/all.chunks      every chunk frame of a complete segment (AllChunks)
//	/live/STREAM/SEQ/slice-I-of-K.chunks  the frames of a complete segment's chunks whose
//	                                 index is I modulo K (Slice): a joiner's share of a start
//	                                 segment in a crowd
//	/live/STREAM/ll.m3u8             the LL-HLS playlist (fMP4 segments and parts)
//	/live/STREAM/init.mp4            the fMP4 init segment of the oldest listed segment
//	/live/STREAM/init-D.mp4          the init segment of timeline D (the discontinuity sequence
//	                                 number: a publisher reconnect may change SPS/PPS)
//	/live/STREAM/SEQ.mp4             a whole complete segment as fMP4 (its parts back to back)
//	/live/STREAM/SEQ.PART.mp4        one LL-HLS part (PART counts from 0 within the segment)
//	/live/STREAM/master.m3u8         a multivariant playlist naming index.m3u8 and ll.m3u8
const (
	// PlaylistFile is the live playlist's file name.
	PlaylistFile = "index.m3u8"
	// LLPlaylistFile is the LL-HLS playlist's file name.
	LLPlaylistFile = "ll.m3u8"
	// MasterPlaylistFile is the multivariant playlist's file name.
	MasterPlaylistFile = "master.m3u8"
	// InitFile is the fMP4 init segment's file name.
	InitFile   = "init.mp4"
	segmentExt = ".ts"
	chunkExt   = ".chunk"
	fmp4Ext    = ".mp4"
)

// initPrefix starts the file name of a timeline's init segment.
const initPrefix = "init-"

// InitURI is the URI of timeline d's init segment as the LL playlist's EXT-X-MAP names it: d is
// the discontinuity sequence number of the timeline's segments.
func InitURI(d uint64) string { return initPrefix + strconv.FormatUint(d, 10) + fmp4Ext }

// ParseInitURI reads a timeline's init segment file name, written as InitURI writes it.
func ParseInitURI(name string) (uint64, bool) {
	text, ok := strings.CutPrefix(name, initPrefix)
	if !ok {
		return 0, false
	}
	text, ok = strings.CutSuffix(text, fmp4Ext)
	if !ok {
		return 0, false
	}
	d, ok := parseDecimal(text)
	if !ok || InitURI(d) != name {
		return 0, false
	}
	return d, true
}

// LLPlaylistPath is the LL-HLS playlist's path.
func LLPlaylistPath(stream string) string { return StreamPath(stream) + "/" + LLPlaylistFile }

// MasterPlaylistPath is the multivariant playlist's path.
func MasterPlaylistPath(stream string) string { return StreamPath(stream) + "/" + MasterPlaylistFile }

// FMP4SegmentURI is an fMP4 segment's URI as the LL playlist lists it, relative to it.
func FMP4SegmentURI(seq uint64) string { return strconv.FormatUint(seq, 10) + fmp4Ext }

// PartURI is a part's URI as the LL playlist lists it, relative to it.
func PartURI(seq uint64, part int) string {
	return strconv.FormatUint(seq, 10) + "." + strconv.Itoa(part) + fmp4Ext
}

// maxPartIndex bounds a part number in a URI: a segment has at most a chunk per part.
const maxPartIndex = 1 << 16

// ParseFMP4URI reads an fMP4 file name of the LL playlist: "SEQ.mp4" (part < 0) or
// "SEQ.PART.mp4", written as FMP4SegmentURI and PartURI write them (no leading zeros, so every
// part has one URL and caches hold one copy). Anything else is not one (ok false).
func ParseFMP4URI(name string) (seq uint64, part int, ok bool) {
	seq, part, ok = parseFMP4URI(name)
	if !ok {
		return 0, 0, false
	}
	canonical := FMP4SegmentURI(seq)
	if part >= 0 {
		canonical = PartURI(seq, part)
	}
	if canonical != name {
		return 0, 0, false
	}
	return seq, part, true
}

func parseFMP4URI(name string) (seq uint64, part int, ok bool) {
	base, found := strings.CutSuffix(name, fmp4Ext)
	if !found {
		return 0, 0, false
	}
	seqText, partText, isPart := strings.Cut(base, ".")
	seq, ok = parseDecimal(seqText)
	if !ok {
		return 0, 0, false
	}
	if !isPart {
		return seq, -1, true
	}
	p, ok := parseDecimal(partText)
	if !ok || p >= maxPartIndex {
		return 0, 0, false
	}
	return seq, int(p), true
}

// parseDecimal reads an unsigned decimal number: digits only (no sign, no spaces), at most 20.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// StreamPath is the path under which a stream's HLS lives: /live/STREAM.
func StreamPath(stream string) string { return "/live/" + stream }

// PlaylistPath is the live playlist's path.
func PlaylistPath(stream string) string { return StreamPath(stream) + "/" + PlaylistFile }

// SegmentURI is a segment's URI as the playlist lists it, relative to the playlist.
func SegmentURI(seq uint64) string { return strconv.FormatUint(seq, 10) + segmentExt }

// ChunkPath is the path of one chunk frame.
func ChunkPath(stream string, seq uint64, index uint32) string {
	return fmt.Sprintf("%s/%d/%d%s", StreamPath(stream), seq, index, chunkExt)
}

// BundlePath is the path of a complete segment's bundle of chunk frames.
func BundlePath(stream string, seq uint64) string {
	return fmt.Sprintf("%s/%d/%s", StreamPath(stream), seq, AllChunks)
}

// Slice names the chunks of a segment whose index is Index modulo Count: what a joiner in a crowd
// fetches of a start segment from the CDN, trusting its fellow joiners for the other slices.
type Slice struct {
	Index, Count int
}

// MaxSliceCount bounds Slice.Count (a slice per stripe at most).
const MaxSliceCount = proto.MaxStripes

const (
	slicePrefix = "slice-"
	sliceSep    = "-of-"
)

// Valid says whether s names a slice a server serves: 0 <= Index < Count, 2 <= Count <=
// MaxSliceCount (a slice of one is the whole bundle, AllChunks).
func (s Slice) Valid() bool {
	return s.Count >= 2 && s.Count <= MaxSliceCount && s.Index >= 0 && s.Index < s.Count
}

// Holds says whether chunk index belongs to the slice.
func (s Slice) Holds(index uint32) bool { return int(index%uint32(s.Count)) == s.Index }

// File is the slice's file name under the segment's directory.
func (s Slice) File() string {
	return slicePrefix + strconv.Itoa(s.Index) + sliceSep + strconv.Itoa(s.Count) + chunkExt + "s"
}

// ParseSliceFile reads a slice's file name as Slice.File writes it (nothing else: one URL per
// slice, one copy in a cache).
func ParseSliceFile(name string) (Slice, bool) {
	text, ok := strings.CutPrefix(name, slicePrefix)
	if !ok {
		return Slice{}, false
	}
	text, ok = strings.CutSuffix(text, chunkExt+"s")
	if !ok {
		return Slice{}, false
	}
	iText, kText, ok := strings.Cut(text, sliceSep)
	if !ok {
		return Slice{}, false
	}
	i, ok1 := parseDecimal(iText)
	k, ok2 := parseDecimal(kText)
	if !ok1 || !ok2 || k > MaxSliceCount {
		return Slice{}, false
	}
	s := Slice{Index: int(i), Count: int(k)}
	if !s.Valid() || s.File() != name {
		return Slice{}, false
	}
	return s, true
}

// SlicePath is the path of a slice of a complete segment's chunk frames.
func SlicePath(stream string, seq uint64, s Slice) string {
	return fmt.Sprintf("%s/%d/%s", StreamPath(stream), seq, s.File())
}

// ParseSegmentURI reads the seq of a segment URI the playlist lists ("SEQ.ts", possibly with a
// directory or a query in front of or after it).
func ParseSegmentURI(uri string) (uint64, bool) {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if i := strings.LastIndexByte(uri, '/'); i >= 0 {
		uri = uri[i+1:]
	}
	name, ok := strings.CutSuffix(uri, segmentExt)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(name, 10, 64)
	return seq, err == nil
}
