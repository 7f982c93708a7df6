package player

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
)

// maxPlaylistBytes bounds what a playlist may weigh before we give up on it.
const maxPlaylistBytes = 4 << 20

// mediaPlaylist is what the player needs from one load of a media playlist.
type mediaPlaylist struct {
	url            *url.URL // after redirects, the base for segment URIs
	targetDuration time.Duration
	segments       []segmentInfo
	ended          bool // EXT-X-ENDLIST: nothing more will come
	// ll is set when the playlist is a low-latency one (EXT-X-PART-INF): its parts are in the
	// segments' parts and in ll.tail.
	ll *llPlaylist
}

// segmentInfo is one segment of a media playlist.
type segmentInfo struct {
	seq           uint64
	url           *url.URL
	duration      float64
	pdt           time.Time
	hasPDT        bool
	discontinuity bool
	fmp4          bool     // has an EXT-X-MAP: not MPEG-TS, so not checked by the TS checker
	mapURL        *url.URL // the EXT-X-MAP in force (the init segment); nil for MPEG-TS
	parts         []partInfo
}

func (p *mediaPlaylist) lastSeq() uint64 {
	return p.segments[len(p.segments)-1].seq
}

// find returns the index of the segment with sequence number seq.
func (p *mediaPlaylist) find(seq uint64) (int, bool) {
	if len(p.segments) == 0 || seq < p.segments[0].seq {
		return 0, false
	}
	i := seq - p.segments[0].seq
	if i >= uint64(len(p.segments)) {
		return 0, false
	}
	return int(i), true
}

// liveStart picks where a live player joins, as hls.js and Safari do: the last segment that
// starts at least three target durations before the end of the playlist (the first segment if
// the playlist is shorter than that). A closed playlist (VOD, or an ended event) plays from the
// start.
func (p *mediaPlaylist) liveStart() int {
	if p.ended {
		return 0
	}
	hold := 3 * p.targetDuration.Seconds()
	fromEnd := 0.0
	for i := len(p.segments) - 1; i >= 0; i-- {
		fromEnd += p.segments[i].duration
		if fromEnd >= hold-1e-9 {
			return i
		}
	}
	return 0
}

// loadPlaylist fetches u and decodes it. A multivariant playlist is followed to its first
// variant (a headless player has no screen to pick a rendition for), so the first request
// to the first segment is a real player's startup path.
func loadPlaylist(ctx context.Context, client *http.Client, u *url.URL, prev *mediaPlaylist) (*mediaPlaylist, error) {
	for range 2 {
		body, final, err := get(ctx, client, u, maxPlaylistBytes)
		if err != nil {
			return nil, err
		}
		pl, listType, err := decodePlaylist(body)
		if err != nil {
			return nil, fmt.Errorf("playlist %s: %w: %w", u, ErrNotMediaPlaylist, err)
		}
		switch listType {
		case m3u8.MEDIA:
			return toMediaPlaylist(pl.(*m3u8.MediaPlaylist), parseLLTags(body), final, prev)
		case m3u8.MASTER:
			master := pl.(*m3u8.MasterPlaylist)
			if len(master.Variants) == 0 || master.Variants[0] == nil {
				return nil, fmt.Errorf("playlist %s: %w: multivariant playlist without variants", u, ErrNotMediaPlaylist)
			}
			next, err := final.Parse(master.Variants[0].URI)
			if err != nil {
				return nil, fmt.Errorf("playlist %s: variant URI %q: %w", u, master.Variants[0].URI, err)
			}
			u = next
		default:
			return nil, fmt.Errorf("playlist %s: %w", u, ErrNotMediaPlaylist)
		}
	}
	return nil, fmt.Errorf("playlist %s: %w: multivariant playlist points at another one", u, ErrNotMediaPlaylist)
}

// decodePlaylist decodes a playlist from any server. hls-m3u8 (v0.6.5) panics on some
// malformed lines (found by FuzzMediaPlaylist: "#EXT-X-MEDIA:0" indexes past an attribute), so
// a panic there is turned into an error: a broken or hostile server must not crash the player.
// hls-m3u8 never sees the EXT-X-PART and EXT-X-PRELOAD-HINT lines: it refuses a part before the
// first EXTINF and misplaces others (see llTags), which parseLLTags reads instead.
func decodePlaylist(body []byte) (pl m3u8.Playlist, listType m3u8.ListType, err error) {
	defer func() {
		if r := recover(); r != nil {
			pl, err = nil, fmt.Errorf("playlist decoder failed: %v", r)
		}
	}()
	return m3u8.DecodeFrom(bytes.NewReader(withoutPartLines(body)), false)
}

