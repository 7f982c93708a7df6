// Package loadtest runs a whole crowdsurf broadcast on one machine: a live source (synthetic or
// the test card) fed in-process into the real origin, which seeds the mesh from its root,
// registers the stream at an in-process tracker and serves its CDN endpoint, and N viewers, each a peer node with a headless player on its local HLS URL, over real
// loopback UDP or a simulated network. It measures what DESIGN.md "Measures" defines (offload,
// origin copies, delivery latency, startup, stalls, live latency) and writes a report: a table,
// JSON, and a self-contained HTML page with charts.
package loadtest

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/crowdsurf/crowdsurf/internal/memnet"
	"github.com/crowdsurf/crowdsurf/internal/simnet"
	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/peer"
	"github.com/crowdsurf/crowdsurf/player"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// Modes and networks.
const (
	ModeP2P = "p2p" // viewers are mesh peers; the origin seeds a few copies
	ModeCDN = "cdn" // every player reads the origin's HTTP endpoint (the baseline)

	NetUDP = "udp" // real loopback UDP sockets
	NetSim = "sim" // internal/simnet: capped uplinks, latency, loss

	SourceSynthetic = "synthetic"
	SourceTestcard  = "testcard"
)

// ErrConfig means a Config field is out of range; the message says which and what to use.
var ErrConfig = errors.New("loadtest: bad config")

// Config configures a load test. Zero fields take the defaults of `crowdsurf loadtest`.
type Config struct {
	Peers      int           // viewers (default 20)
	Duration   time.Duration // measured interval (default 60s)
	BitrateBps int64         // stream bit rate (default 1 Mbit/s)
	Segment    time.Duration // segment duration (default 2s)
	SeedCopies int           // the origin's children per stripe (default 2)
	Stripes    int           // stripes of the mesh (default 4)
	Net        string        // NetSim (default) or NetUDP
	Latency    time.Duration // one-way latency of every mesh link (sim; default 20ms)
	LossPct    float64       // packet loss per mesh link in percent (sim; default 0)
	Uplink     UplinkDist    // peers' uplinks (default 3 Mbit/s each)
	// NAT puts viewers behind home routers (sim only): the kinds in this mix, in joining
	// order; the tracker then runs its observer and coordinates punches. Empty: all public.
	NAT  simnet.NATMix
	Join time.Duration // joins spread uniformly over this (default 0: all at once)
	// StartNeighbourWait is the viewers' peer.Config.StartNeighbourWait: how long a joiner
	// leaves its start segments to the neighbours that hold them before the CDN (default 0:
	// the CDN after 300 ms).
	StartNeighbourWait time.Duration
	// ChunkDuration is the origin's origin.Config.ChunkDuration: chunks sized to about this
	// much of the stream (default 0: the origin's default; negative: all of origin.DefaultChunkSize).
	ChunkDuration time.Duration
	ChurnPct      float64 // percent of peers leaving per minute, each replaced (default 0)
	Mode          string  // ModeP2P (default) or ModeCDN
	Source        string  // SourceSynthetic (default) or SourceTestcard
	// LL makes the players play ll.m3u8 (LL-HLS: fMP4 parts, blocking reloads, preload hints)
	// instead of index.m3u8, from their peer or, in cdn mode, from the origin.
	LL bool
	// MediaCheck makes players parse every segment as MPEG-TS (with LL, every part as fMP4) and
	// check its timestamps (default on up to 50 peers; it costs CPU that big runs need for the
	// mesh). Set MediaCheckSet to force the given value.
	MediaCheck    bool
	MediaCheckSet bool
	// Warmup is how long the source runs before the first viewer joins, so that players join a
	// playlist long enough to start three target durations behind the live edge, as real ones
	// do (default: four segments).
	Warmup time.Duration

	// Floor, after the run, relays the same bitrate through a bare quic-go tree of the same
	// number of nodes on loopback UDP (RunFloor) and reports the mesh's CPU as a multiple of it.
	Floor bool

	// AtEnd runs once at the end of the measured interval, before the viewers leave: the
	// swarm as it is at its steadiest (a heap profile, memory statistics); nil = nothing.
	AtEnd func()
	// OnProgress gets a status line about once a second; nil = none.
	OnProgress func(line string)
	// Logger gets the components' logs; nil discards.
	Logger *slog.Logger

	// inMemory, set only by the scale lab (lab.go), carries every HTTP server and client of
	// the run and the tracker's NATS without a socket; nil = loopback TCP.
	inMemory *memnet.Network
}

