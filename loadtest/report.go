package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/humanize"
)

// Report is the outcome of one load test. The measures follow DESIGN.md "Measures"; the JSON
// names are an interface (scripts and the README read them), so they never change.
type Report struct {
	Peers      int     `json:"peers"`
	DurationS  float64 `json:"duration_s"`
	BitrateBps int64   `json:"bitrate_bps"`
	Mode       string  `json:"mode"`

	// StreamBytes is the chunk data the source produced during the measured interval.
	StreamBytes int64 `json:"stream_bytes"`
	// OriginEgressBytes is what the origin sent in the same interval: QUIC seeding by the mesh
	// root plus everything its HTTP endpoint served (players in cdn mode, peers' fallback and
	// playlist polls in p2p mode).
	OriginEgressBytes int64 `json:"origin_egress_bytes"`
	// OriginCopies is OriginEgressBytes / StreamBytes.
	OriginCopies float64 `json:"origin_copies"`
	// Offload is the share of the bytes peers received that did not come from the origin (QUIC
	// seeding and HTTP fallback both count as origin). 0 in cdn mode.
	Offload float64 `json:"offload"`
	// DeliveryLatencyMs runs from the origin emitting a chunk to a peer holding it verified.
	DeliveryLatencyMs LatencyQuantiles `json:"delivery_latency_ms"`
	// StartupMs is the players' startup (first playlist request to first segment received).
	StartupMs StartupQuantiles `json:"startup_ms"`
	// Stalls counts the times any player's buffer ran dry; StallRatio is stalled time over
	// watched time, summed over players.
	Stalls     int     `json:"stalls"`
	StallRatio float64 `json:"stall_ratio"`
	// LiveLatencyMs pools every player's live latency, sampled once a second while playing.
	LiveLatencyMs LiveLatency `json:"live_latency_ms"`
	// SegmentsPlayed sums the segments players received; SegmentsMissing counts the sequence
	// numbers a player skipped between its first and its last segment.
	SegmentsPlayed  int `json:"segments_played"`
	SegmentsMissing int `json:"segments_missing"`
	// CorruptBytes estimates the bytes that failed checks: chunks peers rejected (at the mean
	// chunk size) plus segments the players could not parse (at the mean segment size).
	CorruptBytes int64 `json:"corrupt_bytes"`
	// FallbackShare is the share of the bytes peers received that came over the HTTP fallback.
	FallbackShare float64 `json:"fallback_share"`
	// SecondHalf holds the same measures over the second half of the run only: with every
	// viewer joining at once, the first seconds (no trees yet, every joiner fetching its start
	// segments from the CDN) weigh heavily on whole-run figures of a short run, and this shows
	// what the swarm does once it has formed.
	SecondHalf SecondHalf `json:"second_half"`
	// Floor is the bare quic-go relay tree run with the same peers and bitrate (--floor), and
	// FloorRatio the second half's cores over the floor's: what the mesh costs beyond QUIC.
	Floor       *FloorResult `json:"floor,omitempty"`
	FloorRatio  float64      `json:"floor_ratio,omitempty"`
	CPUSeconds  float64      `json:"cpu_seconds"`
	MaxRSSBytes int64        `json:"max_rss_bytes"`
	// GCCycles counts the collector's cycles during the run (Machine has its settings),
	// GCCPUSeconds is the runtime's estimate of their CPU, part of CPUSeconds, and
	// GCIdleCPUSeconds the part of that spent on processors that had nothing else to run.
	GCCycles         uint64  `json:"gc_cycles"`
	GCCPUSeconds     float64 `json:"gc_cpu_seconds"`
	GCIdleCPUSeconds float64 `json:"gc_idle_cpu_seconds"`

	Parameters Parameters `json:"parameters"`
	Machine    Machine    `json:"machine"`
	Detail     Detail     `json:"detail"`
	StartedAt  time.Time  `json:"started_at"`

	// Series has one sample per second of the measured interval.
	Series []SecondSample `json:"series"`
	// DepthHistogram counts (peer, stripe) pairs by tree depth at the end; depth -1 = no parent.
	DepthHistogram []DepthBin `json:"depth_histogram"`
	// DeliveryLatencyCDF is the delivery latency distribution in 1 % steps.
	DeliveryLatencyCDF []CDFPoint `json:"delivery_latency_cdf"`
	// NAT is the NAT side of a run with --nat: punches, links by kind, offload per NAT class.
	NAT *NATReport `json:"nat,omitempty"`
	// Lab is set by the scale lab (virtual time): simulated against wall time.
	Lab *LabFigures `json:"lab,omitempty"`
	// Notes are caveats about this run (e.g. the machine could not keep up).
	Notes []string `json:"notes"`
}

