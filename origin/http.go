package origin

import (
	"net/http"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crowdsurf/crowdsurf/internal/httperr"
	"github.com/crowdsurf/crowdsurf/segwindow"
	"github.com/crowdsurf/crowdsurf/webui"
)

// newEcho builds the HTTP API: HLS and chunks (segwindow.Server), /v1/streams, /stats,
// /healthz, /metrics, and the web player at / (stream list) and /watch/NAME. Every error is
// JSON {"error": "..."}.
func (o *Origin) newEcho() (*echo.Echo, *segwindow.Server) {
	e := echo.New()
	e.HTTPErrorHandler = httperr.Handler(httperr.Options{}) // public: internal errors show their status only

	hls := segwindow.NewServer(func(name string) (*segwindow.Window, bool) {
		st, ok := o.lookup(name)
		if !ok {
			return nil, false
		}
		return st.window, true
	}, segwindow.ServerOptions{OnServe: func(_ string, kind string, n int) {
		o.bytesHTTP.Add(uint64(n))
		o.metrics.bytesHTTP.Add(float64(n))
		switch kind {
		case segwindow.KindPlaylist:
			o.bytesHTTPPlaylist.Add(uint64(n))
		case segwindow.KindSegment:
			o.bytesHTTPSegment.Add(uint64(n))
		case segwindow.KindChunk:
			o.bytesHTTPChunk.Add(uint64(n))
		}
	}})
	hls.Register(e)

	e.GET("/v1/streams", func(c *echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"streams": o.Streams()})
	})
	e.GET("/v1/streams/:stream", func(c *echo.Context) error {
		st, ok := o.lookup(c.Param("stream"))
		if !ok {
			return c.JSON(http.StatusNotFound, map[string]string{"error": "no such stream"})
		}
		return c.JSON(http.StatusOK, st.info())
	})
	e.GET("/stats", func(c *echo.Context) error { return c.JSON(http.StatusOK, o.Stats()) })
	webui.RegisterPlayer(e, webui.PlayerConfig{Role: webui.RoleOrigin, TrackerURL: o.cfg.TrackerURL})
	e.GET("/healthz", func(c *echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	metrics := promhttp.HandlerFor(o.cfg.Registry, promhttp.HandlerOpts{})
	e.GET("/metrics", func(c *echo.Context) error {
		metrics.ServeHTTP(c.Response(), c.Request())
		return nil
	})
	e.RouteNotFound("/*", func(c *echo.Context) error {
		return c.JSON(http.StatusNotFound, map[string]string{"error": "not found: " + c.Request().URL.Path})
	})
	return e, hls
}
