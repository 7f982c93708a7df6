package peer

import (
	"context"
	"errors"
	"time"
)

// defaultReflexiveInterval is how often a node asks the observers again. It stays under the
// 30 s that the shortest-lived home-router mappings last, so the mapping towards the tracker's
// observer is never forgotten: that is the path a "punch now" will take, and a change of the
// reflexive address (a router reboot, a new carrier mapping) is seen within one interval.
const defaultReflexiveInterval = 20 * time.Second

// reachabilityLoop keeps n.reflexive fresh: it asks the observers at once and then every
// ReflexiveInterval, on the mesh Transport, until ctx ends.
func (n *Node) reachabilityLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		res, err := DiscoverReflexive(ctx, n.tr, ReflexiveConfig{Observers: n.cfg.Observers})
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, ErrNoBindingResponse) {
			n.log.Warn("reflexive address", "err", err)
		}
		prev := n.reflexive.Swap(&res)
		if prev == nil || prev.Kind != res.Kind {
			n.metrics.natKind.Reset()
			n.metrics.natKind.WithLabelValues(res.Kind.String()).Set(1)
		}
		if prev == nil || prev.Addr != res.Addr || prev.Kind != res.Kind {
			n.log.Info("reachability", "reflexive", res.Addr, "nat", res.Kind, "err", err)
		}
		timer.Reset(n.cfg.ReflexiveInterval)
	}
}
