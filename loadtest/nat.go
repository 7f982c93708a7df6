package loadtest

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
	"github.com/crowdsurf/crowdsurf/peer"
)

// NAT in the load test (--nat, sim only): each viewer's host sits behind a home router of the
// kind the mix gives it in joining order, the tracker runs its observer on two public simulated
// hosts, and the report says how the mesh formed through the NATs.

// NATReport is the NAT side of a run with --nat.
type NATReport struct {
	// Mix is the --nat value; Peers counts the viewers that joined, by NAT kind.
	Mix   string         `json:"mix"`
	Peers map[string]int `json:"peers"`
	// PunchAttempts and PunchSuccesses count the punches viewers dialled (tracker-scheduled,
	// between cone NATs); PunchSuccess is their ratio, PunchTimeMs the time from the agreed
	// punch moment to the completed handshake of the successful ones.
	PunchAttempts  int64            `json:"punch_attempts"`
	PunchSuccesses int64            `json:"punch_successes"`
	PunchSuccess   float64          `json:"punch_success"`
	PunchTimeMs    LatencyQuantiles `json:"punch_time_ms"`
	// Links counts the mesh links between viewers and to the origin at the end of the run,
	// each once (at its dialling end): direct to a public host, punched, or outgoing only
	// (dialled from behind a NAT to a public host).
	Links peer.LinkCounts `json:"links"`
	// OffloadByClass is the offload of the viewers of each NAT kind over the whole run.
	OffloadByClass map[string]float64 `json:"offload_by_class"`
}

// natBook collects the punches of every viewer.
type natBook struct {
	attempts, successes atomic.Int64
	times               samples // ms
}

func (b *natBook) onPunch(ok bool, took time.Duration) {
	b.attempts.Add(1)
	if ok {
		b.successes.Add(1)
		b.times.add(float64(took) / float64(time.Millisecond))
	}
}

// natKindOf is viewer id's NAT kind: the mix's kind for the id-th joiner (churn replacements
// continue the sequence, so the swarm keeps the mix).
func (c Config) natKindOf(id int) simnet.NATKind {
	if len(c.NAT) == 0 {
		return simnet.NATNone
	}
	return c.NAT.Kinds(id + 1)[id]
}

// observerIP is where the load test's tracker observes on the simulated network, away from the
// addresses simnet hands out.
var observerIP = netip.MustParseAddr("10.255.0.1")

// observerConns are the tracker's two observer sockets on the simulated network.
func (s *simNet) observerConns() ([]net.PacketConn, error) {
	var conns []net.PacketConn
	for _, port := range []uint16{3478, 3479} {
		h, err := s.n.NewHost(simnet.HostConfig{
			Addr:    netip.AddrPortFrom(observerIP, port),
			Uplink:  originUplinkBps,
			Latency: durationNs(s.latency),
		})
		if err != nil {
			return nil, fmt.Errorf("loadtest: observer host: %w", err)
		}
		conns = append(conns, h)
	}
	return conns, nil
}

// natReport sums up the NAT side of the run from the viewers' stats and links taken at the end.
func (lt *LoadTest) natReport(viewers []*viewer, links peer.LinkCounts) *NATReport {
	if len(lt.cfg.NAT) == 0 {
		return nil
	}
	r := &NATReport{Mix: lt.cfg.NAT.String(), Peers: map[string]int{}, OffloadByClass: map[string]float64{}, Links: links}
	peers, total := map[string]int64{}, map[string]int64{}
	for _, v := range viewers {
		if v.node == nil {
			continue
		}
		k := v.nat.String()
		r.Peers[k]++
		s := v.node.Stats()
		peers[k] += s.BytesFromPeers
		total[k] += s.BytesFromPeers + s.BytesFromOrigin
	}
	for k := range r.Peers {
		r.OffloadByClass[k] = ratio(float64(peers[k]), float64(total[k]))
	}
	r.PunchAttempts = lt.nat.attempts.Load()
	r.PunchSuccesses = lt.nat.successes.Load()
	r.PunchSuccess = ratio(float64(r.PunchSuccesses), float64(r.PunchAttempts))
	q := quantilesOf(lt.nat.times.sorted())
	r.PunchTimeMs = q
	return r
}

// linksNow counts the live viewers' links by kind, each at its dialling end.
func (lt *LoadTest) linksNow() peer.LinkCounts {
	lt.mu.Lock()
	all := append([]*viewer(nil), lt.viewers...)
	lt.mu.Unlock()
	var c peer.LinkCounts
	for _, v := range all {
		if v.node == nil || v.gone() {
			continue
		}
		d := v.node.Stats().DialledLinks
		c.Direct += d.Direct
		c.Punched += d.Punched
		c.OutgoingOnly += d.OutgoingOnly
	}
	return c
}

// natRows are the summary table's NAT lines.
func (r *NATReport) rows() [][2]string {
	if r == nil {
		return nil
	}
	return [][2]string{
		{"nat mix", fmt.Sprintf("%s (joined: %d public, %d cone, %d symmetric)", r.Mix, r.Peers["public"], r.Peers["cone"], r.Peers["symmetric"])},
		{"punches", fmt.Sprintf("%d of %d succeeded (%.1f %%), time to success p50 %.0f ms, p95 %.0f ms, max %.0f ms",
			r.PunchSuccesses, r.PunchAttempts, 100*r.PunchSuccess, r.PunchTimeMs.P50, r.PunchTimeMs.P95, r.PunchTimeMs.Max)},
		{"links at end", fmt.Sprintf("%d direct to public hosts, %d punched, %d outgoing only", r.Links.Direct, r.Links.Punched, r.Links.OutgoingOnly)},
		{"offload by NAT", fmt.Sprintf("public %.1f %%, cone %.1f %%, symmetric %.1f %%",
			100*r.OffloadByClass["public"], 100*r.OffloadByClass["cone"], 100*r.OffloadByClass["symmetric"])},
	}
}
