package proto

import (
	"encoding/hex"
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
	// MaxAnswerObservers bounds the observer addresses of one answer (a tracker gives 2).
	MaxAnswerObservers = 4
	// MaxAnswerPunches bounds the punch orders of one answer.
	MaxAnswerPunches = 32
)

// ParsePunchID reads a punch id as PunchInfo and PunchOrder carry it (24 hex digits).
func ParsePunchID(s string) (TxID, bool) {
	var id TxID
	if len(s) != 2*TxIDLen {
		return id, false
	}
	n, err := hex.Decode(id[:], []byte(s))
	return id, err == nil && n == TxIDLen
}

// validPunch says whether a punch's id and delay are usable.
func validPunch(id string, delayMs int64) bool {
	_, ok := ParsePunchID(id)
	return ok && delayMs >= 0 && delayMs <= MaxPunchDelay
}

// dialableAddr says whether s is an IP-literal host:port a peer may send to.
func dialableAddr(s string) bool {
	ap, err := ParseAnnounceAddr(s)
	return err == nil && ap.Addr().IsValid()
}

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
		if n.Punch != nil && !validPunch(n.Punch.ID, n.Punch.DelayMs) {
			n.Punch = nil
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
	observers := r.Observers[:0]
	for _, o := range r.Observers {
		if len(observers) < MaxAnswerObservers && dialableAddr(o) {
			observers = append(observers, o)
		}
	}
	r.Observers = observers
	if len(r.Observers) == 0 {
		r.Observers = nil
	}
	punches := r.Punches[:0]
	for _, p := range r.Punches {
		if len(punches) < MaxAnswerPunches && validPunch(p.ID, p.DelayMs) && dialableAddr(p.Target) {
			punches = append(punches, p)
		}
	}
	r.Punches = punches
	if len(r.Punches) == 0 {
		r.Punches = nil
	}
	if r.Registration != nil && r.Registration.Validate() != nil {
		r.Registration = nil
	}
	return r, nil
}
