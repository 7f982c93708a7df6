package webui

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, e *echo.Echo, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestPeerPagePlaysItsOwnStream(t *testing.T) {
	e := echo.New()
	RegisterPlayer(e, PlayerConfig{Role: RolePeer, Stream: "concert"})
	for _, path := range []string{"/", "/watch/concert"} {
		rec := get(t, e, http.MethodGet, path)
		require.Equal(t, http.StatusOK, rec.Code, path)
		body := rec.Body.String()
		require.Contains(t, body, `data-role="peer"`)
		require.Contains(t, body, `data-stream="concert"`)
		require.Contains(t, body, `data-carries="concert"`)
		require.Contains(t, body, `src="/webui/vendor/hls.light.min.js"`)
		require.Contains(t, rec.Header().Get("Content-Security-Policy"), "script-src 'self'")
	}
}

func TestPageLinksToTheTrackersDashboard(t *testing.T) {
	e := echo.New()
	RegisterPlayer(e, PlayerConfig{Role: RolePeer, Stream: "concert", TrackerURL: "http://tracker.example:7070"})
	require.Contains(t, get(t, e, http.MethodGet, "/").Body.String(), `href="http://tracker.example:7070/#concert"`)
	e = echo.New()
	RegisterPlayer(e, PlayerConfig{Role: RolePeer, Stream: "concert"})
	require.NotContains(t, get(t, e, http.MethodGet, "/").Body.String(), "swarm dashboard")
}

func TestOriginPageListsAtRootAndPlaysAtWatch(t *testing.T) {
	e := echo.New()
	RegisterPlayer(e, PlayerConfig{Role: RoleOrigin})
	rec := get(t, e, http.MethodGet, "/")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `data-stream=""`)
	rec = get(t, e, http.MethodGet, "/watch/lobby")
	require.Contains(t, rec.Body.String(), `data-stream="lobby"`)
}

func TestStreamNameInPageIsEscaped(t *testing.T) {
	e := echo.New()
	RegisterPlayer(e, PlayerConfig{Role: RoleOrigin})
	rec := get(t, e, http.MethodGet, `/watch/x"><script>alert(1)<%2Fscript>`)
	require.Equal(t, http.StatusOK, rec.Code)
	require.NotContains(t, rec.Body.String(), "<script>alert")
	require.Contains(t, rec.Body.String(), "&lt;script&gt;")
}

func TestDashboardPage(t *testing.T) {
	e := echo.New()
	RegisterDashboard(e)
	rec := get(t, e, http.MethodGet, "/")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "dashboard.js")
	require.NotContains(t, rec.Body.String(), "hls.light.min.js", "the dashboard plays nothing")
}

func TestAssetsServedWithTypesAndETags(t *testing.T) {
	e := echo.New()
	RegisterPlayer(e, PlayerConfig{Role: RoleOrigin})
	for path, ct := range map[string]string{
		"/webui/player.js":               "text/javascript",
		"/webui/style.css":               "text/css",
		"/webui/vendor/hls.light.min.js": "text/javascript",
	} {
		rec := get(t, e, http.MethodGet, path)
		require.Equal(t, http.StatusOK, rec.Code, path)
		require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), ct), "%s: %s", path, rec.Header().Get("Content-Type"))
		etag := rec.Header().Get("ETag")
		require.NotEmpty(t, etag)
		require.Equal(t, http.StatusNotModified, get(t, e, http.MethodGet, path, "If-None-Match", etag).Code, path)
		require.Equal(t, http.StatusOK, get(t, e, http.MethodHead, path).Code, path)
	}
	for _, path := range []string{"/webui/", "/webui/vendor", "/webui/player.html", "/webui/../webui.go", "/webui/nope.js"} {
		require.Equal(t, http.StatusNotFound, get(t, e, http.MethodGet, path).Code, path)
	}
}

// TestVendoredHLSJSMatchesPin checks that the embedded hls.js is the npm file hls.js.pin names
// (after the licence header line `make webui-update` puts in front), so nobody edits it by hand.
func TestVendoredHLSJSMatchesPin(t *testing.T) {
	pin := map[string]string{}
	f, err := os.Open("hls.js.pin")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(k, "#") {
			pin[k] = v
		}
	}
	require.NotEmpty(t, pin["version"])
	b, err := static.ReadFile("static/vendor/hls.light.min.js")
	require.NoError(t, err)
	header, body, ok := bytes.Cut(b, []byte("\n"))
	require.True(t, ok)
	require.Contains(t, string(header), "hls.js "+pin["version"])
	require.Contains(t, string(header), "Apache License 2.0")
	sum := sha256.Sum256(body)
	require.Equal(t, pin["sha256"], hex.EncodeToString(sum[:]), "static/vendor/hls.light.min.js is not the pinned npm file; run make webui-update")
	_, err = static.ReadFile("static/vendor/LICENSE.hls.js")
	require.NoError(t, err)
}
