package peer

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crowdsurf/crowdsurf/internal/segwindow"
)

var errServerClosed = http.ErrServerClosed

// httpServer is the local endpoint a media player reads: the stream's playlist and segments from
// the window, plus /stats, /healthz and /metrics.
func (n *Node) httpServer() *http.Server {
	e := echo.New()
	e.HTTPErrorHandler = func(c *echo.Context, err error) {
		code := http.StatusInternalServerError
		var sc echo.HTTPStatusCoder
		if errors.As(err, &sc) && sc.StatusCode() != 0 {
			code = sc.StatusCode()
		}
		_ = c.JSON(code, map[string]string{"error": err.Error()})
	}
	segwindow.NewServer(func(stream string) (*segwindow.Window, bool) {
		return n.window, stream == n.cfg.Stream
	}, segwindow.ServerOptions{}).Register(e)
	e.GET("/stats", func(c *echo.Context) error { return c.JSON(http.StatusOK, n.Stats()) })
	e.GET("/healthz", func(c *echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"ok": true, "neighbours": n.Stats().Neighbours})
	})
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(n.cfg.Registry, promhttp.HandlerOpts{})))
	return &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
}
