package testcard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"

	"github.com/crowdsurf/crowdsurf/internal/backoff"
)

// ErrBadConfig means the Publisher's Config cannot work (bad URL or transport).
var ErrBadConfig = errors.New("testcard: bad publisher config")

// Transports accepted in Config.Transport.
const (
	TransportTCP = "tcp"
	TransportUDP = "udp"
)

// Config configures a Publisher.
type Config struct {
	// URL is where to publish, rtsp://host:port/name.
	URL string
	// Transport is TransportTCP (default) or TransportUDP.
	Transport string
	// User and Pass are the publish credentials (the origin's publish key);
	// they override any user info in URL.
	User, Pass string
	// Clip is what to publish; nil means the embedded test card (Load).
	Clip *Clip
	// RetryMin and RetryMax bound the reconnect backoff, which doubles after
	// each failed attempt (with jitter, see internal/backoff) and starts over
	// once a session records.
	// Defaults 250 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// MaxLag is how far the publisher may fall behind the wall clock (a
	// stalled machine) before it stops catching up in a burst and moves its
	// schedule forward instead. Default 1 s.
	MaxLag time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Transport == "" {
		c.Transport = TransportTCP
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 250 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.MaxLag <= 0 {
		c.MaxLag = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Publisher publishes a Clip over RTSP (ANNOUNCE/RECORD) in real time,
// looping forever, and reconnects when the server goes away.
type Publisher struct {
	cfg      Config
	clip     *Clip
	order    []sendItem
	url      string // with credentials; never logged
	protocol gortsplib.Protocol
	log      *slog.Logger
}

// New checks cfg and prepares a Publisher; it does not connect.
func New(cfg Config) (*Publisher, error) {
	cfg = cfg.withDefaults()

	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL: %w", ErrBadConfig, err)
	}
	if u.Scheme != "rtsp" || u.Host == "" {
		return nil, fmt.Errorf("%w: URL %q: want rtsp://host:port/name", ErrBadConfig, cfg.URL)
	}
	if cfg.User != "" || cfg.Pass != "" {
		u.User = url.UserPassword(cfg.User, cfg.Pass)
	}
	stream := strings.Trim(u.Path, "/")

	var protocol gortsplib.Protocol
	switch cfg.Transport {
	case TransportTCP:
		protocol = gortsplib.ProtocolTCP
	case TransportUDP:
		protocol = gortsplib.ProtocolUDP
	default:
		return nil, fmt.Errorf("%w: transport %q: want %q or %q", ErrBadConfig, cfg.Transport, TransportTCP, TransportUDP)
	}

	clip := cfg.Clip
	if clip == nil {
		clip, err = Load()
		if err != nil {
			return nil, err
		}
	}

	return &Publisher{
		cfg:      cfg,
		clip:     clip,
		order:    sendOrder(clip),
		url:      u.String(),
		protocol: protocol,
		log:      cfg.Logger.With("component", "testcard", "stream", stream),
	}, nil
}

// Clip returns the clip being published.
func (p *Publisher) Clip() *Clip { return p.clip }

// Run publishes until ctx ends, reconnecting with backoff. It returns nil
// once ctx has ended and the RTSP client has closed.
func (p *Publisher) Run(ctx context.Context) error {
	retry := backoff.New(p.cfg.RetryMin, p.cfg.RetryMax)
	for {
		recorded, err := p.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if recorded {
			retry.Reset()
		}
		wait := retry.Next()
		p.log.Warn("publishing stopped, reconnecting", "error", err, "attempt", retry.Attempts(), "retry_in", wait.Round(time.Millisecond))
		if backoff.Wait(ctx, wait) != nil {
			return nil
		}
	}
}

// session runs one RTSP publishing session until it fails or ctx ends. It
// reports whether RECORD succeeded, which resets the backoff.
func (p *Publisher) session(ctx context.Context) (recorded bool, err error) {
	u, err := base.ParseURL(p.url)
	if err != nil {
		return false, fmt.Errorf("parse URL: %w", err)
	}

	videoFormat := &format.H264{
		PayloadTyp:        96,
		SPS:               p.clip.SPS,
		PPS:               p.clip.PPS,
		PacketizationMode: 1,
	}
	audioFormat := &format.MPEG4Audio{
		PayloadTyp:       97,
		Config:           p.clip.AudioConfig,
		SizeLength:       13,
		IndexLength:      3,
		IndexDeltaLength: 3,
	}
	videoMedia := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{videoFormat}}
	audioMedia := &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{audioFormat}}
	desc := &description.Session{Medias: []*description.Media{videoMedia, audioMedia}}

	videoEnc, err := videoFormat.CreateEncoder()
	if err != nil {
		return false, fmt.Errorf("H.264 RTP encoder: %w", err)
	}
	audioEnc, err := audioFormat.CreateEncoder()
	if err != nil {
		return false, fmt.Errorf("AAC RTP encoder: %w", err)
	}

	protocol := p.protocol
	c := &gortsplib.Client{
		Scheme:   u.Scheme,
		Host:     u.Host,
		Protocol: &protocol,
		// gortsplib logs these with the standard logger by default.
		OnTransportSwitch: func(err error) { p.log.Info("transport switch", "error", err) },
		OnPacketsLost:     func(n uint64) { p.log.Debug("packets lost", "count", n) },
		OnDecodeError:     func(err error) { p.log.Debug("decode error", "error", err) },
	}
	if err := c.Start(); err != nil {
		return false, fmt.Errorf("start RTSP client: %w", err)
	}
	defer c.Close()
	// Close unblocks any request in flight when ctx ends.
	stopOnCancel := context.AfterFunc(ctx, c.Close)
	defer stopOnCancel()

	if _, err := c.Announce(u, desc); err != nil {
		return false, fmt.Errorf("ANNOUNCE: %w", err)
	}
	if err := c.SetupAll(u, desc.Medias); err != nil {
		return false, fmt.Errorf("SETUP: %w", err)
	}
	if _, err := c.Record(); err != nil {
		return false, fmt.Errorf("RECORD: %w", err)
	}
	p.log.Info("publishing test card", "duration", p.clip.Duration, "bitrate", p.clip.Bitrate, "transport", p.cfg.Transport)

	clientDone := make(chan error, 1)
	go func() { clientDone <- c.Wait() }()

	tl := &timeline{
		clipTicks:    p.clip.DurationTicks,
		audioClock:   int64(p.clip.AudioConfig.SampleRate),
		videoRTPBase: rand.Uint32(),
		audioRTPBase: rand.Uint32(),
		wallStart:    time.Now(),
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	for loop := 0; ; loop++ {
		for _, it := range p.order {
			due := tl.sendTime(loop, it.at)
			wait := time.Until(due)
			if wait < -p.cfg.MaxLag {
				// Sending everything we missed at once would overflow the
				// write queue; resume real time from here instead.
				tl.wallStart = tl.wallStart.Add(-wait)
				p.log.Warn("publisher fell behind, skipping ahead", "lag", -wait)
			}
			if wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return true, ctx.Err()
				case err := <-clientDone:
					return true, fmt.Errorf("RTSP client: %w", err)
				case <-timer.C:
				}
			}

			if it.video != nil {
				err = p.writeVideo(c, videoMedia, videoEnc.Encode, it.video, tl.videoRTP(loop, it.video.PTS))
			} else {
				err = p.writeAudio(c, audioMedia, audioEnc.Encode, it.audio, tl.audioRTP(loop, it.audio.PTS))
			}
			if err != nil {
				return true, err
			}
		}
	}
}

