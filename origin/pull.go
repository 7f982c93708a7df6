package origin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/crowdsurf/crowdsurf/internal/backoff"
)

// puller pulls one stream from an RTSP URL (an IP camera or another server) and reconnects with
// exponential backoff when the source fails or ends. Each connection is a new publishing
// session, so a reconnect continues the stream after a discontinuity.
type puller struct {
	o    *Origin
	name string
	url  string
}

func (p *puller) run(ctx context.Context) {
	log := p.o.log.With("stream", p.name, "pull", p.url)
	retry := backoff.New(p.o.cfg.PullBackoffMin, p.o.cfg.PullBackoffMax)
	for {
		started := time.Now()
		err := p.pullOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		// A session that ran for a while was healthy: start the backoff over.
		if time.Since(started) > 10*time.Second {
			retry.Reset()
		}
		wait := retry.Next()
		log.Warn("pull failed; retrying", "error", err, "attempt", retry.Attempts(), "retry_in", wait.Round(time.Millisecond))
		if backoff.Wait(ctx, wait) != nil {
			return
		}
	}
}

func (p *puller) pullOnce(ctx context.Context) error {
	u, err := base.ParseURL(p.url)
	if err != nil {
		return fmt.Errorf("pull URL: %w", err)
	}
	log := p.o.log.With("stream", p.name)
	c := &gortsplib.Client{
		Scheme: u.Scheme,
		Host:   u.Host,
		OnTransportSwitch: func(err error) {
			log.Info("pull: switching transport", "reason", err)
		},
		OnPacketsLost: func(lost uint64) {
			p.o.metrics.packetsLost.Add(float64(lost))
		},
		OnDecodeError: func(err error) {
			p.o.metrics.mediaErrors.Inc()
			log.Debug("pull: RTP decode error", "error", err)
		},
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()

	desc, _, err := c.Describe(u)
	if err != nil {
		return fmt.Errorf("describe: %w", err)
	}
	plan, err := planIngest(desc.Medias, false)
	if err != nil {
		return err
	}
	if len(plan.ignored) > 0 {
		log.Warn("pull: leaving out unsupported media", "codecs", plan.ignored)
	}
	for _, medi := range plan.medias() {
		if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}

	st, err := p.o.claimStream(p.name, p, false)
	if err != nil {
		return err
	}
	// The puller reconnects: the stream ends only when the origin stops pulling for good.
	defer func() { st.releaseSession(p, ctx.Err() != nil) }()
	if err := st.start(p, plan); err != nil {
		return err
	}
	if err := plan.attach(c, st, p, func(error) { go c.Close() }); err != nil {
		return err
	}
	if _, err := c.Play(nil); err != nil {
		return fmt.Errorf("play: %w", err)
	}
	err = c.Wait()
	if err == nil {
		err = errors.New("source ended")
	}
	return fmt.Errorf("session: %w", err)
}
