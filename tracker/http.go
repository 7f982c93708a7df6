package tracker

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crowdsurf/crowdsurf/internal/httperr"
	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker/registrar"
	"github.com/crowdsurf/crowdsurf/webui"
)

var (
	// errForeignAddr means an announce names a QUIC address that is not the announcing host's.
	errForeignAddr = errors.New("foreign address")
	// errTrackerFull means the tracker holds Config.MaxStreams streams.
	errTrackerFull = errors.New("tracker full")
)

// kvTimeout bounds one write to NATS: from a request (a slow NATS turns into 503, not a hang),
// or a batch of the peer writer's.
const kvTimeout = 3 * time.Second

func (t *Tracker) routes() *echo.Echo {
	e := echo.NewWithConfig(echo.Config{Logger: t.cfg.Logger, HTTPErrorHandler: httperr.Handler(httperr.Options{Logger: t.cfg.Logger}), IPExtractor: t.clientIP})
	e.Use(middleware.Recover())
	e.GET("/healthz", t.healthz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(t.cfg.Registry, promhttp.HandlerOpts{})))
	e.POST(proto.TrackerAnnouncePath, t.announce, t.rateLimit)
	e.POST(proto.TrackerStreamsPath, t.registerStream, t.rateLimit)
	e.GET(proto.TrackerStreamsPath, t.listStreams, t.rateLimit)
	e.GET(proto.TrackerStreamsPath+"/:name", t.getStream, t.rateLimit)
	e.GET("/v1/swarm/:name", t.swarmView, t.rateLimit)
	webui.RegisterDashboard(e)
	return e
}

// clientIP is the address a request came from: the connection's, or with
// Config.TrustProxyHeader the last address in that header (the one the nearest proxy, ours,
// added; earlier ones are whatever the client wrote).
func (t *Tracker) clientIP(r *http.Request) string {
	if t.cfg.TrustProxyHeader != "" {
		if v := r.Header.Values(t.cfg.TrustProxyHeader); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if ip, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return ip.Unmap().String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return host
}

// apiError answers an expected failure as {"error": "..."}; everything else a handler returns
// (or the router raises) goes to the shared httperr handler.
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
	result := func(r string) { t.metrics.announces.WithLabelValues(r).Inc() }
	body, err := t.readBody(c)
	if err != nil {
		result("bad_request")
		return err
	}
	req, err := proto.ParseAnnounceRequest(body)
	if err != nil {
		result("bad_request")
		return apiError(c, http.StatusBadRequest, "%v", err)
	}
	if err := proto.CheckPeerSecret(req.PeerID, req.PeerSecret); err != nil {
		result("forbidden")
		return apiError(c, http.StatusForbidden, "%v", err)
	}
	req.PeerSecret = "" // checked; from here on nothing may carry it anywhere
	src, _ := netip.ParseAddr(c.RealIP())
	addr, err := t.ownAddr(req.Addr, src)
	if err != nil {
		result("forbidden")
		return apiError(c, http.StatusForbidden, "%v", err)
	}
	req.Addr = addr
	if err := checkReflexive(&req.PeerState, src, t.cfg.AllowForeignAddr); err != nil {
		result("forbidden")
		return apiError(c, http.StatusForbidden, "%v", err)
	}
	id, err := swarmOf(req.Stream, req.StreamKey)
	if err != nil { // Validate accepted the key, so this cannot happen
		result("bad_request")
		return apiError(c, http.StatusBadRequest, "%v: stream_key: %v", proto.ErrBadAnnounce, err)
	}
	rec := proto.PeerRecord{PeerState: req.PeerState, SourceIP: src.String()}
	fp := fingerprint(rec)

	var (
		found      bool
		reg        proto.StreamRegistration
		neighbours []proto.PeerInfo
		admitErr   error
		unchanged  bool   // nothing to write: see view.touch
		middle     []byte // the answer's constant part, encoded (answer.go)
		encoded    []byte // neighbours as JSON, when the choice had it (choicecache.go)
	)
	err = t.view.do(ctx, func() {
		e := t.view.streams[id]
		if e == nil {
			return
		}
		found, reg = true, e.reg
		if len(req.Depths) > reg.Stripes || len(req.Parents) > reg.Stripes {
			return // refused below
		}
		middle = e.answerMiddle(t.baseAnswer(id, &e.reg))
		admitErr = t.view.admitErr(id, rec)
		count := t.cfg.NeighbourCount
		if t.nat != nil {
			count *= candidateFactor // some are filtered out below
		}
		neighbours, encoded = t.view.swarms[id].neighboursFor(t.view.rng, req.PeerID, count, start)
		if admitErr == nil {
			unchanged = t.view.touch(id, req.PeerID, fp, start)
			if !unchanged {
				// Listed here at once; the write follows (writer.go).
				t.view.putLocal(id, rec, fp, start)
			}
		}
	})
	switch {
	case err != nil:
		result("unavailable")
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	case !found:
		result("unknown_stream")
		return apiError(c, http.StatusNotFound, "unknown stream %q with key %s: no origin has registered it (or its registration expired)", req.Stream, id.key)
	case len(req.Depths) > reg.Stripes || len(req.Parents) > reg.Stripes:
		result("bad_request")
		return apiError(c, http.StatusBadRequest, "%v: %d depths and %d parents, but stream %q has %d stripes", proto.ErrBadAnnounce, len(req.Depths), len(req.Parents), req.Stream, reg.Stripes)
	}
	answer := t.baseAnswer(id, &reg)
	answer.Neighbours = neighbours
	if t.nat != nil {
		now := time.Now()
		encoded = nil
		answer.Neighbours = t.nat.plan(req.PeerState, slices.Clone(answer.Neighbours), t.cfg.NeighbourCount, now)
		answer.Observers = t.nat.advertised(localIP(c.Request()))
		answer.Punches = t.nat.ordersFor(req.PeerID, now)
		if len(answer.Observers) > 0 || len(answer.Punches) > 0 {
			middle = nil // the spliced encoding (answer.go) knows only the stream's constant part
		}
	}
	if answer.Neighbours == nil {
		answer.Neighbours = []proto.PeerInfo{}
	}
	if admitErr != nil {
		// Its host (a carrier's NAT may hide thousands of viewers behind one address) or the
		// swarm is full: the peer still learns the origin and neighbours to receive from, so
		// it plays, but it is not handed out to others.
		if errors.Is(admitErr, errHostFull) {
			result("host_full")
		} else {
			result("swarm_full")
		}
		return writeAnswer(c, answer, middle, encoded)
	}

	if !unchanged {
		if err := t.queueWrite(id, rec, fp); err != nil {
			result("unavailable")
			return apiError(c, http.StatusServiceUnavailable, "storing announce: %v", err)
		}
	}
	answer.Listed = true
	result("ok")
	t.metrics.announceTime.Observe(time.Since(start).Seconds())
	return writeAnswer(c, answer, middle, encoded)
}