func (c Config) withDefaults() (Config, error) {
	if c.Peers == 0 {
		c.Peers = 20
	}
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	if c.BitrateBps == 0 {
		c.BitrateBps = 1_000_000
	}
	if c.Segment == 0 {
		c.Segment = 2 * time.Second
	}
	if c.SeedCopies == 0 {
		c.SeedCopies = peer.DefaultSeedCopies
	}
	if c.Stripes == 0 {
		c.Stripes = proto.DefaultStripes
	}
	if c.Net == "" {
		c.Net = NetSim
	}
	if c.Latency == 0 && c.Net == NetSim {
		c.Latency = 20 * time.Millisecond
	}
	if len(c.Uplink) == 0 {
		c.Uplink = UplinkDist{{Share: 1, Bps: 3_000_000}}
	}
	if c.Mode == "" {
		c.Mode = ModeP2P
	}
	if c.Source == "" {
		c.Source = SourceSynthetic
	}
	if !c.MediaCheckSet {
		c.MediaCheck = c.Peers <= 50
	}
	if c.Warmup == 0 {
		c.Warmup = 4 * c.Segment
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Peers < 1 || c.Peers > 5000:
		return c, fmt.Errorf("%w: --peers %d must be 1 to 5000", ErrConfig, c.Peers)
	case c.Duration < time.Second:
		return c, fmt.Errorf("%w: --duration %v must be at least 1s", ErrConfig, c.Duration)
	case c.BitrateBps < 10_000:
		return c, fmt.Errorf("%w: --bitrate %d bit/s must be at least 10kbit", ErrConfig, c.BitrateBps)
	case c.Segment < 100*time.Millisecond:
		return c, fmt.Errorf("%w: --segment %v must be at least 100ms", ErrConfig, c.Segment)
	case c.SeedCopies < 1:
		return c, fmt.Errorf("%w: --seed-copies %d must be at least 1", ErrConfig, c.SeedCopies)
	case c.Net != NetSim && c.Net != NetUDP:
		return c, fmt.Errorf("%w: --net %q: use sim or udp", ErrConfig, c.Net)
	case c.Mode != ModeP2P && c.Mode != ModeCDN:
		return c, fmt.Errorf("%w: --mode %q: use p2p or cdn", ErrConfig, c.Mode)
	case c.Source != SourceSynthetic && c.Source != SourceTestcard:
		return c, fmt.Errorf("%w: --source %q: use synthetic or testcard", ErrConfig, c.Source)
	case c.Latency < 0 || c.Latency > 10*time.Second:
		return c, fmt.Errorf("%w: --latency %v must be 0 to 10s", ErrConfig, c.Latency)
	case c.LossPct < 0 || c.LossPct >= 100:
		return c, fmt.Errorf("%w: --loss %g must be a percentage from 0 up to (not including) 100", ErrConfig, c.LossPct)
	case len(c.NAT) > 0 && c.Net != NetSim:
		return c, fmt.Errorf("%w: --nat needs --net sim (loopback UDP has no NAT)", ErrConfig)
	case c.StartNeighbourWait < 0 || c.StartNeighbourWait > time.Minute:
		return c, fmt.Errorf("%w: --start-neighbour-wait %v must be 0 to 1m", ErrConfig, c.StartNeighbourWait)
	case c.Join < 0:
		return c, fmt.Errorf("%w: --join %v must not be negative", ErrConfig, c.Join)
	case c.ChurnPct < 0 || c.ChurnPct > 1000:
		return c, fmt.Errorf("%w: --churn %g must be 0 to 1000 percent per minute", ErrConfig, c.ChurnPct)
	}
	return c, nil
}

// chunkSize is the data size of the origin's chunks at the run's bit rate, once it measured it.
func (c Config) chunkSize() int {
	d := c.ChunkDuration
	if d == 0 {
		d = origin.DefaultChunkDuration
	}
	return origin.ChunkSizeFor(float64(c.BitrateBps)/8, d, origin.DefaultChunkSize)
}

func (c Config) parameters() Parameters {
	return Parameters{
		Peers: c.Peers, Duration: c.Duration.String(), Bitrate: FormatRate(c.BitrateBps), Segment: c.Segment.String(),
		SeedCopies: c.SeedCopies, Net: c.Net, Latency: c.Latency.String(), LossPct: c.LossPct, Uplink: c.Uplink.String(),
		Join: c.Join.String(), StartNeighbourWait: c.StartNeighbourWait.String(), ChunkSize: c.chunkSize(), ChurnPct: c.ChurnPct, Mode: c.Mode, Source: c.Source, Stripes: c.Stripes, MediaCheck: c.MediaCheck,
		NAT: c.NAT.String(), Playlist: c.playlistMode(),
	}
}

// playlistMode is how the players play: player.ModeLowLatency (ll.m3u8) or player.ModeHLS.
func (c Config) playlistMode() string {
	if c.LL {
		return player.ModeLowLatency
	}
	return player.ModeHLS
}

// playlistPath is the playlist the players play.
func (c Config) playlistPath(stream string) string {
	if c.LL {
		return segwindow.LLPlaylistPath(stream)
	}
	return segwindow.PlaylistPath(stream)
}
