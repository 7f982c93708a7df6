package tracker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crowdsurf/crowdsurf/internal/runonce"
)

// Tracker serves the tracker API from a view of the NATS buckets.
type Tracker struct {
	cfg      Config
	ln       net.Listener
	embedded *embeddedNATS // nil with Config.NATSURL
	natsURL  string
	nc       *nats.Conn

	peersKV, streamsKV jetstream.KeyValue
	view               *view
	writer             *peerWriter
	metrics            *metrics
	limiter            *ipLimiter
	httpServer         *http.Server
	observer           *Observer // nil without observer sockets
	nat                *natCoord // nil without observer sockets
	ownedObsConns      []net.PacketConn

	runOnce sync.Once
}

// New binds the HTTP listener, starts the embedded NATS server when no NATS URL is given,
// connects and opens the buckets, so Addr, URL and NATSURL are valid when it returns. Run must
// be called to serve and to release all of it.
func New(cfg Config) (_ *Tracker, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Logger = cfg.Logger.With("component", "tracker")
	t := &Tracker{cfg: cfg}
	defer func() {
		if err != nil {
			t.close()
		}
	}()

	t.ln = cfg.HTTPListener
	if t.ln == nil {
		if t.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("tracker: listen on %s: %w", cfg.HTTPAddr, err)
		}
	}

	storage := jetstream.FileStorage
	t.natsURL = cfg.NATSURL
	if t.natsURL == "" {
		if t.embedded, err = startEmbeddedNATS(cfg.DataDir, cfg.NATSInProcess); err != nil {
			return nil, err
		}
		t.natsURL = t.embedded.clientURL()
		if cfg.DataDir == "" {
			storage = jetstream.MemoryStorage
		}
		cfg.Logger.Info("embedded NATS started", "url", t.natsURL, "data_dir", cfg.DataDir)
	} else if cfg.DataDir != "" {
		cfg.Logger.Warn("data dir ignored: the external NATS server keeps the state", "data_dir", cfg.DataDir)
	}

	reconnected := make(chan struct{}, 1)
	if t.nc, err = connectNATS(t.natsURL, t.NATSOptions(), cfg, reconnected); err != nil {
		return nil, err
	}
	// The peer writer publishes a batch of up to maxPendingWrites records without waiting.
	js, err := jetstream.New(t.nc, jetstream.WithPublishAsyncMaxPending(maxPendingWrites))
	if err != nil {
		return nil, fmt.Errorf("tracker: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if t.peersKV, t.streamsKV, err = openBuckets(ctx, js, cfg, storage); err != nil {
		return nil, err
	}

	t.metrics = newMetrics(cfg.Registry)
	t.limiter = newIPLimiter(cfg.RateLimit, cfg.RateBurst, cfg.MaxTrackedIPs)
	t.view = newView(t.peersKV, t.streamsKV, cfg, t.metrics)
	t.view.reconnected = reconnected
	t.writer = newPeerWriter(js, peersBucket, func(results []writeResult) (retry []pendingWrite) {
		_ = t.view.do(context.Background(), func() { retry = t.view.stored(results, time.Now()) })
		return retry
	})
	if err := t.startObserver(); err != nil {
		return nil, err
	}
	t.httpServer = &http.Server{
		Handler:           t.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	return t, nil
}

// Addr is the address the API listens on.
func (t *Tracker) Addr() net.Addr { return t.ln.Addr() }

// URL is the API's base URL, with 127.0.0.1 in place of an unspecified listen address.
func (t *Tracker) URL() string {
	addr := t.ln.Addr().String()
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	return "http://" + addr
}

// NATSURL is the NATS server the tracker uses: the embedded one's client URL, or Config.NATSURL.
// The origin registers its stream there (registrar.Registrar). Empty with Config.NATSInProcess:
// then NATSOptions reach the server.
func (t *Tracker) NATSURL() string { return t.natsURL }

// NATSOptions are the connect options a client in this process needs besides NATSURL to reach
// the tracker's NATS: with Config.NATSInProcess the in-process connection, otherwise none.
func (t *Tracker) NATSOptions() []nats.Option {
	if t.embedded == nil {
		return nil
	}
	return t.embedded.clientOptions()
}

// Ready is closed once the tracker has loaded the buckets' contents and answers requests.
func (t *Tracker) Ready() <-chan struct{} { return t.view.ready }

// Run serves the API until ctx ends, then stops the HTTP server, the watchers, the NATS
// connection and the embedded server, and returns when all of them have stopped.
func (t *Tracker) Run(ctx context.Context) error {
	err := fmt.Errorf("tracker: %w", runonce.ErrRunTwice)
	t.runOnce.Do(func() { err = t.run(ctx) })
	return err
}

func (t *Tracker) run(ctx context.Context) error {
	defer t.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { t.writer.run(ctx) })
	wg.Go(func() {
		if err := t.view.run(ctx); err != nil {
			errs <- err
		}
		cancel()
	})
	wg.Go(func() {
		if err := t.httpServer.Serve(t.ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("tracker: serve HTTP: %w", err)
		}
		cancel()
	})
	if t.observer != nil {
		wg.Go(func() {
			if err := t.observer.Run(ctx); err != nil {
				errs <- err
			}
			cancel()
		})
	}
	t.cfg.Logger.Info("tracker listening", "url", t.URL(), "nats", t.natsURL)

	<-ctx.Done()
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	if err := t.httpServer.Shutdown(shutdownCtx); err != nil {
		_ = t.httpServer.Close()
	}
	stop()
	wg.Wait()
	close(errs)
	return <-errs // nil when both stopped cleanly
}

// close releases what New acquired, in reverse order; safe on a half-built Tracker.
func (t *Tracker) close() {
	for _, c := range t.ownedObsConns {
		_ = c.Close()
	}
	if t.nc != nil {
		t.nc.Close()
	}
	if t.embedded != nil {
		t.embedded.shutdown()
	}
	if t.ln != nil {
		_ = t.ln.Close()
	}
}

// startObserver opens the observer's sockets and sets up punch coordination, when configured.
func (t *Tracker) startObserver() error {
	conns := append([]net.PacketConn(nil), t.cfg.ObserverConns...)
	for _, addr := range t.cfg.ObserverAddrs {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("tracker: observer on %s: %w", addr, err)
		}
		t.ownedObsConns = append(t.ownedObsConns, c)
		conns = append(conns, c)
	}
	if len(conns) == 0 {
		return nil
	}
	obs, err := NewObserver(ObserverConfig{Conns: conns, Logger: t.cfg.Logger, Registry: t.cfg.Registry})
	if err != nil {
		return err
	}
	if t.nat, err = newNATCoord(obs, conns, t.cfg.Registry); err != nil {
		return err
	}
	t.observer = obs
	return nil
}

// ObserverAddrs are the addresses the observer answers on; nil without one.
func (t *Tracker) ObserverAddrs() []net.Addr {
	if t.nat == nil {
		return nil
	}
	out := make([]net.Addr, len(t.nat.addrs))
	for i, ap := range t.nat.addrs {
		out[i] = net.UDPAddrFromAddrPort(ap)
	}
	return out
}
