// Package webui is the browser face of crowdsurf: one player page (HTML, JS, CSS and a vendored
// hls.js) that both a peer and the origin serve, and the tracker's swarm dashboard. Everything is
// embedded, so a plain `go build` on a fresh clone serves it without npm.
package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
)

//go:embed static
var static embed.FS

// AssetPrefix is where the pages' scripts, styles and hls.js are served.
const AssetPrefix = "/webui/"

// Role says which server serves the player page, and so where the page finds its figures.
type Role string

const (
	// RolePeer: the page plays the peer's own stream and shows the peer's /stats.
	RolePeer Role = "peer"
	// RoleOrigin: the page lists /v1/streams at / and plays the CDN stream at /watch/NAME,
	// beside the origin's /stats.
	RoleOrigin  Role = "origin"
	roleTracker Role = "tracker"
)

// PlayerConfig configures the player page.
type PlayerConfig struct {
	Role Role
	// Stream is the stream a peer carries: its page plays it at / and at /watch/Stream.
	// The origin leaves it empty: / lists its streams.
	Stream string
	// TrackerURL, when set, puts a link to the tracker's swarm dashboard in the page's header.
	TrackerURL string
}

// pageData fills a page template; html/template escapes every field for its context.
type pageData struct {
	Role   Role
	Stream string
	// Carries is the one stream a peer carries ("" on the origin).
	Carries string
	// Dashboard links to the tracker's dashboard; "" shows no link.
	Dashboard string
	Title     string
	Assets    string
}

var pages = template.Must(template.ParseFS(static, "static/*.html"))

// securityHeaders keep the pages to their own scripts: hls.js feeds the <video> through a blob:
// URL (Media Source) and may run its transmuxer in a blob: worker.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; " +
		"img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; " +
		"object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
}

// RegisterPlayer serves the player page at / and /watch/:name, and its assets under AssetPrefix.
func RegisterPlayer(e *echo.Echo, cfg PlayerConfig) {
	page := func(c *echo.Context, stream string) error {
		title := "crowdsurf"
		if stream != "" {
			title = stream + " · crowdsurf"
		}
		data := pageData{Role: cfg.Role, Stream: stream, Carries: cfg.Stream, Title: title, Assets: AssetPrefix}
		if cfg.TrackerURL != "" {
			data.Dashboard = strings.TrimSuffix(cfg.TrackerURL, "/") + "/#" + url.PathEscape(stream)
		}
		return render(c, "player.html", data)
	}
	e.GET("/", func(c *echo.Context) error { return page(c, cfg.Stream) })
	e.GET("/watch/:name", func(c *echo.Context) error { return page(c, c.Param("name")) })
	registerAssets(e)
}

// RegisterDashboard serves the tracker's swarm dashboard at / and its assets under AssetPrefix.
// The dashboard reads /v1/streams and /v1/swarm/NAME.
func RegisterDashboard(e *echo.Echo) {
	e.GET("/", func(c *echo.Context) error {
		return render(c, "dashboard.html", pageData{Role: roleTracker, Title: "crowdsurf tracker", Assets: AssetPrefix})
	})
	registerAssets(e)
}

func render(c *echo.Context, name string, data pageData) error {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		return err
	}
	h := c.Response().Header()
	for k, v := range securityHeaders {
		h.Set(k, v)
	}
	h.Set("Cache-Control", "no-cache")
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// asset is one embedded file, with its ETag computed once.
type asset struct {
	body []byte
	etag string
	ct   string
}

var assets = loadAssets()

func loadAssets() map[string]asset {
	m := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".html") {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		m[strings.TrimPrefix(p, "static/")] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ct: ct}
		return nil
	})
	if err != nil {
		panic("webui: reading embedded assets: " + err.Error())
	}
	return m
}

func registerAssets(e *echo.Echo) {
	e.Match([]string{http.MethodGet, http.MethodHead}, AssetPrefix+"*", serveAsset)
}

// serveAsset answers from the embedded files only; there is no directory listing. Assets are
// revalidated by ETag, so a new build reaches browsers at once.
func serveAsset(c *echo.Context) error {
	a, ok := assets[c.Param("*")]
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound, "no such asset")
	}
	h := c.Response().Header()
	h.Set("Content-Type", a.ct)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(c.Response(), c.Request(), "", time.Time{}, bytes.NewReader(a.body))
	return nil
}