// LatencyQuantiles are delivery latency quantiles in milliseconds.
type LatencyQuantiles struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"`
}

// StartupQuantiles are startup quantiles in milliseconds over the players that started.
type StartupQuantiles struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"`
}

// LiveLatency are live latency quantiles in milliseconds.
type LiveLatency struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	Samples int     `json:"samples"`
}

// Parameters are the knobs the run used, in the units of the flags.
type Parameters struct {
	Peers      int     `json:"peers"`
	Duration   string  `json:"duration"`
	Bitrate    string  `json:"bitrate"`
	Segment    string  `json:"segment"`
	SeedCopies int     `json:"seed_copies"`
	Net        string  `json:"net"`
	Latency    string  `json:"latency"`
	LossPct    float64 `json:"loss_pct"`
	Uplink     string  `json:"uplink"`
	Join       string  `json:"join"`
	// StartNeighbourWait is --start-neighbour-wait.
	StartNeighbourWait string `json:"start_neighbour_wait"`
	// ChunkSize is the data size of the origin's chunks at this bit rate (origin.ChunkSizeFor).
	ChunkSize  int     `json:"chunk_size"`
	ChurnPct   float64 `json:"churn_pct_per_min"`
	Mode       string  `json:"mode"`
	Source     string  `json:"source"`
	Stripes    int     `json:"stripes"`
	MediaCheck bool    `json:"media_check"`
	NAT        string  `json:"nat"`
	// Playlist is how the players played: "hls" (index.m3u8) or "ll-hls" (ll.m3u8, --ll).
	Playlist string `json:"playlist"`
}

// Detail holds the raw counters behind the headline measures.
type Detail struct {
	OriginHTTPBytes int64 `json:"origin_http_bytes"`
	OriginQUICBytes int64 `json:"origin_quic_bytes"`
	// The HTTP egress by kind of response, from the origin's counters.
	OriginHTTPPlaylistBytes int64 `json:"origin_http_playlist_bytes"`
	OriginHTTPSegmentBytes  int64 `json:"origin_http_segment_bytes"`
	OriginHTTPChunkBytes    int64 `json:"origin_http_chunk_bytes"`
	BytesFromPeers          int64 `json:"bytes_from_peers"`
	BytesFromOrigin         int64 `json:"bytes_from_origin"`
	BytesFromHTTP           int64 `json:"bytes_from_http"`
	// BytesFromHTTPJoining is the part of BytesFromHTTP peers fetched while joining: their
	// start segments and their first moments before the trees pushed.
	BytesFromHTTPJoining int64   `json:"bytes_from_http_joining"`
	ChunksEmitted        int64   `json:"chunks_emitted"`
	ChunksRejected       int64   `json:"chunks_rejected"`
	SegmentsWithFallbk   int64   `json:"segments_with_fallback"`
	SegmentsAbandoned    int64   `json:"segments_abandoned"`
	PeersJoined          int     `json:"peers_joined"`
	PeersLeft            int     `json:"peers_left"`
	PlayersStarted       int     `json:"players_started"`
	PlayerErrors         int     `json:"player_errors"`
	PlayerParseErrors    int     `json:"player_parse_errors"`
	PlayerTSErrors       int     `json:"player_timestamp_errors"`
	PlayerFetchErrors    int     `json:"player_fetch_errors"`
	PlayerSequenceErrs   int     `json:"player_sequence_errors"`
	StallMs              float64 `json:"stall_ms"`
	WatchedMs            float64 `json:"watched_ms"`
	SimPacketsSent       uint64  `json:"sim_packets_sent"`
	SimBytesSent         uint64  `json:"sim_bytes_sent"`
	SimPacketsDropped    uint64  `json:"sim_packets_dropped"`
	SimDroppedQueue      uint64  `json:"sim_dropped_queue"`
	SimDroppedLoss       uint64  `json:"sim_dropped_loss"`
	SimDroppedRcvBuffer  uint64  `json:"sim_dropped_receive_buffer"`
	SourceLagMaxMs       float64 `json:"source_lag_max_ms"`
	// Mesh connection counters summed over every viewer node (see peer.Stats).
	MeshDials         int64 `json:"mesh_dials"`
	MeshDialsFailed   int64 `json:"mesh_dials_failed"`
	MeshConnsUp       int64 `json:"mesh_conns_up"`
	MeshConnsDown     int64 `json:"mesh_conns_down"`
	MeshParentsSilent int64 `json:"mesh_parents_silent"`
	MeshEvicted       int64 `json:"mesh_evicted"`
	MeshLoopLags      int64 `json:"mesh_loop_lags"`
	MeshRequests      int64 `json:"mesh_requests"`
	MeshPushesDropped int64 `json:"mesh_pushes_dropped"`
	// REQUESTs the peers refused because the asker had used its share of their repair budget.
	MeshRequestsOverShare int64 `json:"mesh_requests_over_share"`
	// The origin's mesh root: ticks it ran late (its loop starved), chunks it could not take
	// from the source, pushes it dropped, repair requests it answered and refused.
	RootLoopLags          int64 `json:"root_loop_lags"`
	RootPublishDropped    int64 `json:"root_publish_dropped"`
	RootPushesDropped     int64 `json:"root_pushes_dropped"`
	RootRequestsServed    int64 `json:"root_requests_served"`
	RootRequestsRefused   int64 `json:"root_requests_refused"`
	RootRequestsOverShare int64 `json:"root_requests_over_share"` // of those refused: over the asker's share
}

