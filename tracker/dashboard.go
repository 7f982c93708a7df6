package tracker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"

	"github.com/labstack/echo/v5"
)

// maxSwarmPeers bounds the peers one /v1/swarm answer lists: the answer is built on the view's
// goroutine, and nobody reads a drawing of more.
const maxSwarmPeers = 1000

// dashboardSalt keys the short peer handles of /v1/swarm. It is new every run, so a handle
// cannot be looked up elsewhere, turned back into a peer id or followed across restarts.
var dashboardSalt = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// SwarmView is the answer of GET /v1/swarm/NAME, what the dashboard draws. It never holds a
// peer id (those let anyone announce in a peer's name); addresses only when the operator asked
// for them (Config.DashboardAddrs).
type SwarmView struct {
	Stream string `json:"stream"`
	// PublicKey is the stream's key: a name may be registered under several.
	PublicKey         string `json:"public_key"`
	Stripes           int    `json:"stripes"`
	BitrateBps        int64  `json:"bitrate_bps"`
	SegmentDurationMs int64  `json:"segment_duration_ms"`
	// OriginAddr is the origin's QUIC address, with DashboardAddrs only.
	OriginAddr string `json:"origin_addr,omitempty"`
	// SwarmSize counts every peer; Peers lists at most maxSwarmPeers of them.
	SwarmSize int         `json:"swarm_size"`
	Truncated bool        `json:"truncated,omitempty"`
	UploadBps int64       `json:"upload_bps"`
	Peers     []SwarmPeer `json:"peers"`
	// StripeStats has one entry per stripe, counted over every peer.
	StripeStats []SwarmStripe `json:"stripe_stats"`
	// TreeOffload is the share of (peer, stripe) attachments whose parent is another peer
	// (depth ≥ 2) rather than the origin: what the tree shape offloads, before repairs and
	// fallback. 0 with nobody attached.
	TreeOffload float64 `json:"tree_offload"`
}

// SwarmPeer is one peer as the dashboard sees it.
type SwarmPeer struct {
	// Handle is a short keyed hash of the peer id, stable for this tracker run only.
	Handle string `json:"handle"`
	// Depths per stripe, -1 where the peer has no parent.
	Depths []int `json:"depths"`
	// Parents per stripe: the handle of the peer this one announces as its parent there, ""
	// for the origin (depth 1), for none, or for a parent the tracker does not list. Peers
	// announce their distinct parents; the stripe is the one where the parent sits one above.
	Parents   []string `json:"parents"`
	FreeSlots int      `json:"free_slots"`
	UploadBps int64    `json:"upload_bps"`
	Addr      string   `json:"addr,omitempty"`
}

// SwarmStripe sums up one stripe.
type SwarmStripe struct {
	Stripe     int `json:"stripe"`
	FromOrigin int `json:"from_origin"` // peers at depth 1: the origin's children
	FromPeers  int `json:"from_peers"`  // peers at depth 2 or more
	Unattached int `json:"unattached"`
	MaxDepth   int `json:"max_depth"`
}

func peerHandle(stream, peerID string) string {
	m := hmac.New(sha256.New, dashboardSalt)
	m.Write([]byte(stream))
	m.Write([]byte{0})
	m.Write([]byte(peerID))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// swarmView answers GET /v1/swarm/NAME[?key=KEY]: like getStream, a name registered under
// several keys needs the key (409).
func (t *Tracker) swarmView(c *echo.Context) error {
	name := c.Param("name")
	var want swarmID
	if k := c.QueryParam("key"); k != "" {
		id, err := swarmOf(name, k)
		if err != nil {
			return apiError(c, http.StatusBadRequest, "key: %v", err)
		}
		want = id
	}
	var (
		sv    SwarmView
		found int
	)
	err := t.view.do(c.Request().Context(), func() {
		for id, e := range t.view.streams {
			if id.name == name && (want.key == "" || id == want) {
				found++
				if found == 1 {
					sv = t.view.swarmView(e, t.cfg.DashboardAddrs)
				}
			}
		}
	})
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	}
	switch {
	case found == 0:
		return apiError(c, http.StatusNotFound, "unknown stream %q", name)
	case found > 1:
		return apiError(c, http.StatusConflict, "stream %q is registered under %d keys; ask with ?key=KEY", name, found)
	}
	// Handles are computed off the view's goroutine; ids are dropped right after.
	for i := range sv.Peers {
		p := &sv.Peers[i]
		p.Handle = peerHandle(name, p.Handle)
		for stripe, parent := range p.Parents {
			if parent != "" {
				p.Parents[stripe] = peerHandle(name, parent)
			}
		}
	}
	sort.Slice(sv.Peers, func(i, j int) bool { return sv.Peers[i].Handle < sv.Peers[j].Handle })
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, sv)
}

// swarmView copies a stream's swarm for the dashboard. Call on the view's goroutine. Each
// peer's Handle holds its peer id until the caller hashes it.
func (v *view) swarmView(e *streamEntry, withAddrs bool) SwarmView {
	stripes := e.reg.Stripes
	sv := SwarmView{
		Stream: e.reg.Name, PublicKey: e.id.key, Stripes: stripes, BitrateBps: e.reg.BitrateBps,
		SegmentDurationMs: e.reg.SegmentDurationMs, Peers: []SwarmPeer{},
		StripeStats: make([]SwarmStripe, stripes),
	}
	if withAddrs {
		sv.OriginAddr = e.reg.QUICAddr
	}
	for i := range sv.StripeStats {
		sv.StripeStats[i].Stripe = i
	}
	s := v.swarms[e.id]
	if s == nil {
		return sv
	}
	sv.SwarmSize = len(s.infos)
	attached, fromPeers := 0, 0
	for i, p := range s.infos {
		sv.UploadBps += s.meta[i].uploadBps
		depths := make([]int, stripes)
		for stripe := range depths {
			d := -1
			if stripe < len(p.Depths) && p.Depths[stripe] > 0 {
				d = p.Depths[stripe]
			}
			depths[stripe] = d
			st := &sv.StripeStats[stripe]
			switch {
			case d < 0:
				st.Unattached++
			case d == 1:
				st.FromOrigin++
				attached++
			default:
				st.FromPeers++
				attached++
				fromPeers++
			}
			st.MaxDepth = max(st.MaxDepth, d)
		}
		if len(sv.Peers) >= maxSwarmPeers {
			sv.Truncated = true
			continue
		}
		sp := SwarmPeer{
			Handle: p.PeerID, Depths: depths, Parents: stripeParents(s, s.meta[i].parents, depths),
			FreeSlots: p.FreeSlots, UploadBps: s.meta[i].uploadBps,
		}
		if withAddrs {
			sp.Addr = p.Addr
		}
		sv.Peers = append(sv.Peers, sp)
	}
	if attached > 0 {
		sv.TreeOffload = float64(fromPeers) / float64(attached)
	}
	return sv
}

// stripeParents places a peer's announced parents on its stripes: on a stripe where the peer
// is at depth d ≥ 2, its parent is the announced one that sits at d-1 there. Peer ids, ""
// where none fits. Call on the view's goroutine.
func stripeParents(s *swarm, parents []string, depths []int) []string {
	out := make([]string, len(depths))
	for stripe, d := range depths {
		if d < 2 {
			continue
		}
		for _, id := range parents {
			j, ok := s.index[id]
			if ok && stripe < len(s.infos[j].Depths) && s.infos[j].Depths[stripe] == d-1 {
				out[stripe] = id
				break
			}
		}
	}
	return out
}
