package player

import (
	"strconv"
	"strings"
	"time"
)

// llTags is what a media playlist says about low-latency delivery (RFC 8216bis 4.4.3.7-8,
// 4.4.4.9, 4.4.5.3), read in a pass of our own. hls-m3u8 v0.6.5 cannot be trusted with it: it
// gives a part to a segment by comparing the numbers in their URIs (a part whose URI does not
// carry its segment's number lands on the next segment), silently drops an EXT-X-PART before
// the playlist's first EXTINF (ErrPlaylistEmpty, ignored when not strict), and drops the parts
// of all but the last three segments while reading. Here a part belongs to the segment whose
// EXTINF and URI follow it, as the RFC says, and segments are numbered from
// EXT-X-MEDIA-SEQUENCE the way hls-m3u8 numbers them (each EXTINF and URI pair is the next
// number), so the two passes agree on every segment's number; addParts checks that they do.
type llTags struct {
	partTarget   float64 // EXT-X-PART-INF PART-TARGET in seconds; 0 when absent
	canBlock     bool    // EXT-X-SERVER-CONTROL CAN-BLOCK-RELOAD=YES
	partHoldBack float64 // EXT-X-SERVER-CONTROL PART-HOLD-BACK in seconds; 0 when absent
	// parts lists the parts of each segment that has any, in playlist order; the last entry may
	// be the segment still being produced (its EXTINF not written yet): then tail is set.
	parts []llSegmentParts
	tail  *llTail
	// hint is the URI of EXT-X-PRELOAD-HINT TYPE=PART (the part after the last one listed);
	// empty when there is none or it is a byte range, which this player does not request ahead.
	hint string
	// segments counts the EXTINF and URI pairs, to check against hls-m3u8's reading.
	segments int
}

// llSegmentParts is the parts of segment msn.
type llSegmentParts struct {
	msn   uint64
	parts []llPart
}

// llPart is one EXT-X-PART.
type llPart struct {
	uri         string
	duration    float64 // seconds
	independent bool    // INDEPENDENT=YES: starts with a random access point
	gap         bool    // GAP=YES: not available, not to be requested
}

// llTail is what the playlist says of the segment after its last EXTINF, of which it lists
// parts only: the tags that precede them and apply to the segment.
type llTail struct {
	msn           uint64
	discontinuity bool
	pdt           time.Time
	hasPDT        bool
	mapURI        string // the EXT-X-MAP in force (empty: none)
}

// isLowLatency says whether the playlist is one a low-latency player plays part by part.
func (t *llTags) isLowLatency() bool {
	return t != nil && t.partTarget > 0
}

// maxPartsPerSegment bounds the parts kept per segment: a real server cuts 10 to 50; a playlist
// listing more is broken, and the player must not hold an unbounded list for it.
const maxPartsPerSegment = 1000

