package loadtest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/crowdsurf/crowdsurf/internal/httperr"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// cdnServer is the origin's HTTP endpoint in the load test: HLS playlist, segments and chunks
// from the source's window. It counts every byte it sends: that is the origin's HTTP egress.
type cdnServer struct {
	ln    net.Listener
	srv   *http.Server
	bytes atomic.Int64
	// requests by kind, for the report's detail
	playlistBytes, segmentBytes, chunkBytes atomic.Int64
}

func newCDNServer(ln net.Listener, lookup segwindow.Lookup) *cdnServer {
	c := &cdnServer{ln: ln}
	e := echo.New()
	// Players that leave mid-download make echo log every aborted response; the load test
	// counts what matters itself.
	e.Logger = slog.New(slog.DiscardHandler)
	e.HTTPErrorHandler = httperr.Handler(httperr.Options{ShowInternal: true})
	segwindow.NewServer(lookup, segwindow.ServerOptions{OnServe: func(_ string, kind string, n int) {
		c.bytes.Add(int64(n))
		switch kind {
		case segwindow.KindPlaylist:
			c.playlistBytes.Add(int64(n))
		case segwindow.KindSegment:
			c.segmentBytes.Add(int64(n))
		case segwindow.KindChunk:
			c.chunkBytes.Add(int64(n))
		}
	}}).Register(e)
	e.GET("/healthz", func(ec *echo.Context) error {
		return ec.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	c.srv = &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	return c
}

// URL is the endpoint's base URL.
func (c *cdnServer) URL() string { return "http://" + c.ln.Addr().String() }

// Bytes is everything sent so far.
func (c *cdnServer) Bytes() int64 { return c.bytes.Load() }

// Run serves until ctx ends.
func (c *cdnServer) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- c.srv.Serve(c.ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(sctx)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