// SecondSample is one second of the run.
type SecondSample struct {
	T float64 `json:"t"` // seconds since the measured interval began
	// OriginEgressBps is the origin's egress in this second; OriginCopies divides it by the
	// stream produced in the same second.
	OriginEgressBps float64 `json:"origin_egress_bps"`
	OriginCopies    float64 `json:"origin_copies"`
	// Offload is the offload of the bytes peers received in this second (NaN-free: 0 when none).
	Offload float64 `json:"offload"`
	// Stalls are the stalls that began in this second; Stalled the players dry right now.
	Stalls  int `json:"stalls"`
	Stalled int `json:"stalled"`
	Peers   int `json:"peers"`
	Playing int `json:"playing"`
	// Unattached counts the live peers' (peer, stripe) pairs without a parent right now.
	Unattached int `json:"unattached"`
}

// DepthBin counts the (peer, stripe) pairs at one depth.
type DepthBin struct {
	Depth int `json:"depth"`
	Count int `json:"count"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("loadtest: writing report JSON: %w", err)
	}
	return nil
}

// WriteJSONFile writes the report to path.
func (r *Report) WriteJSONFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SecondHalf is the steady part of a run: from half the measured interval to its end.
type SecondHalf struct {
	FromS        float64 `json:"from_s"`
	OriginCopies float64 `json:"origin_copies"`
	Offload      float64 `json:"offload"`
	Stalls       int     `json:"stalls"`
	// Cores is the process's CPU use over the half: with the swarm formed, the cost of running
	// every peer, player and the source on this machine.
	Cores float64 `json:"cores"`
	// DeliveryLatencyMs covers the chunks emitted in the half; PulledShare is the share of them
	// that did not come down the stripe's push tree (repairs, CDN fetches), and
	// PulledDeliveryLatencyMs their latency.
	DeliveryLatencyMs       LatencyQuantiles `json:"delivery_latency_ms"`
	PulledShare             float64          `json:"pulled_share"`
	PulledDeliveryLatencyMs LatencyQuantiles `json:"pulled_delivery_latency_ms"`
}

// summaryRows is the table shared by the text summary and the HTML report.
func (r *Report) summaryRows() [][2]string {
	rows := [][2]string{
		{"mode", fmt.Sprintf("%s, %d peers, %s net, source %s, players %s", r.Mode, r.Peers, r.Parameters.Net, r.Parameters.Source, r.Parameters.Playlist)},
		{"duration", fmt.Sprintf("%.1f s", r.DurationS)},
		{"bitrate", fmt.Sprintf("%.2f Mbit/s", float64(r.BitrateBps)/1e6)},
		{"stream bytes", humanize.Bytes(r.StreamBytes)},
		{"origin egress", fmt.Sprintf("%s (QUIC %s, HTTP %s)", humanize.Bytes(r.OriginEgressBytes),
			humanize.Bytes(r.Detail.OriginQUICBytes), humanize.Bytes(r.Detail.OriginHTTPBytes))},
		{"origin copies", fmt.Sprintf("%.2f", r.OriginCopies)},
		{"offload", fmt.Sprintf("%.1f %%", 100*r.Offload)},
		{"fallback share", fmt.Sprintf("%.1f %% (%s while joining)", 100*r.FallbackShare, humanize.Bytes(r.Detail.BytesFromHTTPJoining))},
		{"second half", fmt.Sprintf("from %.0f s: origin copies %.2f, offload %.1f %%, %d stalls, delivery p50 %.0f / p95 %.0f / p99 %.0f ms (%.1f %% not pushed down the trees), %.2f cores",
			r.SecondHalf.FromS, r.SecondHalf.OriginCopies, 100*r.SecondHalf.Offload, r.SecondHalf.Stalls,
			r.SecondHalf.DeliveryLatencyMs.P50, r.SecondHalf.DeliveryLatencyMs.P95, r.SecondHalf.DeliveryLatencyMs.P99,
			100*r.SecondHalf.PulledShare, r.SecondHalf.Cores)},
		{"delivery latency", fmt.Sprintf("p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms (%d samples)",
			r.DeliveryLatencyMs.P50, r.DeliveryLatencyMs.P95, r.DeliveryLatencyMs.P99, r.DeliveryLatencyMs.Max, r.DeliveryLatencyMs.Samples)},
		{"startup", fmt.Sprintf("p50 %.0f ms, p95 %.0f ms, max %.0f ms (%d of %d players started)",
			r.StartupMs.P50, r.StartupMs.P95, r.StartupMs.Max, r.StartupMs.Samples, r.Detail.PeersJoined)},
		{"stalls", fmt.Sprintf("%d, stall ratio %.3f %%", r.Stalls, 100*r.StallRatio)},
		{"live latency", fmt.Sprintf("p50 %.2f s, p95 %.2f s", r.LiveLatencyMs.P50/1000, r.LiveLatencyMs.P95/1000)},
		{"segments", fmt.Sprintf("%d played, %d missing", r.SegmentsPlayed, r.SegmentsMissing)},
		{"corrupt bytes", fmt.Sprintf("%d (%d chunks rejected, %d player parse errors)", r.CorruptBytes, r.Detail.ChunksRejected, r.Detail.PlayerParseErrors)},
		{"cpu", fmt.Sprintf("%.1f s (%.2f cores), max RSS %s; GC %d cycles, %.1f s of the CPU by the runtime's estimate (%.1f s of it on otherwise idle processors)", r.CPUSeconds, r.CPUSeconds/max(r.DurationS, 1e-9), humanize.Bytes(r.MaxRSSBytes), r.GCCycles, r.GCCPUSeconds, r.GCIdleCPUSeconds)},
		{"machine", fmt.Sprintf("%s, %d cores, %s, %s", r.Machine.CPUModel, r.Machine.Cores, r.Machine.GoVersion, r.Machine.gcSettings())},
	}
	if r.Floor != nil {
		rows = append(rows, [2]string{"floor", fmt.Sprintf("%.3f cores for a bare quic-go relay tree of %d nodes (fanout %d, depth %d, %d B chunks, loopback UDP, %.0f %% delivered); the mesh's second half is %.1f x that; max RSS %s per peer",
			r.Floor.Cores, r.Floor.Peers, r.Floor.Fanout, r.Floor.Depth, r.Floor.ChunkSize, 100*r.Floor.Delivered, r.FloorRatio,
			humanize.Bytes(r.MaxRSSBytes/int64(max(r.Peers, 1))))})
	}
	rows = append(rows, r.NAT.rows()...)
	return append(rows, r.Lab.rows()...)
}

// WriteSummary writes the human summary table.
func (r *Report) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range r.summaryRows() {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
	return tw.Flush()
}
