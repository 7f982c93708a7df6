package peer

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestChooseParent(t *testing.T) {
	const ms = time.Millisecond
	nd := proto.NoDepth
	pol := parentPolicy{SwitchMargin: 1, MinHold: 3 * time.Second}
	tests := []struct {
		name    string
		cands   []parentCandidate
		current int
		heldFor time.Duration
		want    int
	}{
		{name: "nobody to choose", want: -1, current: -1},
		{name: "unattached neighbours are no parents", current: -1, want: -1,
			cands: []parentCandidate{{ID: 1, Depth: nd, FreeSlots: 5}}},
		{name: "a full neighbour is no parent", current: -1, want: -1,
			cands: []parentCandidate{{ID: 1, Depth: 1, FreeSlots: 0}}},
		{name: "unattached: any attached depth will do", current: -1, want: 0,
			cands: []parentCandidate{{ID: 1, Depth: 9, FreeSlots: 1}}},
		{name: "unattached: a candidate far behind the best is never taken", current: -1, want: 1,
			cands: []parentCandidate{{ID: 1, Depth: 2, FreeSlots: 9, RTT: 90 * ms}, {ID: 2, Depth: 2, FreeSlots: 1, RTT: 5 * ms}}},
		{name: "attached: keep the parent when nobody is clearly better", current: 0, heldFor: time.Minute, want: 0,
			cands: []parentCandidate{{ID: 1, Depth: 2, FreeSlots: 0}, {ID: 2, Depth: 2, FreeSlots: 5, RTT: time.Microsecond}}},
		{name: "attached: switch to a shallower neighbour with room", current: 0, heldFor: time.Minute, want: 1,
			cands: []parentCandidate{{ID: 1, Depth: 3, FreeSlots: 0}, {ID: 2, Depth: 2, FreeSlots: 1}}},
		{name: "attached: hysteresis keeps a fresh parent", current: 0, heldFor: time.Second, want: 0,
			cands: []parentCandidate{{ID: 1, Depth: 3, FreeSlots: 0}, {ID: 2, Depth: 0, FreeSlots: 1}}},
		{name: "attached: a shallower neighbour without room is no reason to move", current: 0, heldFor: time.Minute, want: 0,
			cands: []parentCandidate{{ID: 1, Depth: 3}, {ID: 2, Depth: 1, FreeSlots: 0}}},
		{name: "unattached: a viewer with room before the root", current: -1, want: 1,
			cands: []parentCandidate{{ID: 1, Depth: 0, FreeSlots: 8, IsOrigin: true}, {ID: 2, Depth: 3, FreeSlots: 1}}},
		{name: "unattached: the root before a viewer deep down a chain", current: -1, want: 0,
			cands: []parentCandidate{{ID: 1, Depth: 0, FreeSlots: 1, IsOrigin: true}, {ID: 2, Depth: originDepthLimit, FreeSlots: 5}}},
		{name: "unattached: the root when no viewer has room", current: -1, want: 0,
			cands: []parentCandidate{{ID: 1, Depth: 0, FreeSlots: 1, IsOrigin: true}, {ID: 2, Depth: 1, FreeSlots: 0}}},
		{name: "attached: never move to the root for its depth", current: 0, heldFor: time.Minute, want: 0,
			cands: []parentCandidate{{ID: 1, Depth: 4, FreeSlots: 0}, {ID: 2, Depth: 0, FreeSlots: 2, IsOrigin: true}}},
		{name: "parent lost its stripe: choose as an orphan", current: 0, heldFor: time.Second, want: 2,
			cands: []parentCandidate{{ID: 1, Depth: nd}, {ID: 2, Depth: 2 + spreadReach + 1, FreeSlots: 1}, {ID: 3, Depth: 2, FreeSlots: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whatever the random pick, the same answer: these cases leave no choice.
			for _, pick := range []float64{0, 0.3, 0.7, 0.999} {
				require.Equal(t, tt.want, chooseParent(tt.cands, tt.current, tt.heldFor, pol, pick), "pick %v", pick)
			}
		})
	}
}

// TestSpreadParent checks how an orphan spreads its choice: over a sweep of picks each candidate
// gets its free slots' share, halved per level of depth (or RTT bucket) behind the best, and
// nothing beyond spreadReach or outside the best class.
func TestSpreadParent(t *testing.T) {
	const ms = time.Millisecond
	share := func(cands []parentCandidate, exclude int) []float64 {
		const n = 10000
		got := make([]float64, len(cands))
		for i := range n {
			if c := spreadParent(cands, exclude, (float64(i)+0.5)/n); c >= 0 {
				got[c] += 1.0 / n
			}
		}
		return got
	}
	tests := []struct {
		name         string
		cands        []parentCandidate
		excludeFirst bool // the first candidate is our current parent
		want         []float64
	}{
		{name: "by free slots at one depth",
			cands: []parentCandidate{{ID: 1, Depth: 2, FreeSlots: 1}, {ID: 2, Depth: 2, FreeSlots: 3}},
			want:  []float64{0.25, 0.75}},
		{name: "halved per level behind the shallowest",
			cands: []parentCandidate{{ID: 1, Depth: 3, FreeSlots: 4}, {ID: 2, Depth: 1, FreeSlots: 1}, {ID: 3, Depth: 2, FreeSlots: 2}},
			want:  []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{name: "beyond reach: never",
			cands: []parentCandidate{{ID: 1, Depth: 1, FreeSlots: 1}, {ID: 2, Depth: 1 + spreadReach + 1, FreeSlots: 60}},
			want:  []float64{1, 0}},
		{name: "an RTT bucket behind counts as a level",
			cands: []parentCandidate{{ID: 1, Depth: 1, FreeSlots: 2, RTT: 5 * ms}, {ID: 2, Depth: 1, FreeSlots: 2, RTT: 25 * ms}},
			want:  []float64{2.0 / 3, 1.0 / 3}},
		{name: "a nearer but deeper one is not ahead of the best",
			cands: []parentCandidate{{ID: 1, Depth: 1, FreeSlots: 1, RTT: 45 * ms}, {ID: 2, Depth: 2, FreeSlots: 2, RTT: 5 * ms}},
			want:  []float64{0.5, 0.5}},
		{name: "viewers only, while one has room",
			cands: []parentCandidate{{ID: 1, Depth: 0, FreeSlots: 8, IsOrigin: true}, {ID: 2, Depth: 5, FreeSlots: 1}},
			want:  []float64{0, 1}},
		{name: "those that withheld only when nobody else",
			cands: []parentCandidate{{ID: 1, Depth: 1, FreeSlots: 8, Withheld: 1}, {ID: 2, Depth: 3, FreeSlots: 1}},
			want:  []float64{0, 1}},
		{name: "the excluded one, the full one and the unattached one never",
			cands:        []parentCandidate{{ID: 1, Depth: 1, FreeSlots: 5}, {ID: 2, Depth: 1}, {ID: 3, Depth: proto.NoDepth, FreeSlots: 5}, {ID: 4, Depth: 2, FreeSlots: 1}},
			excludeFirst: true,
			want:         []float64{0, 0, 0, 1}},
		{name: "nobody", cands: []parentCandidate{{ID: 1, Depth: 1}}, want: []float64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exclude := -1
			if tt.excludeFirst {
				exclude = 0
			}
			got := share(tt.cands, exclude)
			for i := range tt.want {
				require.InDelta(t, tt.want[i], got[i], 0.001, "candidate %d: shares %v", i, got)
			}
		})
	}
}

func TestChooseRepairTarget(t *testing.T) {
	tests := []struct {
		name  string
		cands []repairCandidate
		want  int
	}{
		{name: "nobody holds it", want: -1},
		{name: "the parent first", want: 1,
			cands: []repairCandidate{{ID: 1, Outstanding: 0}, {ID: 2, IsParent: true, Outstanding: 5}}},
		{name: "peers before the origin", want: 1,
			cands: []repairCandidate{{ID: 1, IsOrigin: true}, {ID: 2, Outstanding: 3}}},
		{name: "the origin when nobody else has it", want: 0,
			cands: []repairCandidate{{ID: 1, IsOrigin: true}}},
		{name: "fewest outstanding requests", want: 2,
			cands: []repairCandidate{{ID: 1, Outstanding: 4}, {ID: 2, Outstanding: 2}, {ID: 3, Outstanding: 1}}},
		{name: "then the nearest", want: 0,
			cands: []repairCandidate{{ID: 1, RTT: time.Millisecond}, {ID: 2, RTT: 80 * time.Millisecond}}},
		{name: "not one that already failed us for this chunk", want: 1,
			cands: []repairCandidate{{ID: 1, IsParent: true, Tried: true}, {ID: 2, Outstanding: 9}}},
		{name: "not one with too many open requests", want: -1,
			cands: []repairCandidate{{ID: 1, Outstanding: maxOutstanding}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, chooseRepairTarget(tt.cands, maxOutstanding))
		})
	}
}

