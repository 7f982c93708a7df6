package peer

import (
	"context"
	"errors"
	"time"
)

// defaultReflexiveInterval is how often a node asks the observers again. It stays well under
// the 30 s that the shortest-lived home-router mappings last (two chances before one expires), so the mapping towards the tracker's
// observer is never forgotten: that is the path a "punch now" will take, and a change of the
// reflexive address (a router reboot, a new carrier mapping) is seen within one interval.
const defaultReflexiveInterval = 15 * time.Second

// reachabilityLoop keeps n.reflexive fresh: once the observers are known (Config.Observers or
// the tracker's answer) it asks them at once and then every ReflexiveInterval, on the mesh
// Transport, until ctx ends. A new reflexive address or kind is announced at once.
func (n *Node) reachabilityLoop(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-n.nat.observersKnown:
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		res, err := discover(ctx, n.tr, ReflexiveConfig{Observers: *n.nat.observers.Load()}, n.nat.responses)
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
			select {
			case n.nat.announceNow <- struct{}{}:
			default:
			}
		}
		timer.Reset(n.cfg.ReflexiveInterval)
	}
}
