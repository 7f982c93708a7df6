package peer

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crowdsurf/crowdsurf/internal/httperr"
	"github.com/crowdsurf/crowdsurf/segwindow"
	"github.com/crowdsurf/crowdsurf/webui"
)

var errServerClosed = http.ErrServerClosed

// firstPlaylistWait is how long a player's first playlist request waits for the first complete
// segment: players give up on a 404, and a peer that has just started is seconds from its first
// segment.
const firstPlaylistWait = 10 * time.Second

// startWait is how long, once the first segment is complete, the first playlist waits for the
// joinSegments-th: a joiner fetches them together, so it is usually there within a moment.
const startWait = time.Second

// httpServer is the local endpoint a media player reads: the stream's playlist and segments from
// the window, plus /stats, /healthz, /metrics and the web player at /.
func (n *Node) httpServer() *http.Server {
	e := echo.New()
	// echo's default logger writes to stdout; a peer logs where its owner said.
	e.Logger = n.log
	e.HTTPErrorHandler = httperr.Handler(httperr.Options{ShowInternal: true}) // the viewer's own, on localhost
	hls := segwindow.NewServer(func(stream string) (*segwindow.Window, bool) {
		return n.window, stream == n.cfg.Stream
	}, segwindow.ServerOptions{
		WaitForFirst: firstPlaylistWait, StartSegments: joinSegments, StartWait: startWait,
		OnSegment: func(_ string, seq uint64, meta segwindow.SegmentMeta) {
			n.playback.served(seq, meta.Duration, time.Now())
		},
		// An LL player fetches parts, not segments: what it blocks on is what it needs next.
		OnPartWait: func(_ string, w segwindow.PartWait) { n.partWaits.waiting(w, time.Now()) },
		NotReady:   func(string) (string, time.Duration) { return n.notReady(time.Now()) },
	})
	hls.Register(e)
	webui.RegisterPlayer(e, webui.PlayerConfig{Role: webui.RolePeer, Stream: n.cfg.Stream, TrackerURL: n.cfg.TrackerURL})
	e.GET("/stats", func(c *echo.Context) error { return c.JSON(http.StatusOK, n.Stats()) })
	e.GET("/healthz", func(c *echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"ok": true, "neighbours": n.Stats().Neighbours})
	})
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(n.cfg.Registry, promhttp.HandlerOpts{})))
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(hls.Shutdown) // blocked LL-HLS requests must not hold the shutdown
	return srv
}
