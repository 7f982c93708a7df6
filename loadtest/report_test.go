package loadtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// requiredFields are the report's headline names, fixed by the task and read by scripts.
var requiredFields = []string{
	"peers", "duration_s", "bitrate_bps", "mode", "stream_bytes", "origin_egress_bytes",
	"origin_copies", "offload", "delivery_latency_ms", "startup_ms", "stalls", "stall_ratio",
	"live_latency_ms", "segments_played", "segments_missing", "corrupt_bytes", "fallback_share",
	"cpu_seconds", "max_rss_bytes", "parameters", "machine", "series", "depth_histogram",
	"delivery_latency_cdf", "second_half",
}

// requireReportFields decodes a report's JSON generically and checks every required name,
// including the nested quantiles.
func requireReportFields(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, f := range requiredFields {
		require.Contains(t, m, f)
	}
	nested := map[string][]string{
		"delivery_latency_ms": {"p50", "p95", "p99", "max"},
		"startup_ms":          {"p50", "p95", "max"},
		"live_latency_ms":     {"p50", "p95"},
		"machine":             {"cpu_model", "cores", "go_version"},
	}
	for obj, keys := range nested {
		sub, ok := m[obj].(map[string]any)
		require.True(t, ok, "%s is an object", obj)
		for _, k := range keys {
			require.Contains(t, sub, k, "%s.%s", obj, k)
		}
	}
	return m
}

// TestHTMLReportOfARunWithoutDeliveries: a CDN-only run has no delivery latencies, and the
// log-scale CDF still draws (gonum panics on a zero on a log axis).
func TestHTMLReportOfARunWithoutDeliveries(t *testing.T) {
	r := &Report{Peers: 2, Mode: ModeCDN, Machine: thisMachine(), Series: []SecondSample{{T: 1, Peers: 2}}}
	var b bytes.Buffer
	require.NoError(t, r.WriteHTML(&b))
	require.Contains(t, b.String(), "Delivery latency CDF")
}

func TestReportJSONUsesTheFixedFieldNames(t *testing.T) {
	r := &Report{Peers: 3, Mode: ModeP2P, Machine: thisMachine(), Series: []SecondSample{}, DepthHistogram: []DepthBin{},
		DeliveryLatencyCDF: []CDFPoint{}}
	var b bytes.Buffer
	require.NoError(t, r.WriteJSON(&b))
	m := requireReportFields(t, b.Bytes())
	require.Equal(t, 3.0, m["peers"])
	require.Equal(t, "p2p", m["mode"])
	// No stray Go field names leak into the JSON.
	for k := range m {
		require.Equal(t, strings.ToLower(k), k, "field %q", k)
	}
}

func TestMachineKnowsTheCPU(t *testing.T) {
	m := thisMachine()
	require.Positive(t, m.Cores)
	require.NotEmpty(t, m.CPUModel)
	require.True(t, strings.HasPrefix(m.GoVersion, "go"))
	u := processUsage()
	require.Positive(t, u.MaxRSS)
}

func TestHTMLReportEmbedsEveryChartAsSVG(t *testing.T) {
	r := &Report{
		Peers: 2, Mode: ModeP2P, BitrateBps: 1_000_000, Machine: thisMachine(),
		Series: []SecondSample{
			{T: 1, OriginEgressBps: 2e6, OriginCopies: 2, Offload: 0.5, Stalls: 1, Stalled: 1, Peers: 2},
			{T: 2, OriginEgressBps: 1e6, OriginCopies: 1, Offload: 0.6, Peers: 2},
		},
		DepthHistogram:     []DepthBin{{Depth: 1, Count: 4}, {Depth: 2, Count: 4}},
		DeliveryLatencyCDF: cdf(sortedCopy([]float64{10, 20, 30}), 100),
		DeliveryLatencyMs:  LatencyQuantiles{P50: 20, P95: 30, P99: 30, Max: 30},
		Notes:              []string{"a <note> that must be escaped"},
	}
	var b bytes.Buffer
	require.NoError(t, r.WriteHTML(&b))
	html := b.String()
	require.Equal(t, 6, strings.Count(html, "<svg"), "six charts in p2p mode")
	require.Contains(t, html, "a &lt;note&gt; that must be escaped")
	require.NotContains(t, html, "<?xml", "inline SVG carries no XML prolog")
	require.NotContains(t, html, "http://cdn", "no network needed to view")
	// Polish: charts take the page's width and font, each title appears once (the caption), the
	// latency CDF is log-scaled with its quantiles labelled.
	require.NotContains(t, html, `<svg width=`, "a chart's width comes from the page")
	require.NotContains(t, html, "Liberation Serif")
	require.Equal(t, 1, strings.Count(html, ">Delivery latency CDF<"))
	require.Contains(t, html, "(log scale)")
	require.Contains(t, html, "p50 20 ms")
}