func TestRepairDue(t *testing.T) {
	now := time.Now()
	wait := 300 * time.Millisecond
	tests := []struct {
		name                              string
		advertisedAt                      time.Time
		laterHeld, attached, joining, due bool
		onlyOrigin                        bool
	}{
		{name: "fresh HAVE, push still expected", advertisedAt: now.Add(-100 * time.Millisecond), attached: true},
		{name: "HAVE older than the wait", advertisedAt: now.Add(-wait), attached: true, due: true},
		{name: "a later chunk of the stripe arrived first", advertisedAt: now, laterHeld: true, attached: true, due: true},
		{name: "no parent on the stripe", advertisedAt: now, due: true},
		{name: "joining needs the newest segments now", advertisedAt: now, attached: true, joining: true, due: true},
		{name: "known only from the window, not advertised", attached: true},
		{name: "only the origin has it: the tree is probably still carrying it", advertisedAt: now.Add(-wait), onlyOrigin: true,
			laterHeld: true, joining: true},
		{name: "only the origin has it, for long", advertisedAt: now.Add(-2 * wait), onlyOrigin: true, attached: true, due: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.due, repairDue(tt.advertisedAt, tt.laterHeld, tt.attached, tt.joining, tt.onlyOrigin, now, wait))
		})
	}
}