// queueWrite queues rec, already in the view, for the peers bucket. When the queue is full the
// view forgets the record's fingerprint, so the peer's next announce tries again.
func (t *Tracker) queueWrite(id swarmID, rec proto.PeerRecord, fp uint64) error {
	val, err := json.Marshal(rec)
	if err == nil {
		err = t.writer.enqueue(pendingWrite{key: peerKey(id, rec.PeerID), id: id, peerID: rec.PeerID, fp: fp, val: val})
	}
	if err != nil {
		_ = t.view.do(context.Background(), func() { t.view.forget(id, rec.PeerID, fp) })
		return err
	}
	t.metrics.kvWrites.Inc()
	return nil
}

// baseAnswer is the part of an announce answer every peer of the stream gets.
func (t *Tracker) baseAnswer(id swarmID, reg *proto.StreamRegistration) proto.AnnounceResponse {
	return proto.AnnounceResponse{
		Origin:             proto.OriginInfo{QUICAddr: reg.QUICAddr, HTTPURL: reg.HTTPURL, PublicKey: id.key},
		Registration:       reg,
		Stripes:            reg.Stripes,
		AnnounceIntervalMs: t.cfg.AnnounceInterval.Milliseconds(),
	}
}

// ownAddr checks that an announced QUIC address is the announcing host's own and returns it
// with an empty or unspecified host filled in from src. Peers would send QUIC Initials to
// whatever address the tracker hands out, so a host may only name itself; loopback may name
// loopback (one machine), and Config.AllowForeignAddr lifts the rule for simulated networks.
func (t *Tracker) ownAddr(announced string, src netip.Addr) (string, error) {
	ap, err := proto.ParseAnnounceAddr(announced)
	if err != nil { // Validate accepted it, so this cannot happen
		return "", fmt.Errorf("%w: addr: %w", proto.ErrBadAnnounce, err)
	}
	if !src.IsValid() {
		return "", fmt.Errorf("%w: the request's source address is unknown", errForeignAddr)
	}
	ip := ap.Addr()
	switch {
	case !ip.IsValid():
		ip = src
	case ip == src, t.cfg.AllowForeignAddr, ip.IsLoopback() && src.IsLoopback():
	default:
		return "", fmt.Errorf("%w: addr %s is not on the announcing host %s; announce your own address, or an empty host (\":PORT\") to have it filled in", errForeignAddr, announced, src)
	}
	return netip.AddrPortFrom(ip, ap.Port()).String(), nil
}

