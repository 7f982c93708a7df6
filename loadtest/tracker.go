package loadtest

import (
	"context"
	"fmt"
	"net"
	"time"

	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker"
	"github.com/crowdsurf/crowdsurf/tracker/registrar"
)

// startTracker runs an in-process tracker (with its embedded NATS) on loopback HTTP and
// registers the stream in it, renewing the registration while the test runs. The tracker is the
// control plane only: with --net sim the peers still reach it over real loopback HTTP, and the
// addresses it hands out are simulated ones.
func (lt *LoadTest) startTracker(ctx context.Context, runInfra func(string, func(context.Context) error)) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("loadtest: tracker listener: %w", err)
	}
	var observers []net.PacketConn
	if sim, ok := lt.mesh.(*simNet); ok && len(lt.cfg.NAT) > 0 {
		if observers, err = sim.observerConns(); err != nil {
			_ = ln.Close()
			return "", err
		}
	}
	tr, err := tracker.New(tracker.Config{
		ObserverConns: observers,
		HTTPListener:  ln,
		Logger:        lt.cfg.Logger,
		// A whole swarm announces from 127.0.0.1: no per-address limit, and the QUIC
		// addresses peers announce are on the simulated network, not the HTTP source's host.
		// Each simulated peer has its own address, so the per-host bounds still hold.
		RateLimit:        rate.Inf,
		RateBurst:        1,
		AllowForeignAddr: true,
	})
	if err != nil {
		_ = ln.Close()
		return "", fmt.Errorf("loadtest: tracker: %w", err)
	}
	runInfra("tracker", tr.Run)
	select {
	case <-tr.Ready():
	case <-time.After(15 * time.Second):
		return "", fmt.Errorf("loadtest: the tracker did not become ready within 15s")
	}
	reg := proto.StreamRegistration{
		Name:              streamName,
		QUICAddr:          lt.rootAddr,
		HTTPURL:           lt.src.HTTPURL(),
		Stripes:           lt.cfg.Stripes,
		SegmentDurationMs: lt.cfg.Segment.Milliseconds(),
		BitrateBps:        lt.cfg.BitrateBps,
	}
	registrations, err := registrar.New(registrar.Config{NATSURL: tr.NATSURL(), Key: lt.key})
	if err != nil {
		return "", fmt.Errorf("loadtest: %w", err)
	}
	register := func(ctx context.Context) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return registrations.Register(rctx, reg)
	}
	if err := register(ctx); err != nil {
		registrations.Close()
		return "", fmt.Errorf("loadtest: registering the stream: %w", err)
	}
	runInfra("stream registration", func(ctx context.Context) error {
		defer registrations.Close()
		t := time.NewTicker(proto.TrackerStreamTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if err := register(ctx); err != nil && ctx.Err() == nil {
					lt.cfg.Logger.Warn("renewing the stream registration failed", "error", err)
				}
			}
		}
	})
	return tr.URL(), nil
}