// withoutPartLines returns body without its EXT-X-PART and EXT-X-PRELOAD-HINT lines (body
// itself when it has none, as every playlist but a low-latency one).
func withoutPartLines(body []byte) []byte {
	if !bytes.Contains(body, []byte("#EXT-X-PART:")) && !bytes.Contains(body, []byte("#EXT-X-PRELOAD-HINT:")) {
		return body
	}
	out := make([]byte, 0, len(body))
	for rest := body; len(rest) > 0; {
		line, after, found := bytes.Cut(rest, []byte("\n"))
		rest = after
		if bytes.HasPrefix(line, []byte("#EXT-X-PART:")) || bytes.HasPrefix(line, []byte("#EXT-X-PRELOAD-HINT:")) {
			continue
		}
		out = append(out, line...)
		if found {
			out = append(out, '\n')
		}
	}
	return out
}

// toMediaPlaylist keeps what the player needs. A segment without its own date-time takes the
// previous one's plus its duration (RFC 8216 4.3.2.6), also across reloads via prev; never
// across a discontinuity. ll (nil: none) adds the parts of a low-latency playlist.
func toMediaPlaylist(pl *m3u8.MediaPlaylist, ll *llTags, base *url.URL, prev *mediaPlaylist) (*mediaPlaylist, error) {
	out := &mediaPlaylist{
		url:            base,
		targetDuration: time.Duration(pl.TargetDuration) * time.Second,
		ended:          pl.Closed,
	}
	var mapURL *url.URL
	if pl.Map != nil {
		u, err := base.Parse(pl.Map.URI)
		if err != nil {
			return nil, fmt.Errorf("playlist %s: EXT-X-MAP URI %q: %w", base, pl.Map.URI, err)
		}
		mapURL = u
	}
	var prevSeg *segmentInfo
	for _, s := range pl.GetAllSegments() {
		if s == nil {
			continue
		}
		u, err := base.Parse(s.URI)
		if err != nil {
			return nil, fmt.Errorf("playlist %s: segment URI %q: %w", base, s.URI, err)
		}
		if s.Map != nil {
			if mapURL, err = base.Parse(s.Map.URI); err != nil {
				return nil, fmt.Errorf("playlist %s: EXT-X-MAP URI %q: %w", base, s.Map.URI, err)
			}
		}
		seg := segmentInfo{
			seq:           s.SeqId,
			url:           u,
			duration:      s.Duration,
			discontinuity: s.Discontinuity,
			fmp4:          mapURL != nil,
			mapURL:        mapURL,
		}
		if prevSeg == nil && prev != nil {
			if i, ok := prev.find(seg.seq - 1); ok && seg.seq > 0 {
				prevSeg = &prev.segments[i]
			}
		}
		switch {
		case !s.ProgramDateTime.IsZero():
			seg.pdt, seg.hasPDT = s.ProgramDateTime, true
		case prevSeg != nil && prevSeg.hasPDT && !seg.discontinuity:
			seg.pdt, seg.hasPDT = prevSeg.pdt.Add(secondsToDuration(prevSeg.duration)), true
		}
		out.segments = append(out.segments, seg)
		prevSeg = &out.segments[len(out.segments)-1]
	}
	if out.targetDuration <= 0 {
		out.targetDuration = time.Second
	}
	if ll.isLowLatency() {
		if err := out.addParts(ll, prev); err != nil {
			return nil, fmt.Errorf("playlist %s: %w", base, err)
		}
	}
	return out, nil
}

// get fetches u whole, up to limit bytes.
func get(ctx context.Context, client *http.Client, u *url.URL, limit int64) ([]byte, *url.URL, error) {
	var buf bytes.Buffer
	final, err := getInto(ctx, client, u, limit, &buf)
	return buf.Bytes(), final, err
}

// getInto fetches u whole into buf, up to limit bytes, and returns the URL after redirects.
func getInto(ctx context.Context, client *http.Client, u *url.URL, limit int64, buf *bytes.Buffer) (*url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return u, fmt.Errorf("GET %s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return u, err // a *url.Error already names the method and the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return u, fmt.Errorf("GET %s: %w: %s", u, ErrHTTPStatus, resp.Status)
	}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return u, fmt.Errorf("GET %s: reading body: %w", u, err)
	}
	if n > limit {
		return u, fmt.Errorf("GET %s: body larger than %d bytes", u, limit)
	}
	final := u
	if resp.Request != nil && resp.Request.URL != nil {
		final = resp.Request.URL
	}
	return final, nil
}
