package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crowdsurf/crowdsurf/peer"
)

// make bench-peer PEER_FLAGS=-peer.relay: the measured viewer as a relay. Nothing in the product
// is changed for it; it only joins first. Alone with the origin, it gets every stripe from the
// root (rootStripesPerChild gives a lone viewer all of them; loopback is exempt from the seed
// share per IP), at depth 1. The neighbours then join: viewers rank before the root
// (betterParent), and depth 1 is the shallowest a viewer can be, so the first to ask fill the
// relay's child slots (auto budget: 9, at most 3 on one stripe) and never find a shallower
// parent to leave it for. The root's second seed slot per stripe goes to one of them.

// waitSeeded waits until the viewer at addr has a parent on every stripe at depth 1 (the root's
// children), so that the neighbours that join next find it at the top of every tree. It does not
// fail when the root will not have it: the report's depths and children say what it became.
func waitSeeded(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var s peer.Stats
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		s = peerStats(t, addr)
		if len(s.Depths) > 0 && !slices.ContainsFunc(s.Depths, func(d int) bool { return d != 1 }) {
			t.Logf("the measured viewer is the root's child on every stripe (depths %v); the neighbours join now", s.Depths)
			return
		}
	}
	t.Logf("the measured viewer is not the root's child on every stripe after 20 s (depths %v); the neighbours join anyway", s.Depths)
}

// neighbourStats is every neighbour's /stats.
func neighbourStats(t *testing.T, addrs []string) []peer.Stats {
	t.Helper()
	out := make([]peer.Stats, len(addrs))
	for i, a := range addrs {
		out[i] = peerStats(t, a)
	}
	return out
}

// relayLinks counts, per stripe, the neighbours whose parent on it is the peer id relay
// (their /stats parent_ids), and how many distinct neighbours that is.
func relayLinks(relay string, stripes int, swarm []peer.Stats) (perStripe []int, children int) {
	perStripe = make([]int, stripes)
	for _, s := range swarm {
		child := false
		for stripe, id := range s.ParentIDs {
			if id == relay && stripe < stripes {
				perStripe[stripe]++
				child = true
			}
		}
		if child {
			children++
		}
	}
	return perStripe, children
}

// deliveryTotals is what a group of neighbours got in the window: enough to tell whether their
// parents kept up (a late stripe shows as segments completed with the CDN's help, HTTP bytes
// after joining, parents left for silence or withholding).
type deliveryTotals struct {
	peers, segments, withFallback, parentsLeft, rejected int64
	httpBytes                                            int64 // after joining
}

func (d *deliveryTotals) add(before, after peer.Stats) {
	d.peers++
	d.segments += after.SegmentsComplete - before.SegmentsComplete
	d.withFallback += after.SegmentsWithFallback - before.SegmentsWithFallback
	d.parentsLeft += after.ParentsSilent - before.ParentsSilent + after.ParentsWithheld - before.ParentsWithheld
	d.rejected += after.ChunksRejected - before.ChunksRejected
	d.httpBytes += after.BytesFromHTTP - after.BytesFromHTTPJoining - (before.BytesFromHTTP - before.BytesFromHTTPJoining)
}

func (d deliveryTotals) String(elapsed time.Duration) string {
	return fmt.Sprintf("%d segments complete, %d with fallback; %.3f Mbit/s over HTTP; %d parents left (silent or withholding); %d chunks rejected",
		d.segments, d.withFallback, mbps(d.httpBytes, elapsed), d.parentsLeft, d.rejected)
}

// relayReport is the relay's lines of the report: its children by stripe at both ends of the
// window (from the neighbours' own parent ids, not from its claim), what it could not push, and
// how its children and the other neighbours were served in the window.
func relayReport(before, after peer.Stats, swarmBefore, swarmAfter []peer.Stats, elapsed time.Duration) []string {
	stripes := len(after.Depths)
	startLinks, startChildren := relayLinks(after.PeerID, stripes, swarmBefore)
	endLinks, endChildren := relayLinks(after.PeerID, stripes, swarmAfter)
	var children, others deliveryTotals
	for i := range swarmAfter {
		if slices.Contains(swarmBefore[i].ParentIDs, after.PeerID) || slices.Contains(swarmAfter[i].ParentIDs, after.PeerID) {
			children.add(swarmBefore[i], swarmAfter[i])
		} else {
			others.add(swarmBefore[i], swarmAfter[i])
		}
	}
	return []string{
		fmt.Sprintf("relay       children per stripe %v, %d links to %d of %d neighbours at the window's end (%v, %d links to %d at its start); "+
			"in the window %d pushes dropped, %d repair requests served, %d refused, %d loop lags",
			endLinks, sum(endLinks), endChildren, len(swarmAfter), startLinks, sum(startLinks), startChildren,
			after.PushesDropped-before.PushesDropped, after.RequestsServed-before.RequestsServed,
			after.RequestsRefused-before.RequestsRefused, after.LoopLags-before.LoopLags),
		fmt.Sprintf("  its %d children: %s", children.peers, children.String(elapsed)),
		fmt.Sprintf("  the other %d:  %s", others.peers, others.String(elapsed)),
	}
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

// contextSwitches is a process's context switches summed over its threads, and how many threads
// it has.
type contextSwitches struct{ voluntary, involuntary, threads int64 }

// procContextSwitches sums /proc/PID/task/*/status's switch counts. A thread that ended takes its
// counts with it, but the Go runtime keeps its threads. The zero value when /proc cannot say.
func procContextSwitches(pid int) contextSwitches {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return contextSwitches{}
	}
	var c contextSwitches
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // the thread ended
		}
		c.threads++
		for _, line := range strings.Split(string(b), "\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
			if err != nil {
				continue
			}
			switch name {
			case "voluntary_ctxt_switches":
				c.voluntary += n
			case "nonvoluntary_ctxt_switches":
				c.involuntary += n
			}
		}
	}
	return c
}

// describeSwitches is the context switches per second between two readings, and the threads.
func describeSwitches(before, after contextSwitches, elapsed time.Duration) string {
	if after.threads == 0 {
		return "context switches unknown"
	}
	return fmt.Sprintf("%.0f context switches/s (%.0f voluntary), %d threads",
		float64(after.voluntary+after.involuntary-before.voluntary-before.involuntary)/elapsed.Seconds(),
		float64(after.voluntary-before.voluntary)/elapsed.Seconds(), after.threads)
}