func TestFallbackDue(t *testing.T) {
	now := time.Now()
	delay, retry := 125*time.Millisecond, 500*time.Millisecond
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	tests := []struct {
		name string
		p    segmentProgress
		due  bool
	}{
		{name: "the swarm has not moved on", p: segmentProgress{}},
		{name: "moved on just now", p: segmentProgress{NextKnown: ago(50 * time.Millisecond)}},
		{name: "moved on a while ago", p: segmentProgress{NextKnown: ago(delay)}, due: true},
		{name: "complete", p: segmentProgress{Complete: true, NextKnown: ago(time.Second)}},
		{name: "abandoned", p: segmentProgress{Abandoned: true, NextKnown: ago(time.Second)}},
		{name: "already fetching", p: segmentProgress{Fetching: true, NextKnown: ago(time.Second)}},
		{name: "fetched recently", p: segmentProgress{NextKnown: ago(time.Second), LastFetch: ago(100 * time.Millisecond)}},
		{name: "retry after a failed fetch", p: segmentProgress{NextKnown: ago(time.Second), LastFetch: ago(retry)}, due: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.due, fallbackDue(tt.p, now, delay, retry))
		})
	}
}

func TestStripeStalled(t *testing.T) {
	now := time.Now()
	timeout := time.Second
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	var zero time.Time
	tests := []struct {
		name                                                     string
		undelivered, lastFromParent, subscribed, othersDelivered time.Time
		stalled                                                  bool
	}{
		{name: "nothing undelivered", lastFromParent: ago(5 * time.Second), subscribed: ago(time.Minute)},
		{name: "undelivered only briefly", undelivered: ago(500 * time.Millisecond), lastFromParent: ago(2 * time.Second),
			subscribed: ago(time.Minute), othersDelivered: ago(10 * time.Millisecond)},
		{name: "parent silent while other stripes flow", undelivered: ago(1200 * time.Millisecond), lastFromParent: ago(2 * time.Second),
			subscribed: ago(time.Minute), othersDelivered: ago(10 * time.Millisecond), stalled: true},
		{name: "parent delivered since", undelivered: ago(1200 * time.Millisecond), lastFromParent: ago(100 * time.Millisecond),
			subscribed: ago(time.Minute), othersDelivered: ago(10 * time.Millisecond)},
		{name: "every stripe is slow: not this parent's fault", undelivered: ago(1200 * time.Millisecond), lastFromParent: ago(2 * time.Second),
			subscribed: ago(time.Minute), othersDelivered: ago(2 * time.Second)},
		{name: "only stripe attached: the timeout alone decides", undelivered: ago(1200 * time.Millisecond), lastFromParent: ago(2 * time.Second),
			subscribed: ago(time.Minute), othersDelivered: zero, stalled: true},
		{name: "a new parent gets its time", undelivered: ago(1200 * time.Millisecond), lastFromParent: zero,
			subscribed: ago(500 * time.Millisecond), othersDelivered: ago(10 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.stalled, stripeStalled(tt.undelivered, tt.lastFromParent, tt.subscribed, tt.othersDelivered, now, timeout))
		})
	}
}