// parseLLTags reads the low-latency tags of a media playlist. It never fails: lines it cannot
// read are skipped, as players do, and a playlist without them yields zero values. Lines are
// split and recognised as hls-m3u8 does (a segment is an EXTINF followed by a line that is not a
// tag), so that both number the segments alike.
func parseLLTags(body []byte) *llTags {
	t := &llTags{}
	var (
		msn      uint64 // number of the segment the next EXTINF and URI describe
		segments int    // EXTINF and URI pairs read so far
		inf      bool   // an EXTINF waits for its URI
		cur      []llPart
		disc     bool
		pdt      time.Time
		hasPDT   bool
		mapURI   string
	)
	for rest := string(body); rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimSuffix(line, "\r")
		_, value, _ := strings.Cut(line, ":")
		switch {
		case line == "":
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			if n, err := strconv.ParseUint(value, 10, 64); err == nil && segments == 0 {
				msn = n
			}
		case strings.HasPrefix(line, "#EXT-X-PART-INF:"):
			for k, v := range attributes(value) {
				if k == "PART-TARGET" {
					t.partTarget = parseSeconds(v)
				}
			}
		case strings.HasPrefix(line, "#EXT-X-SERVER-CONTROL:"):
			for k, v := range attributes(value) {
				switch k {
				case "CAN-BLOCK-RELOAD":
					t.canBlock = v == "YES"
				case "PART-HOLD-BACK":
					t.partHoldBack = parseSeconds(v)
				}
			}
		case strings.HasPrefix(line, "#EXT-X-MAP:"):
			for k, v := range attributes(value) {
				if k == "URI" {
					mapURI = v
				}
			}
		case line == "#EXT-X-DISCONTINUITY":
			disc = true
		case strings.HasPrefix(line, "#EXT-X-PROGRAM-DATE-TIME:"):
			if tm, err := time.Parse(time.RFC3339Nano, value); err == nil {
				pdt, hasPDT = tm, true
			}
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			if p, ok := parsePart(value); ok && len(cur) < maxPartsPerSegment {
				cur = append(cur, p)
			}
		case strings.HasPrefix(line, "#EXT-X-PRELOAD-HINT:"):
			var typ, uri string
			ranged := false
			for k, v := range attributes(value) {
				switch k {
				case "TYPE":
					typ = v
				case "URI":
					uri = v
				case "BYTERANGE-START", "BYTERANGE-LENGTH":
					ranged = true
				}
			}
			if typ == "PART" && !ranged && uri != "" {
				t.hint = uri
			}
		case strings.HasPrefix(line, "#EXTINF:"):
			inf = true
		case !strings.HasPrefix(line, "#") && inf:
			// The URI of a media segment: the parts read since the previous one are its parts.
			if len(cur) > 0 {
				t.parts = append(t.parts, llSegmentParts{msn: msn, parts: cur})
				cur = nil
			}
			segments++
			msn++
			inf, disc, pdt, hasPDT = false, false, time.Time{}, false
		}
	}
	t.segments = segments
	if len(cur) > 0 {
		t.parts = append(t.parts, llSegmentParts{msn: msn, parts: cur})
		t.tail = &llTail{msn: msn, discontinuity: disc, pdt: pdt, hasPDT: hasPDT, mapURI: mapURI}
	}
	return t
}

// parsePart reads the attributes of an EXT-X-PART; false when it names no URI this player can
// fetch (none, or a byte range of a file it would have to fetch whole).
func parsePart(attrs string) (llPart, bool) {
	p := llPart{}
	ranged := false
	for k, v := range attributes(attrs) {
		switch k {
		case "URI":
			p.uri = v
		case "DURATION":
			p.duration = parseSeconds(v)
		case "INDEPENDENT":
			p.independent = v == "YES"
		case "GAP":
			p.gap = v == "YES"
		case "BYTERANGE":
			ranged = true
		}
	}
	return p, p.uri != "" && !ranged
}

// attributes iterates over an attribute list (RFC 8216 4.2): NAME=VALUE pairs separated by
// commas, where a quoted-string value may hold commas. Quotes are removed from values.
func attributes(s string) func(yield func(string, string) bool) {
	return func(yield func(string, string) bool) {
		for s != "" {
			name, rest, ok := strings.Cut(s, "=")
			if !ok {
				return
			}
			var value string
			if strings.HasPrefix(rest, `"`) {
				end := strings.IndexByte(rest[1:], '"')
				if end < 0 {
					return
				}
				value, rest = rest[1:1+end], rest[2+end:]
				_, rest, _ = strings.Cut(rest, ",")
			} else {
				value, rest, _ = strings.Cut(rest, ",")
			}
			if !yield(strings.TrimSpace(name), strings.TrimSpace(value)) {
				return
			}
			s = rest
		}
	}
}

// parseSeconds reads a decimal number of seconds; anything else, negative or absurd is 0.
func parseSeconds(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f > 0) || f > 3600 {
		return 0
	}
	return f
}
