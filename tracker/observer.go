package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/runonce"
	"github.com/crowdsurf/crowdsurf/proto"
)

// The observer tells peers their server-reflexive address: it answers each BINDING_REQUEST
// with the source address the request arrived from. It runs on the tracker rather than on the
// origin's mesh socket because the tracker is the one that will coordinate punches (a peer's
// binding keepalives hold its NAT open towards the tracker, the path a "punch now" can take),
// because it needs two ports (a peer that sees the same mapped port from both has an
// endpoint-independent mapping, two different ones mean a symmetric NAT) and the origin has one
// busy QUIC socket, and because it keeps NAT traversal working for streams whose origin is
// elsewhere.

// ObserverConfig configures an Observer.
type ObserverConfig struct {
	// Conns are the UDP sockets to answer on, each on its own port. Give two (for example
	// :3478 and :3479) so peers can tell a cone NAT from a symmetric one. The caller owns
	// them: Run does not close them, but it does set their read deadline to stop reading.
	Conns []net.PacketConn

	Logger   *slog.Logger
	Registry *prometheus.Registry // optional

	// RateLimit is the sustained number of requests per second per source IP (default 50);
	// rate.Inf turns the limit off. A peer sends two requests (one per port) every 20 s, so
	// this leaves room for 500 peers behind one carrier-grade NAT. An answer is never larger
	// than its request, so the limit protects the tracker's CPU, not third parties.
	RateLimit rate.Limit
	// RateBurst is the burst allowed per source IP (default 100).
	RateBurst int
	// MaxTrackedIPs bounds the rate limiter's memory (default 10000 source addresses).
	MaxTrackedIPs int
}

// ErrNoObserverConns means an Observer was configured without a socket.
var ErrNoObserverConns = errors.New("tracker: observer needs at least one UDP socket")

// Observer answers binding requests. Create it with NewObserver and serve with Run.
type Observer struct {
	cfg     ObserverConfig
	limiter *ipLimiter
	answers *prometheus.CounterVec // by result
	runOnce sync.Once
}

// NewObserver checks cfg and fills in its defaults.
func NewObserver(cfg ObserverConfig) (*Observer, error) {
	if len(cfg.Conns) == 0 {
		return nil, ErrNoObserverConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With("component", "observer")
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 50
	}
	if cfg.RateBurst == 0 {
		cfg.RateBurst = 100
	}
	if cfg.MaxTrackedIPs == 0 {
		cfg.MaxTrackedIPs = 10000
	}
	o := &Observer{
		cfg:     cfg,
		limiter: newIPLimiter(cfg.RateLimit, cfg.RateBurst, cfg.MaxTrackedIPs),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "crowdsurf", Subsystem: "tracker", Name: "binding_requests_total",
			Help: "Datagrams received by the reflexive-address observer, by result (answered, malformed, rate_limited).",
		}, []string{"result"}),
	}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(o.answers); err != nil {
			return nil, fmt.Errorf("tracker: observer metrics: %w", err)
		}
	}
	return o, nil
}

// Run answers on every socket until ctx ends or a socket fails, and returns once every reader
// has stopped: nil when ctx ended, else the first socket error.
func (o *Observer) Run(ctx context.Context) error {
	err := fmt.Errorf("tracker observer: %w", runonce.ErrRunTwice)
	o.runOnce.Do(func() { err = o.run(ctx) })
	return err
}

func (o *Observer) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(o.cfg.Conns))
	for _, conn := range o.cfg.Conns {
		wg.Go(func() {
			if err := o.serve(ctx, conn); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	for _, conn := range o.cfg.Conns {
		o.cfg.Logger.Info("observer listening", "addr", conn.LocalAddr())
	}
	<-ctx.Done()
	for _, conn := range o.cfg.Conns {
		_ = conn.SetReadDeadline(time.Now()) // unblocks ReadFrom
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when no reader failed
}

// serve answers the requests arriving on one socket.
func (o *Observer) serve(ctx context.Context, conn net.PacketConn) error {
	buf := make([]byte, 1500)
	var out []byte
	for {
		n, from, err := conn.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tracker: observer on %s: %w", conn.LocalAddr(), err)
		}
		src, ok := observedAddr(from)
		if !ok {
			continue
		}
		m, _, err := proto.ParseBinding(buf[:n])
		req, isReq := m.(*proto.BindingRequest)
		if err != nil || !isReq {
			// Responses and punches never come here on purpose; a stray one gets nothing,
			// so two observers cannot be made to talk to each other.
			o.answers.WithLabelValues("malformed").Inc()
			continue
		}
		if !o.limiter.allow(src.Addr().String(), time.Now()) {
			o.answers.WithLabelValues("rate_limited").Inc()
			continue
		}
		out = (&proto.BindingResponse{TxID: req.TxID, Observed: src}).Append(out[:0])
		if _, err := conn.WriteTo(out, from); err != nil {
			// A send error (an unreachable source, a full buffer) concerns this one
			// requester; the peer retries.
			o.cfg.Logger.Debug("observer: answer not sent", "to", from, "err", err)
			continue
		}
		o.answers.WithLabelValues("answered").Inc()
	}
}

// observedAddr is the address to report: IPv4 in its 4-byte form, so a dual-stack socket
// reports what the peer would see on an IPv4-only one.
func observedAddr(a net.Addr) (netip.AddrPort, bool) {
	u, ok := a.(*net.UDPAddr)
	if !ok {
		ap, err := netip.ParseAddrPort(a.String())
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err == nil
	}
	ap := u.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}

// push sends a datagram the tracker originates (a PUNCH_REQUEST) from the first socket: the one
// peers' binding keepalives reach first, so their NATs let its packets in.
func (o *Observer) push(m proto.BindingMessage, to netip.AddrPort) error {
	_, err := o.cfg.Conns[0].WriteTo(m.Append(nil), net.UDPAddrFromAddrPort(to))
	return err
}
