package loadtest

import (
	"time"

	"github.com/crowdsurf/crowdsurf/peer"
)

// What one in-process viewer holds live, measured with `crowdsurf loadtest --memprofile` (100
// peers, loopback UDP, 1 Mbit/s, 2 s segments; docs/measurements.md): its window of chunks (the
// newest peer.Config.Keep segments, each chunk one buffer of its frame) and about this much
// besides: QUIC connections and the listener's packet queue, its neighbours' goroutine stacks
// and queues, the player and HTTP buffers.
const (
	viewerFixedBytes = 3 << 19 // 1.5 MiB
	// infraBytes is the origin, its window and CDN endpoint, the tracker with its embedded
	// NATS, the source and the runtime's own: the part of the process that is not per viewer.
	infraBytes = 48 << 20
	// memoryHeadroom is the limit over the estimated live memory: the collector runs when the
	// heap grows by this share of it, so its cycles stay seconds apart at a load test's
	// allocation rate (about 30 MB/s for 100 peers) and its CPU small.
	memoryHeadroom = 1.6
)

// MemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit) `crowdsurf loadtest` sets
// unless GOMEMLIMIT is given: headroom over what cfg's viewers hold live (their windows scale
// with the bit rate and the segment duration), so that the collector runs at GOGC=400 while
// memory is plentiful and more often only as the process nears what its peers need. Without a
// limit, GOGC=400 let the process grow to five times its live heap: about 13 MiB per in-process
// peer for 2.7 MiB of live memory. A limit is a target, not a cap: live memory above it makes
// the collector run continuously (the runtime bounds that at half the CPU), so the estimate errs
// high rather than low.
func MemoryLimit(cfg Config) int64 {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return 0
	}
	window := int64(peer.DefaultKeep) * cfg.BitrateBps / 8 * int64(cfg.Segment) / int64(time.Second)
	if cfg.LL {
		// LL players make every peer derive fMP4 parts, which stay with their segments in
		// the window: about the media bytes once more.
		window *= 2
	}
	perViewer := float64(window+viewerFixedBytes) * memoryHeadroom
	return infraBytes + int64(perViewer*float64(cfg.Peers))
}
