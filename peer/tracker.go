package peer

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
)

const (
	defaultAnnounceInterval = 2 * time.Second
	announceRetry           = time.Second
)

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

// announceLoop tells the tracker about us every interval and hands the answer to the loop.
func (n *Node) announceLoop(ctx context.Context, a Announcer) {
	wait := time.Duration(0)
	waitingForStream := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		resp, err := a.Announce(ctx, n.announceRequest())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			switch {
			case !errors.Is(err, trackerclient.ErrUnknownStream):
				n.log.Warn("tracker announce failed; retrying", "error", err)
			case !waitingForStream:
				// A viewer started before the broadcast: normal, said once.
				n.log.Info("the tracker does not know the stream yet; waiting for the origin to register it")
				waitingForStream = true
			}
			wait = announceRetry
			continue
		}
		waitingForStream = false
		n.emit(ctx, evAnnounce{resp: resp})
		wait = defaultAnnounceInterval
		if resp.AnnounceIntervalMs > 0 {
			wait = time.Duration(resp.AnnounceIntervalMs) * time.Millisecond
		}
	}
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
	return proto.AnnounceRequest{
		PeerState: proto.PeerState{
			PeerID:    s.PeerID,
			Stream:    n.cfg.Stream,
			StreamKey: proto.FormatPublicKey(n.cfg.OriginKey),
			Addr:      n.Addr().String(),
			UploadBps: min(upload, proto.TrackerMaxBps),
			Depths:    s.Depths,
			Parents:   s.ParentIDs,
			FreeSlots: min(s.FreeSlots, proto.TrackerMaxFreeSlots),
			Quality:   proto.PeerQuality{FallbackShare: fallbackShare},
		},
		PeerSecret: hex.EncodeToString(n.secret[:]),
	}
}