func TestChildSlots(t *testing.T) {
	require.Equal(t, 9, childSlots(0, 2_000_000, 4), "auto budget: three copies, three quarters of it for children")
	require.Equal(t, 6, childSlots(4_000_000, 0, 4), "unknown bitrate: assume a typical one")
	require.Equal(t, 0, childSlots(1, 0, 4), "a free rider takes no children, even before the bitrate is known")
	require.Equal(t, 6, childSlots(4_000_000, 2_000_000, 4))
	require.Equal(t, 7, childSlots(2_400_000, 1_000_000, 4))
	require.Equal(t, 1, childSlots(1_000_000, 2_000_000, 4))
	require.Equal(t, 0, childSlots(100_000, 2_000_000, 4))
}

func TestHaveRangesMergeConsecutiveChunks(t *testing.T) {
	got := haveRanges([]chunkKey{{5, 2}, {4, 0}, {5, 0}, {5, 1}, {4, 1}, {5, 7}, {5, 1}})
	require.Equal(t, []proto.ChunkRange{
		{Seq: 4, First: 0, Count: 2},
		{Seq: 5, First: 0, Count: 3},
		{Seq: 5, First: 7, Count: 1},
	}, got)
	require.Empty(t, haveRanges(nil))
}

var playlistSeqsTests = []struct {
	name string
	in   string
	want []uint64
}{
	{name: "origin playlist", in: "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:2.000,\n41.ts\n#EXTINF:2.000,\n42.ts\n", want: []uint64{41, 42}},
	{name: "absolute URIs and queries", in: "#EXTM3U\n#EXTINF:2.000,\nhttp://x/live/a/7.ts?x=1\n", want: []uint64{7}},
	{name: "a URI without EXTINF is no segment", in: "#EXTM3U\nhttp://x/live/a/7.ts\n", want: nil},
	{name: "a master playlist lists no segments", in: "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n7.ts\n", want: nil},
	{name: "not ours", in: "#EXTM3U\nseg-1.ts\nfoo.m4s\n\n", want: nil},
	{name: "empty", in: "", want: nil},
}

func TestPlaylistSeqs(t *testing.T) {
	for _, tt := range playlistSeqsTests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, playlistSeqs([]byte(tt.in)))
		})
	}
}