func (t *Tracker) registerStream(c *echo.Context) error {
	ctx := c.Request().Context()
	result := func(r string) { t.metrics.registrations.WithLabelValues(r).Inc() }
	if t.cfg.RegisterToken != "" {
		want := "Bearer " + t.cfg.RegisterToken
		if subtle.ConstantTimeCompare([]byte(c.Request().Header.Get("Authorization")), []byte(want)) != 1 {
			result("unauthorized")
			return apiError(c, http.StatusUnauthorized, "registering a stream needs the tracker's register token (Authorization: Bearer TOKEN; the origin's --register-token)")
		}
	}
	body, err := t.readBody(c)
	if err != nil {
		result("bad_request")
		return err
	}
	reg, err := proto.ParseStreamRegistration(body)
	if errors.Is(err, proto.ErrRegistrationSignature) {
		result("forbidden")
		return apiError(c, http.StatusForbidden, "%v", err)
	}
	if err != nil {
		result("bad_request")
		return apiError(c, http.StatusBadRequest, "%v", err)
	}
	id, _ := swarmOf(reg.Name, reg.PublicKey)
	var refuse error
	err = t.view.do(ctx, func() {
		refuse = t.view.fresh(id, reg, time.Now())
		if refuse == nil && t.view.streams[id] == nil && len(t.view.streams) >= t.cfg.MaxStreams {
			refuse = fmt.Errorf("%w: the tracker holds its maximum of %d streams", errTrackerFull, t.cfg.MaxStreams)
		}
	})
	switch {
	case err != nil:
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	case errors.Is(refuse, errStaleRegistration):
		result("stale")
		return apiError(c, http.StatusForbidden, "stream %q: %v", reg.Name, refuse)
	case refuse != nil:
		result("full")
		return apiError(c, http.StatusServiceUnavailable, "stream %q: %v", reg.Name, refuse)
	}
	val, err := json.Marshal(reg)
	if err != nil {
		return fmt.Errorf("encoding registration: %w", err)
	}
	putCtx, cancel := context.WithTimeout(ctx, kvTimeout)
	rev, err := t.streamsKV.Put(putCtx, registrar.StreamKey(reg.Name, mustKey(reg.PublicKey)), val)
	cancel()
	if err != nil {
		result("unavailable")
		return apiError(c, http.StatusServiceUnavailable, "storing registration: %v", err)
	}
	var st proto.StreamStatus
	err = t.view.do(ctx, func() {
		t.view.putStream(id, reg, rev, time.Now())
		if e := t.view.streams[id]; e != nil {
			st = t.view.status(e)
		}
	})
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	}
	result("ok")
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
	slices.SortFunc(list, func(a, b proto.StreamStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.PublicKey, b.PublicKey))
	})
	return c.JSON(http.StatusOK, list)
}

// getStream answers one swarm: the name's only registration, or with ?key= the one under that
// key. A name registered under several keys needs the key (409): which one is real is the
// watch link's to say, not the tracker's.
func (t *Tracker) getStream(c *echo.Context) error {
	name := c.Param("name")
	var want swarmID
	if k := c.QueryParam("key"); k != "" {
		id, err := swarmOf(name, k)
		if err != nil {
			return apiError(c, http.StatusBadRequest, "key: %v", err)
		}
		want = id
	}
	var found []proto.StreamStatus
	err := t.view.do(c.Request().Context(), func() {
		for id, e := range t.view.streams {
			if id.name == name && (want.key == "" || id == want) {
				found = append(found, t.view.status(e))
			}
		}
	})
	if err != nil {
		return apiError(c, http.StatusServiceUnavailable, "tracker unavailable: %v", err)
	}
	switch len(found) {
	case 0:
		return apiError(c, http.StatusNotFound, "unknown stream %q", name)
	case 1:
		return c.JSON(http.StatusOK, found[0])
	}
	return apiError(c, http.StatusConflict, "stream %q is registered under %d keys; ask with ?key=KEY from the watch link", name, len(found))
}

// localIP is the tracker's address the request arrived at.
func localIP(r *http.Request) netip.Addr {
	a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if a == nil {
		return netip.Addr{}
	}
	ap, ok := observedAddr(a)
	if !ok {
		return netip.Addr{}
	}
	return ap.Addr()
}
