package player

import "time"

// Summary is the quality of experience of one player, as defined in DESIGN.md "Measures".
// The loadtest aggregates many of them, so the JSON names are part of the API.
type Summary struct {
	URL string `json:"url"`
	// Mode is how the stream was played: ModeHLS (whole segments) or ModeLowLatency (parts,
	// blocking reloads); empty when no playlist was ever loaded.
	Mode string `json:"mode"`
	// Started is false when no segment was ever received; StartupMs is then 0.
	Started bool `json:"started"`
	// StartupMs runs from the first playlist request to the first segment fully received.
	StartupMs float64 `json:"startup_ms"`
	// Stalls counts the times the buffer ran dry; StallMs is the time spent dry, a stall still
	// under way included.
	Stalls     int     `json:"stalls"`
	StallMs    float64 `json:"stall_ms"`
	MaxStallMs float64 `json:"max_stall_ms"` // the longest single stall
	// WatchedMs is wall time since playback started, stalls included; StallRatio is
	// StallMs / WatchedMs.
	WatchedMs  float64 `json:"watched_ms"`
	StallRatio float64 `json:"stall_ratio"`
	// LiveLatencyMs is wall clock minus EXT-X-PROGRAM-DATE-TIME of the media being played,
	// sampled every 250 ms of playback.
	LiveLatencyMs LatencySummary `json:"live_latency_ms"`
	// Segments counts the segments played (in low-latency mode, whole or in parts); Parts the
	// parts received, PreloadedParts those of them requested ahead from EXT-X-PRELOAD-HINT;
	// Bytes every byte of media received, init segments included.
	Segments       int   `json:"segments"`
	Parts          int   `json:"parts"`
	PreloadedParts int   `json:"preloaded_parts"`
	Bytes          int64 `json:"bytes"`
	// Discontinuities counts EXT-X-DISCONTINUITY tags crossed during playback (not errors).
	Discontinuities int `json:"discontinuities"`
	PlaylistLoads   int `json:"playlist_loads"`
	// Errors counts every error; the next fields split it by kind and ErrorMessages keeps the
	// first few messages.
	Errors          int      `json:"errors"`
	SequenceErrors  int      `json:"sequence_errors"`
	TimestampErrors int      `json:"timestamp_errors"`
	ParseErrors     int      `json:"parse_errors"`
	FetchErrors     int      `json:"fetch_errors"`
	ErrorMessages   []string `json:"error_messages"`
}

// The modes of Summary.Mode.
const (
	ModeHLS        = "hls"
	ModeLowLatency = "ll-hls"
)

// LatencySummary holds live latency quantiles in milliseconds.
type LatencySummary struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	Samples int     `json:"samples"`
}

// Status is a snapshot for a live display.
type Status struct {
	Time time.Time
	// State is "starting", "playing", "stalled" or "ended".
	State      string
	BufferMs   float64
	LatencyMs  float64 // 0 with HasLatency false when the media has no date-time
	HasLatency bool
	Stalls     int
	StallMs    float64
	Segments   int
	Parts      int
	Bytes      int64
	Errors     int
}

// maxErrorMessages caps the messages a Summary keeps; the counts are never capped.
const maxErrorMessages = 20

func ms(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
