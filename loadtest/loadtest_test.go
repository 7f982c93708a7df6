package loadtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/player"
)

// runLoadTest runs a small load test and returns its report, also written as JSON and HTML.
func runLoadTest(t *testing.T, cfg Config) (*Report, []byte, string) {
	t.Helper()
	_, r, b, html := runLoadTestOf(t, cfg)
	return r, b, html
}

// runLoadTestOf is runLoadTest that also returns the run, to look at its origin.
func runLoadTestOf(t *testing.T, cfg Config) (*LoadTest, *Report, []byte, string) {
	t.Helper()
	lt, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+60*time.Second)
	defer cancel()
	require.NoError(t, lt.Run(ctx))
	r := lt.Report()
	require.NotNil(t, r)
	b, h := writeReports(t, r)
	return lt, r, b, h
}

// writeReports writes r as JSON and HTML, returns both, and logs the summary.
func writeReports(t *testing.T, r *Report) ([]byte, string) {
	t.Helper()
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	require.NoError(t, r.WriteJSONFile(jsonPath))
	require.NoError(t, r.WriteHTMLFile(htmlPath))
	b, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	h, err := os.ReadFile(htmlPath)
	require.NoError(t, err)
	var summary bytes.Buffer
	require.NoError(t, r.WriteSummary(&summary))
	t.Logf("report:\n%s", summary.String())
	return b, string(h)
}

