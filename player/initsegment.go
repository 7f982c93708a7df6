package player

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// maxInitBytes bounds an init segment: a few hundred bytes of codec configuration in practice.
const maxInitBytes = 1 << 20

// ensureInit makes sure the player holds the init segment u (EXT-X-MAP) before it fetches media
// that needs it, as every fMP4 player does: it is fetched once, and again only when the playlist
// names another. It reports false when the fetch failed and should be retried later; after
// segmentAttempts failures the player goes on without it (its media then cannot be matched to
// the init segment's tracks, as a real player could not decode it).
func (p *Player) ensureInit(ctx context.Context, st *playState, u *url.URL) bool {
	if st.initURL != nil && st.initURL.String() == u.String() {
		return true
	}
	buf := getBuffer()
	defer putBuffer(buf)
	ictx, cancel := context.WithTimeout(ctx, p.cfg.SegmentTimeout)
	_, err := getInto(ictx, p.cfg.HTTPClient, u, maxInitBytes, buf)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		st.initFailures++
		p.recordError(kindFetch, fmt.Errorf("init segment (attempt %d of %d): %w", st.initFailures, segmentAttempts, err))
		if st.initFailures < segmentAttempts {
			return false
		}
		st.initFailures = 0
		st.initURL = u
		st.fm.tracks = nil
		return true
	}
	st.initFailures = 0
	st.initURL = u
	p.mu.Lock()
	p.bytes += int64(buf.Len())
	p.mu.Unlock()
	if p.cfg.SkipMediaCheck {
		return true
	}
	if err := st.fm.setInit(buf.Bytes()); err != nil {
		st.fm.tracks = nil
		p.recordError(kindParse, fmt.Errorf("%s: %w", u, err))
	}
	return true
}

// checkFMP4 checks one part or segment and records what is wrong with it.
func (p *Player) checkFMP4(st *playState, what string, media []byte, independent bool) {
	err := st.fm.check(media, independent)
	if err == nil {
		return
	}
	kind := kindParse
	if errors.Is(err, ErrTimestampBack) {
		kind = kindTimestamp
	}
	p.recordError(kind, fmt.Errorf("%s: %w", what, err))
}