// FuzzPlaylistSeqs reads arbitrary playlists (the origin's, or whatever a CDN in front of it
// answers): every seq found is spelled "N.ts" in the input, there are no more seqs than ".ts"
// names, and the seqs written back as a playlist read back the same.
func FuzzPlaylistSeqs(f *testing.F) {
	for _, tt := range playlistSeqsTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		seqs := playlistSeqs(b)
		require.LessOrEqual(t, len(seqs), bytes.Count(b, []byte(".ts")))
		var back bytes.Buffer
		back.WriteString("#EXTM3U\n")
		for _, seq := range seqs {
			// Leading zeros ("007.ts") parse too, and still end in the canonical spelling.
			name := strconv.FormatUint(seq, 10) + ".ts"
			require.True(t, bytes.Contains(b, []byte(name)), "seq %d: no %q in the playlist", seq, name)
			back.WriteString("#EXTINF:2.000,\n" + name + "\n")
		}
		require.Equal(t, seqs, playlistSeqs(back.Bytes()))
	})
}

func TestParentSilent(t *testing.T) {
	now := time.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	timeout := 1500 * time.Millisecond
	tests := []struct {
		name                string
		lastHeard, subbedAt time.Time
		silent              bool
	}{
		{name: "heard a heartbeat just now", lastHeard: ago(100 * time.Millisecond), subbedAt: ago(time.Minute)},
		{name: "quiet for less than the timeout", lastHeard: ago(time.Second), subbedAt: ago(time.Minute)},
		{name: "quiet past the timeout: dead, whatever other stripes do", lastHeard: ago(1600 * time.Millisecond), subbedAt: ago(time.Minute), silent: true},
		{name: "a new parent gets its time", lastHeard: ago(time.Minute), subbedAt: ago(time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.silent, parentSilent(tt.lastHeard, tt.subbedAt, now, timeout))
		})
	}
}

func TestStripeCapIsAnEvenShareOfTheSlots(t *testing.T) {
	tests := []struct{ slots, stripes, want int }{
		{slots: 0, stripes: 4, want: 0}, // a free rider takes no child on any stripe
		{slots: 1, stripes: 4, want: 1},
		{slots: 3, stripes: 4, want: 1},
		{slots: 7, stripes: 4, want: 2},
		{slots: 9, stripes: 4, want: 3},
		{slots: 8, stripes: 1, want: 8},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, stripeCap(tt.slots, tt.stripes), "%d slots over %d stripes", tt.slots, tt.stripes)
	}
}

func TestFeedsOrphan(t *testing.T) {
	orphan := []bool{true, false, false, false}
	tests := []struct {
		name   string
		depths []int
		free   int
		want   bool
	}{
		{name: "attached on the stripe we lack, with a slot", depths: []int{3, -1, -1, -1}, free: 2, want: true},
		{name: "attached only where we have parents", depths: []int{-1, 1, 1, 1}, free: 2},
		{name: "no free slot", depths: []int{1, 1, 1, 1}, free: 0},
		{name: "depths unknown", depths: nil, free: 5},
		{name: "unattached newcomer", depths: []int{-1, -1, -1, -1}, free: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, feedsOrphan(tt.depths, tt.free, orphan))
		})
	}
}

func TestRootSpreadsItsSeedSlotsOverManyPeers(t *testing.T) {
	require.Equal(t, 4, rootStripesPerChild(4, 2, 1), "a lone viewer gets every stripe from the root")
	require.Equal(t, 4, rootStripesPerChild(4, 2, 2))
	require.Equal(t, 2, rootStripesPerChild(4, 2, 4))
	require.Equal(t, 1, rootStripesPerChild(4, 2, 8))
	require.Equal(t, 1, rootStripesPerChild(4, 2, 200), "in a big swarm each top-level peer carries one stripe")
	require.Equal(t, 4, rootStripesPerChild(4, 2, 0))
}

func TestDialBackoffDoublesUpToALimit(t *testing.T) {
	require.Equal(t, dialBackoff, dialBackoffAfter(1))
	require.Equal(t, 2*dialBackoff, dialBackoffAfter(2))
	require.Equal(t, 8*dialBackoff, dialBackoffAfter(4))
	require.Equal(t, 16*dialBackoff, dialBackoffAfter(5))
	require.Equal(t, 16*dialBackoff, dialBackoffAfter(50))
}
