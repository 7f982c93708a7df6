package tracker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crowdsurf/crowdsurf/proto"
)

// kvTimeout bounds one write to NATS from a request; a slow NATS turns into 503, not a hang.
const kvTimeout = 3 * time.Second

func (t *Tracker) routes() *echo.Echo {
	e := echo.NewWithConfig(echo.Config{Logger: t.cfg.Logger, HTTPErrorHandler: t.handleError})
	e.Use(middleware.Recover())
	e.GET("/healthz", t.healthz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(t.cfg.Registry, promhttp.HandlerOpts{})))
	api := e.Group("/v1", t.rateLimit)
	api.POST("/announce", t.announce)
	api.POST("/streams", t.registerStream)
	api.GET("/streams", t.listStreams)
	api.GET("/streams/:name", t.getStream)
	return e
}

// handleError answers every error that a handler returns (or the router raises) as
// {"error": "..."}; handlers answer expected failures themselves with apiError.
func (t *Tracker) handleError(c *echo.Context, err error) {
	if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Committed {
		return
	}
	code := echo.StatusCode(err)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	msg := http.StatusText(code)
	var he *echo.HTTPError
	if errors.As(err, &he) && he.Message != "" {
		msg = he.Message
	}
	if code >= 500 {
		t.cfg.Logger.Error("request failed", "path", c.Request().URL.Path, "error", err)
	}
	_ = apiError(c, code, "%s", msg)
}

func apiError(c *echo.Context, code int, format string, args ...any) error {
	return c.JSON(code, proto.ErrorResponse{Error: fmt.Sprintf(format, args...)})
}

func (t *Tracker) healthz(c *echo.Context) error {
	select {
	case <-t.view.ready:
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	default:
		return apiError(c, http.StatusServiceUnavailable, "loading swarm state")
	}
}

func (t *Tracker) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if !t.limiter.allow(c.RealIP(), time.Now()) {
			t.metrics.rateLimited.Inc()
			c.Response().Header().Set("Retry-After", "1")
			return apiError(c, http.StatusTooManyRequests, "too many requests from %s; slow down", c.RealIP())
		}
		return next(c)
	}
}

// readBody reads at most MaxBodyBytes; a larger body is answered with 413.
func (t *Tracker) readBody(c *echo.Context) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, t.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", t.cfg.MaxBodyBytes))
	}
	if err != nil {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "reading request body: "+err.Error())
	}
	return b, nil
}

func (t *Tracker) announce(c *echo.Context) error {
	start := time.Now()
	ctx := c.Request().Context()
	body, err := t.readBody(c)
	if err != nil {
		t.metrics.announces.WithLabelValues("bad_request").Inc()
		return err
	}
	req, err := proto.ParseAnnounceRequest(body)
	if err != nil {
		t.metrics.announces.WithLabelValues("bad_request").Inc()
		return apiError(c, http.StatusBadRequest, "%v", err)
	}
	req.Addr = fillHost(req.Addr, c.RealIP())

	var (
		found      bool
		reg        proto.StreamRegistration
		neighbours []proto.PeerInfo
	)
	err = t.view.do(ctx, func() {
		e := t.view.streams[req.Stream]
		if e == nil {
			return
		}
		found, reg = true, e.reg
		var peers []proto.PeerInfo
		if s := t.view.swarms[req.Stream]; s != nil {
			peers = s.infos
		}
		neighbours = chooseNeighbours(t.view.rng, peers, req.PeerID, t.cfg.NeighbourCount)
	})
	if err != nil {
		t.metrics.announces.WithLabelValues("unavailable").Inc()
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	}
	if !found {
		t.metrics.announces.WithLabelValues("unknown_stream").Inc()
		return apiError(c, http.StatusNotFound, "unknown stream %q: no origin has registered it (or its registration expired)", req.Stream)
	}
	if len(req.Depths) > reg.Stripes {
		t.metrics.announces.WithLabelValues("bad_request").Inc()
		return apiError(c, http.StatusBadRequest, "%v: %d depths, but stream %q has %d stripes", proto.ErrBadAnnounce, len(req.Depths), req.Stream, reg.Stripes)
	}

	rec := proto.PeerRecord{
		PeerID: req.PeerID, Stream: req.Stream, Addr: req.Addr, UploadBps: req.UploadBps,
		Depths: req.Depths, FreeSlots: req.FreeSlots, Quality: req.Quality,
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding peer record: %w", err)
	}
	putCtx, cancel := context.WithTimeout(ctx, kvTimeout)
	rev, err := t.peersKV.Put(putCtx, proto.TrackerPeerKey(req.Stream, req.PeerID), val)
	cancel()
	if err != nil {
		t.metrics.announces.WithLabelValues("unavailable").Inc()
		return apiError(c, http.StatusServiceUnavailable, "storing announce: %v", err)
	}
	// Apply our own write at once so the next announce here sees this peer; the watcher brings
	// the same revision again later and it is ignored then.
	_ = t.view.do(ctx, func() { t.view.putPeer(rec, rev, time.Now()) })

	if neighbours == nil {
		neighbours = []proto.PeerInfo{}
	}
	t.metrics.announces.WithLabelValues("ok").Inc()
	t.metrics.announceTime.Observe(time.Since(start).Seconds())
	return c.JSON(http.StatusOK, proto.AnnounceResponse{
		Neighbours:         neighbours,
		Origin:             proto.OriginInfo{QUICAddr: reg.QUICAddr, HTTPURL: reg.HTTPURL, PublicKey: reg.PublicKey},
		Stripes:            reg.Stripes,
		AnnounceIntervalMs: t.cfg.AnnounceInterval.Milliseconds(),
	})
}

