package segwindow

import (
	"fmt"
	"strconv"
	"strings"
)

// The URL layout of a stream's HLS and chunks, the same on the origin and on every peer. This
// file is its one definition: the routes (Server.Register), the playlist's segment URIs and
// every client that builds a URL (the peer's CDN path, the load test, the demo) use it.
//
//	/live/STREAM/index.m3u8          the live playlist
//	/live/STREAM/SEQ.ts              a whole complete segment
//	/live/STREAM/SEQ/INDEX.chunk     one signed chunk frame
//	/live/STREAM/SEQ/all.chunks      every chunk frame of a complete segment (AllChunks)
const (
	// PlaylistFile is the live playlist's file name.
	PlaylistFile = "index.m3u8"
	segmentExt   = ".ts"
	chunkExt     = ".chunk"
)

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
