package peer

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/backoff"
	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
)

const (
	defaultAnnounceInterval = 2 * time.Second
	// announceRetryMin and announceRetryMax bound the backoff of failed announces: a tracker that
	// is down is asked about once a second at first and every 15 s at most (one log line each),
	// and a viewer who started before the broadcast joins within 15 s of the origin registering.
	announceRetryMin = time.Second
	announceRetryMax = 15 * time.Second
	// streamListTimeout bounds the request that names the streams the tracker knows.
	streamListTimeout = 3 * time.Second
	// maxNamedStreams is how many of the tracker's streams a message names.
	maxNamedStreams = 10
)

// streamLister is what the HTTP tracker client can also do: list the registered streams, so a
// peer asking for an unknown one can say which exist.
type streamLister interface {
	Streams(ctx context.Context) ([]proto.StreamStatus, error)
}

// announcer is the configured Announcer, or the tracker client for TrackerURL.
func (n *Node) announcer() Announcer {
	if n.cfg.Announcer != nil {
		return n.cfg.Announcer
	}
	if n.cfg.TrackerURL == "" || n.cfg.Root {
		return nil // the origin registers its stream itself
	}
	return &trackerclient.Client{BaseURL: strings.TrimRight(n.cfg.TrackerURL, "/"), HTTPClient: n.cfg.HTTPClient}
}

// announceLoop tells the tracker about us every interval and hands the answer to the loop. A
// failed announce is retried with backoff; each failure is one log line saying what is wrong
// and when the next attempt goes out, and the same words answer the local player (notReady).
func (n *Node) announceLoop(ctx context.Context, a Announcer) {
	retry := backoff.New(announceRetryMin, announceRetryMax)
	wait := time.Duration(0)
	otherKey := 0 // consecutive answers: the tracker has our stream only under another key
	for {
		if n.waitToAnnounce(ctx, wait) != nil {
			return
		}
		resp, err := a.Announce(ctx, n.announceRequest())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if n.announceFailed(ctx, a, err, retry.Attempts()+1) {
				otherKey++
			} else {
				otherKey = 0
			}
			if otherKey >= wrongKeyAnnounces {
				n.stopWrongKey("") // wrongKeyError names the key the tracker has
				return
			}
			wait = retry.Next()
			n.announceRetryIn(wait)
			continue
		}
		if retry.Attempts() > 0 {
			n.log.Info("the tracker answers for the stream now; joining the swarm", "failed_attempts", retry.Attempts())
		}
		retry.Reset()
		otherKey = 0
		n.diag.trackerAnswered(resp.Origin.PublicKey)
		n.learnObservers(resp.Observers)
		for _, o := range resp.Punches {
			id, _ := proto.ParsePunchID(o.ID) // ParseAnnounceResponse checked it
			if target, err := netip.ParseAddrPort(o.Target); err == nil {
				n.onPunchOrder(ctx, id, target, time.Duration(o.DelayMs)*time.Millisecond)
			}
		}
		n.emit(ctx, evAnnounce{resp: resp})
		wait = defaultAnnounceInterval
		if resp.AnnounceIntervalMs > 0 {
			wait = time.Duration(resp.AnnounceIntervalMs) * time.Millisecond
		}
	}
}

// announceFailed works out why an announce failed and keeps the reason for the local player and
// the log line announceRetryIn writes. It reports whether the tracker has our stream under another
// key than the watch link's.
func (n *Node) announceFailed(ctx context.Context, a Announcer, err error, attempt int) (otherKey bool) {
	tracker := "the tracker"
	if n.cfg.TrackerURL != "" {
		tracker = "the tracker at " + strings.TrimRight(n.cfg.TrackerURL, "/")
	}
	var reason string
	needsCDN := false
	switch {
	case errors.Is(err, trackerclient.ErrUnknownStream):
		reason, otherKey = n.unknownStreamReason(ctx, a, tracker)
	case errors.Is(err, trackerclient.ErrRateLimited):
		reason = fmt.Sprintf("%s asks us to slow down (%v)", tracker, err)
		needsCDN = true
	default:
		reason = fmt.Sprintf("%s does not answer (%v); check --tracker or the watch link's host and that the tracker runs", tracker, err)
		needsCDN = true
	}
	n.diag.setTrackerTrouble(reason, attempt, needsCDN)
	return otherKey
}

