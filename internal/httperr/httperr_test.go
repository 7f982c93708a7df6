package httperr

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/stretchr/testify/require"
)

func TestHandlerShowsInternalErrorsOnlyWhenAllowed(t *testing.T) {
	cases := []struct {
		name     string
		show     bool
		err      error
		wantCode int
		wantBody string
	}{
		{"internal error on a public server", false, errors.New("open /etc/secret: denied"), 500, `{"error":"Internal Server Error"}`},
		{"internal error on a viewer's own peer", true, errors.New("open /x: denied"), 500, `{"error":"open /x: denied"}`},
		{"an HTTP error's message is always shown", false, echo.NewHTTPError(http.StatusNotFound, "no such stream"), 404, `{"error":"no such stream"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := echo.New()
			e.HTTPErrorHandler = Handler(Options{ShowInternal: tc.show})
			e.GET("/", func(*echo.Context) error { return tc.err })
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			require.Equal(t, tc.wantCode, rec.Code)
			require.JSONEq(t, tc.wantBody, rec.Body.String())
		})
	}
}
