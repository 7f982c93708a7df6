// Package httperr is the one JSON error handler of every crowdsurf HTTP server (origin, peer,
// tracker, the load test's CDN): errors are answered as {"error": "..."} with their status.
package httperr

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Options say what a server may show of an error.
type Options struct {
	// ShowInternal shows the text of an error that is not an echo.HTTPError (an internal one).
	// A public server (origin, tracker) answers such errors with the status text only: their text
	// may name files, addresses or internals. A viewer's own peer on localhost shows them.
	ShowInternal bool
	// Logger, when set, logs every error answered with a 5xx status.
	Logger *slog.Logger
}

// Handler returns an echo HTTPErrorHandler answering errors as JSON. A response already under way
// (a player that went away mid-segment) is left alone: there is nobody to tell.
func Handler(opts Options) func(c *echo.Context, err error) {
	return func(c *echo.Context, err error) {
		if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Committed {
			return
		}
		code := echo.StatusCode(err)
		if code == 0 {
			code = http.StatusInternalServerError
		}
		msg := http.StatusText(code)
		var he *echo.HTTPError
		switch {
		case errors.As(err, &he) && he.Message != "":
			msg = he.Message
		case opts.ShowInternal:
			msg = err.Error()
		}
		if code >= 500 && opts.Logger != nil {
			opts.Logger.Error("request failed", "path", c.Request().URL.Path, "error", err)
		}
		_ = c.JSON(code, proto.ErrorResponse{Error: msg})
	}
}