// originCounter reads one of the origin's own Prometheus counters (crowdsurf_origin_NAME).
func originCounter(t *testing.T, lt *LoadTest, name string) float64 {
	t.Helper()
	families, err := lt.originMetrics.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == "crowdsurf_origin_"+name {
			require.Len(t, f.GetMetric(), 1)
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("the origin has no metric crowdsurf_origin_%s", name)
	return 0
}

// requireSaneReport checks what holds for every run, whatever the mode.
func requireSaneReport(t *testing.T, r *Report, cfg Config, jsonBytes []byte, html string) {
	t.Helper()
	requireReportFields(t, jsonBytes)
	require.Equal(t, cfg.Peers, r.Peers)
	require.Equal(t, cfg.Mode, r.Mode)
	require.Equal(t, cfg.BitrateBps, r.BitrateBps)
	require.InDelta(t, cfg.Duration.Seconds(), r.DurationS, 1.5)
	// The source kept its bit rate over the measured interval (within 20 %).
	require.InDelta(t, float64(cfg.BitrateBps)/8*r.DurationS, float64(r.StreamBytes), 0.2*float64(cfg.BitrateBps)/8*r.DurationS)
	require.GreaterOrEqual(t, r.Offload, 0.0)
	require.LessOrEqual(t, r.Offload, 1.0)
	require.GreaterOrEqual(t, r.FallbackShare, 0.0)
	require.LessOrEqual(t, r.FallbackShare, 1.0)
	// The second half starts half way through and its figures are ratios of its own bytes.
	require.InDelta(t, r.DurationS/2, r.SecondHalf.FromS, 1.1)
	require.GreaterOrEqual(t, r.SecondHalf.Offload, 0.0)
	require.LessOrEqual(t, r.SecondHalf.Offload, 1.0)
	require.Positive(t, r.SecondHalf.OriginCopies)
	require.LessOrEqual(t, r.SecondHalf.Stalls, r.Stalls)
	require.Positive(t, r.SecondHalf.Cores)
	require.Zero(t, r.CorruptBytes, "no corrupt bytes: %+v", r.Detail)
	require.Zero(t, r.Detail.PlayerParseErrors+r.Detail.PlayerTSErrors, "players' MPEG-TS checks pass")
	require.Equal(t, cfg.Peers, r.StartupMs.Samples, "every player started")
	require.Positive(t, r.StartupMs.P50)
	require.LessOrEqual(t, r.StartupMs.P50, r.StartupMs.P95)
	require.LessOrEqual(t, r.StartupMs.P95, r.StartupMs.Max)
	require.Positive(t, r.SegmentsPlayed)
	require.Positive(t, r.LiveLatencyMs.P50)
	require.LessOrEqual(t, r.LiveLatencyMs.P50, r.LiveLatencyMs.P95)
	require.GreaterOrEqual(t, r.StallRatio, 0.0)
	require.Less(t, r.StallRatio, 1.0)
	require.Positive(t, r.CPUSeconds)
	require.Positive(t, r.MaxRSSBytes)
	require.NotEmpty(t, r.Series)
	charts := 6 // origin egress, offload, delivery latency CDF, stalls, mesh, depth histogram
	if cfg.Mode == ModeCDN {
		charts = 5 // no mesh
	}
	require.Equal(t, charts, strings.Count(html, "<svg"), "the HTML report holds its charts as inline SVG")
}

// requireTheOriginCarriedTheRun checks that the real origin did the broadcast: its own mesh root
// seeded the swarm (peers found it through its registration at the tracker, as they were given
// no origin address), its CDN endpoint served the fallback, and the report's origin egress is
// what the origin's own metrics counted.
func requireTheOriginCarriedTheRun(t *testing.T, lt *LoadTest, r *Report) {
	t.Helper()
	seeded, served := originCounter(t, lt, "bytes_seeded_total"), originCounter(t, lt, "bytes_http_total")
	require.Positive(t, r.Detail.OriginQUICBytes, "the origin's mesh root seeds over QUIC")
	require.Positive(t, r.Detail.OriginHTTPBytes, "the origin's CDN endpoint serves playlists and fallback")
	// The metrics count from the origin's start, the report from the measured interval's.
	require.GreaterOrEqual(t, seeded, float64(r.Detail.OriginQUICBytes))
	require.GreaterOrEqual(t, served, float64(r.Detail.OriginHTTPBytes))
	require.Equal(t, r.Detail.OriginHTTPBytes, r.Detail.OriginHTTPPlaylistBytes+r.Detail.OriginHTTPSegmentBytes+r.Detail.OriginHTTPChunkBytes,
		"the origin's HTTP egress by kind adds up")
	require.Positive(t, originCounter(t, lt, "chunks_total"))
	require.Equal(t, float64(lt.emits.chunks()), originCounter(t, lt, "chunks_total"), "every chunk the origin signed is in the emit book")
}

func TestP2PLoadTestOffloadsTheOrigin(t *testing.T) {
	cfg := Config{
		// 14 s: under `go test -race ./...` on 2 cores a join can take several seconds, and the
		// test asserts that every player starts.
		Peers: 20, Duration: 14 * time.Second, BitrateBps: 500_000, Segment: time.Second,
		Net: NetUDP, Mode: ModeP2P,
	}
	lt, r, b, html := runLoadTestOf(t, cfg)
	requireSaneReport(t, r, cfg, b, html)
	require.Greater(t, r.Offload, 0.2, "peers carry a good part of the stream: %+v", r.Detail)
	requireTheOriginCarriedTheRun(t, lt, r)
	// The second half's deliveries are a part of the whole run's.
	require.Positive(t, r.SecondHalf.DeliveryLatencyMs.Samples)
	require.Less(t, r.SecondHalf.DeliveryLatencyMs.Samples, r.DeliveryLatencyMs.Samples)
	require.LessOrEqual(t, r.SecondHalf.DeliveryLatencyMs.Max, r.DeliveryLatencyMs.Max)
	// Pulled chunks are a part of the second half's, and most come down the trees.
	require.LessOrEqual(t, r.SecondHalf.PulledDeliveryLatencyMs.Samples, r.SecondHalf.DeliveryLatencyMs.Samples)
	require.InDelta(t, float64(r.SecondHalf.PulledDeliveryLatencyMs.Samples)/float64(r.SecondHalf.DeliveryLatencyMs.Samples), r.SecondHalf.PulledShare, 1e-9)
	require.Less(t, r.SecondHalf.PulledShare, 0.5, "most chunks are pushed: %+v", r.SecondHalf)
	require.Positive(t, r.DeliveryLatencyMs.Samples)
	require.LessOrEqual(t, r.DeliveryLatencyMs.P50, r.DeliveryLatencyMs.P95)
	require.LessOrEqual(t, r.DeliveryLatencyMs.P95, r.DeliveryLatencyMs.P99)
	require.LessOrEqual(t, r.DeliveryLatencyMs.P99, r.DeliveryLatencyMs.Max)
	require.Len(t, r.DeliveryLatencyCDF, 100)
	require.NotEmpty(t, r.DepthHistogram)
	pairs := 0
	for _, bin := range r.DepthHistogram {
		pairs += bin.Count
	}
	require.Equal(t, cfg.Peers*4, pairs, "one depth per peer and stripe")
}

func TestSimulatedNetworkCarriesTheSwarmWithMixedUplinks(t *testing.T) {
	uplinks, err := ParseUplink("50%:3Mbit,30%:1Mbit,20%:0")
	require.NoError(t, err)
	cfg := Config{
		Peers: 10, Duration: 8 * time.Second, BitrateBps: 500_000, Segment: time.Second,
		Net: NetSim, Latency: 10 * time.Millisecond, LossPct: 0.5, Uplink: uplinks, Join: 2 * time.Second, Mode: ModeP2P,
		StartNeighbourWait: time.Second, // later joiners take their start segments from earlier ones
	}
	lt, r, b, html := runLoadTestOf(t, cfg)
	requireSaneReport(t, r, cfg, b, html)
	require.Positive(t, r.Offload, "some bytes travel between simulated peers: %+v", r.Detail)
	requireTheOriginCarriedTheRun(t, lt, r)
	require.Positive(t, r.DeliveryLatencyMs.Samples)
	// The latency is real: nothing crosses the simulated mesh in under one link's delay.
	require.GreaterOrEqual(t, r.DeliveryLatencyMs.Max, float64(cfg.Latency/time.Millisecond))
	require.Equal(t, "50%:3Mbit,30%:1Mbit,20%:0", r.Parameters.Uplink)
	require.Equal(t, 0.5, r.Parameters.LossPct)
}

func TestChurnReplacesLeavingPeers(t *testing.T) {
	cfg := Config{
		Peers: 6, Duration: 6 * time.Second, BitrateBps: 300_000, Segment: time.Second,
		Net: NetUDP, ChurnPct: 500, Mode: ModeP2P, // 30 leave per minute: one every 2 s
	}
	r, _, _ := runLoadTest(t, cfg)
	require.Greater(t, r.Detail.PeersJoined, cfg.Peers, "leavers were replaced by new joiners")
	require.Positive(t, r.Detail.PeersLeft)
	require.Equal(t, r.Detail.PeersJoined-cfg.Peers, r.Detail.PeersLeft, "one joiner per leaver")
	last := r.Series[len(r.Series)-1]
	require.Equal(t, cfg.Peers, last.Peers, "the swarm keeps its size")
}

func TestCDNBaselineSendsOneCopyPerPlayer(t *testing.T) {
	cfg := Config{
		Peers: 20, Duration: 5 * time.Second, BitrateBps: 500_000, Segment: 400 * time.Millisecond, Mode: ModeCDN,
	}
	r, b, html := runLoadTest(t, cfg)
	requireSaneReport(t, r, cfg, b, html)
	require.Zero(t, r.Offload)
	require.InDelta(t, float64(cfg.Peers), r.OriginCopies, 0.3*float64(cfg.Peers), "origin copies near the number of players")
	require.Zero(t, r.SegmentsMissing)
}

func TestConfigRejectsNonsenseWithAHint(t *testing.T) {
	for _, cfg := range []Config{
		{Peers: -1}, {Net: "tcp"}, {Mode: "mesh"}, {Source: "camera"}, {LossPct: 100}, {Duration: time.Millisecond},
		{ChurnPct: -5}, {Segment: time.Millisecond}, {StartNeighbourWait: -time.Second},
	} {
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrConfig, "%+v", cfg)
		require.Contains(t, err.Error(), "--")
	}
}