// announceRetryIn logs the reason the last announce failed with the countdown to the next one.
func (n *Node) announceRetryIn(wait time.Duration) {
	reason, attempt := n.diag.retryingIn(time.Now().Add(wait))
	in := max(wait.Round(time.Second), time.Second)
	n.log.Warn(fmt.Sprintf("%s; retrying in %s", reason, in), "attempt", attempt, "retry_in", in)
}

// unknownStreamReason says why the tracker does not know our stream, naming the streams it does
// know. A stream of our name under another key means the watch link's key is the problem, not
// the name (a tracker that keeps swarms by name and key answers so).
func (n *Node) unknownStreamReason(ctx context.Context, a Announcer, tracker string) (reason string, otherKey bool) {
	list, err := n.trackerStreams(ctx, a)
	if err != nil {
		return fmt.Sprintf("stream %q unknown at %s (and listing its streams failed: %v); check the stream name "+
			"in the watch link, or start the broadcast", n.cfg.Stream, tracker, err), false
	}
	names := make([]string, 0, len(list))
	for _, st := range list {
		if st.Name == n.cfg.Stream {
			if pk, err := proto.ParsePublicKey(st.PublicKey); err == nil && !pk.Equal(ed25519.PublicKey(n.cfg.OriginKey)) {
				n.diag.trackerAnswered(st.PublicKey)
				return fmt.Sprintf("stream %q is registered at %s with another key (%s) than the watch link's (%s): "+
					"the watch link is wrong, or the origin changed its key; ask the broadcaster for the current watch link",
					n.cfg.Stream, tracker, proto.FormatPublicKey(pk), proto.FormatPublicKey(n.cfg.OriginKey)), true
			}
		}
		names = append(names, st.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	known := "it knows no stream: is the origin up and registered with this tracker?"
	if len(names) > maxNamedStreams {
		names = append(names[:maxNamedStreams], fmt.Sprintf("and %d more", len(names)-maxNamedStreams))
	}
	if len(names) > 0 {
		known = "it knows: " + strings.Join(names, ", ")
	}
	return fmt.Sprintf("stream %q unknown at %s (%s); check the stream name in the watch link, or start the broadcast",
		n.cfg.Stream, tracker, known), false
}

// trackerStreams lists the streams the tracker knows, if the announcer can ask.
func (n *Node) trackerStreams(ctx context.Context, a Announcer) ([]proto.StreamStatus, error) {
	sl, ok := a.(streamLister)
	if !ok {
		return nil, errors.New("this tracker client cannot list streams")
	}
	lctx, cancel := context.WithTimeout(ctx, streamListTimeout)
	defer cancel()
	return sl.Streams(lctx)
}

func (n *Node) announceRequest() proto.AnnounceRequest {
	s := n.Stats()
	upload := n.cfg.MaxUploadBps
	if upload == 0 {
		upload = 3 * s.BitrateBps
	}
	var fallbackShare float64
	if total := s.BytesFromPeers + s.BytesFromOrigin; total > 0 {
		fallbackShare = float64(s.BytesFromHTTP) / float64(total)
	}
	free := min(s.FreeSlots, proto.TrackerMaxFreeSlots)
	if s.NATKind == proto.NATSymmetric {
		// Nobody can dial us, so the tracker must not make us anyone's parent: we are a leaf
		// unless a neighbour we dialled subscribes over our own connection.
		free = 0
	}
	return proto.AnnounceRequest{
		PeerState: proto.PeerState{
			ReflexiveAddr: s.ReflexiveAddr,
			NATKind:       s.NATKind,
			PeerID:        s.PeerID,
			Stream:        n.cfg.Stream,
			StreamKey:     proto.FormatPublicKey(n.cfg.OriginKey),
			Addr:          n.Addr().String(),
			UploadBps:     min(upload, proto.TrackerMaxBps),
			Depths:        s.Depths,
			Parents:       s.ParentIDs,
			FreeSlots:     free,
			Quality:       proto.PeerQuality{FallbackShare: fallbackShare},
		},
		PeerSecret: hex.EncodeToString(n.secret[:]),
	}
}

// waitToAnnounce waits d, or less when a new reflexive address is worth announcing at once
// (backoff.Wait with the reachability loop's nudge).
func (n *Node) waitToAnnounce(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-n.nat.announceNow:
	}
	return nil
}
