package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

const (
	defaultAnnounceInterval = 2 * time.Second
	announceRetry           = time.Second
)

// httpAnnouncer talks to the tracker's HTTP API.
type httpAnnouncer struct {
	base   string
	client *http.Client
}

func (a httpAnnouncer) Announce(ctx context.Context, r proto.AnnounceRequest) (proto.AnnounceResponse, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return proto.AnnounceResponse{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+proto.TrackerAnnouncePath, bytes.NewReader(body))
	if err != nil {
		return proto.AnnounceResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return proto.AnnounceResponse{}, fmt.Errorf("announce: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return proto.AnnounceResponse{}, fmt.Errorf("announce: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e proto.ErrorResponse
		_ = json.Unmarshal(b, &e)
		return proto.AnnounceResponse{}, fmt.Errorf("announce: tracker answered %s: %s", resp.Status, e.Error)
	}
	var out proto.AnnounceResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return proto.AnnounceResponse{}, fmt.Errorf("announce: %w", err)
	}
	return out, nil
}

func (n *Node) announcer() Announcer {
	if n.cfg.Announcer != nil {
		return n.cfg.Announcer
	}
	if n.cfg.TrackerURL == "" || n.cfg.Root {
		return nil // the origin registers its stream itself
	}
	return httpAnnouncer{base: strings.TrimRight(n.cfg.TrackerURL, "/"), client: n.cfg.HTTPClient}
}

// announceLoop tells the tracker about us every interval and hands the answer to the loop.
func (n *Node) announceLoop(ctx context.Context, a Announcer) {
	wait := time.Duration(0)
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
			n.log.Warn("tracker announce failed; retrying", "error", err)
			wait = announceRetry
			continue
		}
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
		PeerID:    s.PeerID,
		Stream:    n.cfg.Stream,
		Addr:      n.Addr().String(),
		UploadBps: min(upload, proto.TrackerMaxBps),
		Depths:    s.Depths,
		FreeSlots: min(s.FreeSlots, proto.TrackerMaxFreeSlots),
		Quality:   proto.PeerQuality{FallbackShare: fallbackShare},
	}
}