func TestTestcardThroughARealOriginPlaysCleanly(t *testing.T) {
	cfg := Config{Peers: 3, Duration: 5 * time.Second, Segment: time.Second, Mode: ModeCDN, Source: SourceTestcard}
	r, b, html := runLoadTest(t, cfg)
	requireReportFields(t, b)
	require.Equal(t, 5, strings.Count(html, "<svg"), "cdn mode: five charts, no mesh")
	require.Equal(t, cfg.Peers, r.StartupMs.Samples, "every player started on the origin's HLS")
	require.Zero(t, r.Detail.PlayerParseErrors+r.Detail.PlayerTSErrors, "the origin's MPEG-TS passes the players' checks")
	require.Zero(t, r.CorruptBytes)
	require.Positive(t, r.StreamBytes)
	require.Positive(t, r.BitrateBps, "the clip's bit rate is measured")
	// Each player also fetches the three target durations of history it starts with, which
	// weighs heavily in a short run.
	require.GreaterOrEqual(t, r.OriginCopies, 0.7*float64(cfg.Peers))
	require.LessOrEqual(t, r.OriginCopies, 2*float64(cfg.Peers))
}

func TestLowLatencyPlayersPlayTheirPeersLLPlaylist(t *testing.T) {
	cfg := Config{
		Peers: 4, Duration: 6 * time.Second, BitrateBps: 300_000, Segment: time.Second,
		Net: NetUDP, Mode: ModeP2P, LL: true,
	}
	r, b, html := runLoadTest(t, cfg)
	requireSaneReport(t, r, cfg, b, html)
	require.Equal(t, player.ModeLowLatency, r.Parameters.Playlist)
	require.Contains(t, r.summaryRows()[0][1], "players ll-hls")
	require.Equal(t, cfg.Peers, r.StartupMs.Samples, "every player started on its peer's ll.m3u8")
	// The players played the peers' fMP4 parts, and they passed the players' checks.
	require.Positive(t, r.SegmentsPlayed)
	require.Zero(t, r.Detail.PlayerParseErrors+r.Detail.PlayerTSErrors)
}
