package proto

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// The tracker decodes a PeerState once per announce, and once more per write (the peers
// bucket's entry, which every tracker's watcher delivers); encoding/json's reflection made that
// the largest single cost of an announce. decodePeerStateJSON reads the JSON that encoding/json
// writes for an AnnounceRequest or a PeerRecord directly, and gives up (false) on anything else:
// escapes or non-ASCII bytes in strings, keys in another case, unknown or repeated keys, nulls
// other than a missing list's, numbers an int field cannot hold. Callers then decode with
// encoding/json, so the result is always encoding/json's (FuzzDecodePeerStateJSON checks that
// the two agree wherever the direct reader takes an input).

// ParsePeerRecord decodes a PeerRecord (a tracker's peers bucket entry). It does not validate:
// the tracker wrote it after validating the announce.
func ParsePeerRecord(b []byte) (PeerRecord, error) {
	var r PeerRecord
	if decodePeerStateJSON(b, &r.PeerState, "source_ip", &r.SourceIP) {
		return r, nil
	}
	r = PeerRecord{}
	if err := json.Unmarshal(b, &r); err != nil {
		return PeerRecord{}, fmt.Errorf("%w: peer record: %w", ErrMalformed, err)
	}
	return r, nil
}

// decodeAnnounceJSON decodes an AnnounceRequest as encoding/json would, without validating.
func decodeAnnounceJSON(b []byte) (AnnounceRequest, error) {
	var r AnnounceRequest
	if decodePeerStateJSON(b, &r.PeerState, "peer_secret", &r.PeerSecret) {
		return r, nil
	}
	r = AnnounceRequest{}
	err := json.Unmarshal(b, &r)
	return r, err
}

// decodePeerStateJSON decodes b, a JSON object of st's fields and one more string field
// (extraKey, into extra), into the zero st and extra. It reports false when b is not in the
// plain shape it reads; st and extra are then undefined.
func decodePeerStateJSON(b []byte, st *PeerState, extraKey string, extra *string) bool {
	s := jsonScanner{b: b}
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return s.end()
	}
	var seen uint32
	for {
		key, ok := s.str()
		if !ok || !s.next(':') {
			return false
		}
		var bit uint32
		switch string(key) {
		case "peer_id":
			bit, ok = 1<<0, s.strInto(&st.PeerID)
		case "stream":
			bit, ok = 1<<1, s.strInto(&st.Stream)
		case "stream_key":
			bit, ok = 1<<2, s.strInto(&st.StreamKey)
		case "addr":
			bit, ok = 1<<3, s.strInto(&st.Addr)
		case "upload_bps":
			bit = 1 << 4
			st.UploadBps, ok = s.int()
		case "depths":
			bit = 1 << 5
			st.Depths, ok = s.ints()
		case "parents":
			bit = 1 << 6
			st.Parents, ok = s.strs()
		case "free_slots":
			bit = 1 << 7
			var n int64
			n, ok = s.int()
			st.FreeSlots = int(n)
		case "quality":
			bit, ok = 1<<8, s.quality(&st.Quality)
		case "reflexive_addr":
			bit, ok = 1<<9, s.strInto(&st.ReflexiveAddr)
		case "nat_kind":
			bit = 1 << 10
			var v []byte
			if v, ok = s.str(); ok {
				ok = st.NATKind.UnmarshalText(v) == nil
			}
		case extraKey:
			bit, ok = 1<<11, s.strInto(extra)
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if s.next('}') {
			return s.end()
		}
		if !s.next(',') {
			return false
		}
	}
}

// jsonScanner reads the plain JSON decodePeerStateJSON accepts.
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next consumes c, after whitespace, if it is there.
func (s *jsonScanner) next(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (s *jsonScanner) end() bool {
	s.skipSpace()
	return s.i == len(s.b)
}

// str reads a string of printable ASCII without escapes; the bytes are b's.
func (s *jsonScanner) str() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	for j := s.i; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			v := s.b[s.i:j]
			s.i = j + 1
			return v, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

func (s *jsonScanner) strInto(dst *string) bool {
	v, ok := s.str()
	*dst = string(v)
	return ok
}

// number reads a JSON number literal and reports whether it is an integer (no fraction, no
// exponent).
func (s *jsonScanner) number() (lit []byte, integer, ok bool) {
	s.skipSpace()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	first := s.i
	n := digits()
	if n == 0 || n > 1 && s.b[first] == '0' {
		return nil, false, false
	}
	integer = true
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return nil, false, false
		}
		integer = false
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return nil, false, false
		}
		integer = false
	}
	return s.b[start:s.i], integer, true
}

// int reads an integer of at most 18 digits (so it fits any int field).
func (s *jsonScanner) int() (int64, bool) {
	lit, integer, ok := s.number()
	if !ok || !integer || len(lit) > 18 {
		return 0, false
	}
	v, err := strconv.ParseInt(string(lit), 10, 64)
	return v, err == nil
}

func (s *jsonScanner) float() (float64, bool) {
	lit, _, ok := s.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(lit), 64)
	return v, err == nil
}

// null consumes a null literal, if it is there.
func (s *jsonScanner) null() bool {
	s.skipSpace()
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// ints reads an array of integers; null is a nil slice, as encoding/json has it.
func (s *jsonScanner) ints() ([]int, bool) {
	return jsonArray(s, func() (int, bool) {
		v, ok := s.int()
		return int(v), ok
	})
}

// strs reads an array of strings; null is a nil slice.
func (s *jsonScanner) strs() ([]string, bool) {
	return jsonArray(s, func() (string, bool) {
		v, ok := s.str()
		return string(v), ok
	})
}

// jsonArray reads an array whose elements elem reads; null is a nil slice, [] an empty one, as
// encoding/json has them.
func jsonArray[T any](s *jsonScanner, elem func() (T, bool)) ([]T, bool) {
	if s.null() {
		return nil, true
	}
	if !s.next('[') {
		return nil, false
	}
	out := []T{}
	if s.next(']') {
		return out, true
	}
	for {
		v, ok := elem()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.next(']') {
			return out, true
		}
		if !s.next(',') {
			return nil, false
		}
	}
}

func (s *jsonScanner) quality(q *PeerQuality) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	var seen uint8
	for {
		key, ok := s.str()
		if !ok || !s.next(':') {
			return false
		}
		var bit uint8
		switch string(key) {
		case "buffer_ms":
			bit = 1 << 0
			q.BufferMs, ok = s.int()
		case "stalls":
			bit = 1 << 1
			q.Stalls, ok = s.int()
		case "fallback_share":
			bit = 1 << 2
			q.FallbackShare, ok = s.float()
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}