// fillHost replaces an empty or unspecified host (a peer listening on ":4242" does not know
// its address) with the address the announce came from.
func fillHost(addr, sourceIP string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || sourceIP == "" {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort(sourceIP, port)
	}
	return addr
}

func (t *Tracker) registerStream(c *echo.Context) error {
	ctx := c.Request().Context()
	if t.cfg.RegisterToken != "" {
		want := "Bearer " + t.cfg.RegisterToken
		if subtle.ConstantTimeCompare([]byte(c.Request().Header.Get("Authorization")), []byte(want)) != 1 {
			t.metrics.registrations.WithLabelValues("unauthorized").Inc()
			return apiError(c, http.StatusUnauthorized, "registering a stream needs the tracker's register token (Authorization: Bearer TOKEN)")
		}
	}
	body, err := t.readBody(c)
	if err != nil {
		t.metrics.registrations.WithLabelValues("bad_request").Inc()
		return err
	}
	reg, err := proto.ParseStreamRegistration(body)
	if err != nil {
		t.metrics.registrations.WithLabelValues("bad_request").Inc()
		return apiError(c, http.StatusBadRequest, "%v", err)
	}
	// Over HTTP nobody may take over a live stream with another key: peers would be sent to an
	// origin whose chunks fail verification. The key may change once the old registration expires.
	newKey, _ := proto.ParsePublicKey(reg.PublicKey)
	conflict := false
	err = t.view.do(ctx, func() {
		if e := t.view.streams[reg.Name]; e != nil {
			oldKey, _ := proto.ParsePublicKey(e.reg.PublicKey)
			conflict = !bytes.Equal(oldKey, newKey)
		}
	})
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	}
	if conflict {
		t.metrics.registrations.WithLabelValues("conflict").Inc()
		return apiError(c, http.StatusConflict, "stream %q is registered with another public key; wait until that registration expires", reg.Name)
	}
	val, err := json.Marshal(reg)
	if err != nil {
		return fmt.Errorf("encoding registration: %w", err)
	}
	putCtx, cancel := context.WithTimeout(ctx, kvTimeout)
	rev, err := t.streamsKV.Put(putCtx, proto.TrackerStreamKey(reg.Name), val)
	cancel()
	if err != nil {
		t.metrics.registrations.WithLabelValues("unavailable").Inc()
		return apiError(c, http.StatusServiceUnavailable, "storing registration: %v", err)
	}
	var st proto.StreamStatus
	err = t.view.do(ctx, func() {
		t.view.putStream(reg, rev, time.Now())
		st = t.view.status(t.view.streams[reg.Name])
	})
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	}
	t.metrics.registrations.WithLabelValues("ok").Inc()
	return c.JSON(http.StatusOK, st)
}

func (t *Tracker) listStreams(c *echo.Context) error {
	var list []proto.StreamStatus
	err := t.view.do(c.Request().Context(), func() {
		list = make([]proto.StreamStatus, 0, len(t.view.streams))
		for _, e := range t.view.streams {
			list = append(list, t.view.status(e))
		}
	})
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return c.JSON(http.StatusOK, list)
}

func (t *Tracker) getStream(c *echo.Context) error {
	name := c.Param("name")
	var (
		st    proto.StreamStatus
		found bool
	)
	err := t.view.do(c.Request().Context(), func() {
		if e := t.view.streams[name]; e != nil {
			st, found = t.view.status(e), true
		}
	})
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	}
	if !found {
		return apiError(c, http.StatusNotFound, "unknown stream %q", name)
	}
	return c.JSON(http.StatusOK, st)
}
