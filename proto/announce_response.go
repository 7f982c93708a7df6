package proto

import (
	"encoding/json"
	"fmt"
	"time"
)

// Bounds on a tracker's answer, so that a broken or hostile tracker cannot make a peer dial
// hundreds of addresses, announce in a tight loop, or never again.
const (
	// MaxAnswerNeighbours bounds the candidates of one answer (a tracker gives 1 to 100).
	MaxAnswerNeighbours = 100
	// MinAnnounceInterval and MaxAnnounceInterval bound the interval a tracker may ask for.
	MinAnnounceInterval = 500 * time.Millisecond
	MaxAnnounceInterval = 5 * time.Minute
)

// ParseAnnounceResponse decodes a tracker's answer to an announce and keeps what a peer may act
// on: at most MaxAnswerNeighbours candidates, each with an IP-literal address (a host name would
// make the peer resolve names a tracker chose; unusable addresses are dropped, not fatal) and
// sane depths and free slots, an announce interval clamped to [MinAnnounceInterval,
// MaxAnnounceInterval], and a registration only if it is well-formed (the peer still checks its
// signature against the watch link's key). Errors wrap ErrBadAnnounce.
func ParseAnnounceResponse(b []byte) (AnnounceResponse, error) {
	var r AnnounceResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return AnnounceResponse{}, fmt.Errorf("%w: tracker answer: %w", ErrBadAnnounce, err)
	}
	if r.Stripes < 0 || r.Stripes > MaxStripes {
		return AnnounceResponse{}, fmt.Errorf("%w: tracker answer: %d stripes", ErrBadAnnounce, r.Stripes)
	}
	kept := r.Neighbours[:0]
	for _, n := range r.Neighbours {
		if len(kept) == MaxAnswerNeighbours {
			break
		}
		if ap, err := ParseAnnounceAddr(n.Addr); err != nil || !ap.Addr().IsValid() {
			continue
		}
		if len(n.Depths) > MaxStripes || n.FreeSlots < 0 || ValidPeerID(n.PeerID) != nil {
			continue
		}
		sane := true
		for _, d := range n.Depths {
			sane = sane && d >= -1 && d < int(NoDepth)
		}
		if sane {
			kept = append(kept, n)
		}
	}
	r.Neighbours = kept
	if r.Neighbours == nil {
		r.Neighbours = []PeerInfo{}
	}
	interval := time.Duration(r.AnnounceIntervalMs) * time.Millisecond
	if r.AnnounceIntervalMs > MaxAnnounceInterval.Milliseconds() {
		interval = MaxAnnounceInterval
	}
	r.AnnounceIntervalMs = min(max(interval, MinAnnounceInterval), MaxAnnounceInterval).Milliseconds()
	if r.Registration != nil && r.Registration.Validate() != nil {
		r.Registration = nil
	}
	return r, nil
}