func (p *Publisher) writeVideo(c *gortsplib.Client, m *description.Media,
	encode func([][]byte) ([]*rtp.Packet, error), au *VideoAU, ts uint32,
) error {
	pkts, err := encode(au.NALUs)
	if err != nil {
		return fmt.Errorf("H.264 to RTP: %w", err)
	}
	return p.writePackets(c, m, pkts, ts)
}

func (p *Publisher) writeAudio(c *gortsplib.Client, m *description.Media,
	encode func([][]byte) ([]*rtp.Packet, error), au *AudioAU, ts uint32,
) error {
	pkts, err := encode([][]byte{au.AU})
	if err != nil {
		return fmt.Errorf("AAC to RTP: %w", err)
	}
	return p.writePackets(c, m, pkts, ts)
}

func (p *Publisher) writePackets(c *gortsplib.Client, m *description.Media, pkts []*rtp.Packet, ts uint32) error {
	for _, pkt := range pkts {
		pkt.Timestamp = ts
		err := c.WritePacketRTP(m, pkt)
		if errors.As(err, &liberrors.ErrClientWriteQueueFull{}) {
			// A slow server: drop rather than end the session; the
			// receiver sees a loss, as it would over UDP.
			p.log.Debug("RTP write queue full, packet dropped")
			continue
		}
		if err != nil {
			return fmt.Errorf("write RTP: %w", err)
		}
	}
	return nil
}
