package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/crowdsurf/crowdsurf/proto"
)

// ErrPunchFailed means a punched connection did not come up in time: one of the NATs maps per
// destination, filters harder than we model, or the other side never punched. The caller tries
// its next candidate; the CDN fallback covers the gap.
var ErrPunchFailed = errors.New("hole punch failed")

// PunchConfig tunes Punch and PunchAndDial.
type PunchConfig struct {
	// Packets is how many PUNCH datagrams each side sends (default 5): the first ones may die
	// in the other side's NAT before it has punched itself.
	Packets int
	// Interval separates them (default 50ms), so together they cover a quarter of a second of
	// clock skew and path delay between the two sides.
	Interval time.Duration
	// DialTimeout bounds the dialling side's handshake, counted from the punch moment
	// (default 2s). A failed punch must cost no more than that.
	DialTimeout time.Duration
}

func (c PunchConfig) withDefaults() PunchConfig {
	if c.Packets == 0 {
		c.Packets = 5
	}
	if c.Interval == 0 {
		c.Interval = 50 * time.Millisecond
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 2 * time.Second
	}
	return c
}

// PunchPlan is one punch between two peers, as the tracker hands it to both.
type PunchPlan struct {
	// Target is the other peer's reflexive address.
	Target netip.AddrPort
	// At is when both sides start sending, so their first packets cross.
	At time.Time
	// ID names the attempt in every PUNCH datagram.
	ID proto.TxID
}

// Punch opens tr's NAT towards plan.Target: from plan.At it sends cfg.Packets PUNCH datagrams,
// cfg.Interval apart, from the mesh socket itself. The side that does not dial calls it and
// then waits for the other side's connection on its listener. Received punches need no
// handling: quic-go drops non-QUIC datagrams nobody reads, and DiscoverReflexive skips them.
func Punch(ctx context.Context, tr *quic.Transport, plan PunchPlan, cfg PunchConfig) error {
	cfg = cfg.withDefaults()
	if !plan.Target.IsValid() {
		return fmt.Errorf("%w: no target address", ErrPunchFailed)
	}
	to := net.UDPAddrFromAddrPort(plan.Target)
	msg := (&proto.Punch{ID: plan.ID}).Append(nil)
	timer := time.NewTimer(time.Until(plan.At))
	defer timer.Stop()
	for i := range cfg.Packets {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		if _, err := tr.WriteTo(msg, to); err != nil {
			return fmt.Errorf("punch %s: %w", plan.Target, err)
		}
		if i < cfg.Packets-1 {
			timer.Reset(cfg.Interval)
		}
	}
	return nil
}

// PunchAndDial is the dialling side of a punch: it punches as Punch does and, once its first
// punch has left, dials plan.Target on the same Transport. quic-go retransmits the Initial if
// the first one arrived before the other side's punch opened its NAT. It returns
// ErrPunchFailed (wrapping the dial error) if the handshake has not completed cfg.DialTimeout
// after plan.At.
func PunchAndDial(ctx context.Context, tr *quic.Transport, plan PunchPlan, tlsConf *tls.Config, quicConf *quic.Config, cfg PunchConfig) (*quic.Conn, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithDeadline(ctx, plan.At.Add(cfg.DialTimeout))
	defer cancel()
	if err := Punch(ctx, tr, plan, PunchConfig{Packets: 1}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPunchFailed, err)
	}
	// The remaining punches keep going while the handshake runs; they stop when it ends.
	rest := make(chan struct{})
	go func() {
		defer close(rest)
		if cfg.Packets > 1 {
			more := plan
			more.At = plan.At.Add(cfg.Interval)
			_ = Punch(ctx, tr, more, PunchConfig{Packets: cfg.Packets - 1, Interval: cfg.Interval})
		}
	}()
	defer func() { cancel(); <-rest }()
	conn, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(plan.Target), tlsConf, quicConf)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrPunchFailed, plan.Target, err)
	}
	return conn, nil
}
