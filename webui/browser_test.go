package webui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// browserDir is the node project that drives Chromium (playwright-core, pinned in its lock file).
const browserDir = "testdata/browser"

// report is what testdata/browser/run.mjs prints.
type report struct {
	Error string `json:"error"`
	Pages []struct {
		Name          string   `json:"name"`
		URL           string   `json:"url"`
		StartError    string   `json:"startError"`
		StartMs       int64    `json:"startMs"`
		Advanced      float64  `json:"advanced"`
		AdvanceMs     int64    `json:"advanceMs"`
		LiveLatency   *float64 `json:"liveLatency"`
		HLSLatency    *float64 `json:"hlsLatency"`
		LowLatency    bool     `json:"lowLatency"`
		Fatal         []any    `json:"fatal"`
		Errors        []any    `json:"errors"`
		PageErrors    []string `json:"pageErrors"`
		ConsoleErrors []string `json:"consoleErrors"`
		Figures       []string `json:"figures"`
		Hero          string   `json:"hero"`
		Status        string   `json:"status"`
		Shot          string   `json:"shot"`
	} `json:"pages"`
	Dashboard struct {
		DrawError     string   `json:"drawError"`
		Origins       int      `json:"origins"`
		Peers         int      `json:"peers"`
		Edges         int      `json:"edges"`
		PageErrors    []string `json:"pageErrors"`
		ConsoleErrors []string `json:"consoleErrors"`
		Figures       []string `json:"figures"`
		Hero          string   `json:"hero"`
		Shot          string   `json:"shot"`
	} `json:"dashboard"`
	OriginList struct {
		Error      string   `json:"error"`
		Streams    []string `json:"streams"`
		PageErrors []string `json:"pageErrors"`
	} `json:"originList"`
}

// TestBrowser plays the demo in a real browser: headless Chromium opens peer 0's page and the
// origin's page; each <video> must advance by 10 s of media within 12 s of starting, with no
// fatal hls.js error, no script error and no CSP violation; the tracker's dashboard must draw the
// origin and at least one peer, and the origin's / must link to the test card. With WEBUI_SCREENSHOTS=DIR it keeps docs-sized screenshots of the
// peer page and the dashboard there (make webui-screenshots).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test runs the whole demo and Chromium for about 30 s")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; `make deps` installs it (Debian's nodejs and npm)")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no Chromium at %s (set CHROMIUM to another path); `make deps` installs Debian's chromium", chromium)
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core")); err != nil {
		t.Skipf("playwright-core is not installed in webui/%s; `make deps` runs npm ci there", browserDir)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH: the test builds the crowdsurf binary with it")
	}
	shots := os.Getenv("WEBUI_SCREENSHOTS")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The demo runs as its own process, built without -race: a real deployment's speed, and the
	// race detector's cost stays out of the video's timing.
	bin := filepath.Join(t.TempDir(), "crowdsurf")
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/crowdsurf/crowdsurf")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	peers := 3
	if shots != "" {
		peers = 6 // a fuller picture for the docs
	}
	urls := startDemo(ctx, t, bin, peers)
	t.Logf("peer page %s, origin page %s, dashboard %s", urls.peer, urls.origin, urls.dashboard)

	args := []string{"run.mjs", "--peer", urls.peer, "--origin", urls.origin, "--dashboard", urls.dashboard, "--chromium", chromium}
	if shots != "" {
		require.NoError(t, os.MkdirAll(shots, 0o755))
		args = append(args, "--shots", shots)
	}
	run := exec.CommandContext(ctx, node, args...)
	run.Dir = browserDir
	var stderr strings.Builder
	run.Stderr = &stderr
	started := time.Now()
	if shots != "" {
		// One more viewer comes and goes, so the dashboard's picture shows a join and a leave.
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { visit(ctx, bin, urls.watchLink, 5*time.Second, 8*time.Second) })
	}
	stdout, err := run.Output()
	require.NoError(t, err, "node run.mjs: %s", stderr.String())
	t.Logf("browser run took %v", time.Since(started).Round(100*time.Millisecond))

	var r report
	require.NoError(t, json.Unmarshal(stdout, &r), "report: %s", stdout)
	require.Empty(t, r.Error, "the browser run failed")
	require.Len(t, r.Pages, 3)
	for _, p := range r.Pages {
		t.Logf("%s page: playing after %d ms, then %.2f s of media in %d ms; live latency %s (hls.js: %s); hero %s; %s",
			p.Name, p.StartMs, p.Advanced, p.AdvanceMs, seconds(p.LiveLatency), seconds(p.HLSLatency), p.Hero, strings.Join(p.Figures, ", "))
		require.Empty(t, p.StartError, "%s page %s; hls.js errors %v; console errors %q; status %q",
			p.Name, p.URL, p.Errors, p.ConsoleErrors, p.Status)
		require.GreaterOrEqual(t, p.Advanced, 10.0, "%s page: the video must advance by 10 s within 12 s", p.Name)
		require.Empty(t, p.Fatal, "%s page: fatal hls.js errors (all errors: %v)", p.Name, p.Errors)
		require.Empty(t, p.PageErrors, "%s page: script errors", p.Name)
		requireNoCSPViolation(t, p.Name, p.ConsoleErrors)
		require.NotEqual(t, "–", p.Hero, "%s page shows no headline figure", p.Name)
		if p.Name == "peer-ll" {
			// hls.js in lowLatencyMode on the peer's ll.m3u8 (LL-HLS: fMP4 parts, blocking reloads).
			require.True(t, p.LowLatency, "the ?ll=1 page must play in low-latency mode")
			require.NotNil(t, p.LiveLatency, "hls.js reported no playing date: the LL playlist lacks EXT-X-PROGRAM-DATE-TIME")
			require.Less(t, *p.LiveLatency, 3.0, "LL-HLS in the browser: live latency")
		}
	}
	d := r.Dashboard
	t.Logf("dashboard: %d origin, %d peers, %d parent lines; hero %s; %s", d.Origins, d.Peers, d.Edges, d.Hero, strings.Join(d.Figures, ", "))
	require.Empty(t, d.DrawError)
	require.Equal(t, 1, d.Origins, "the dashboard draws the origin once")
	require.GreaterOrEqual(t, d.Peers, 1, "the dashboard draws the peers")
	require.Empty(t, d.PageErrors, "dashboard: script errors")
	requireNoCSPViolation(t, "dashboard", d.ConsoleErrors)
	require.Empty(t, r.OriginList.Error)
	require.Contains(t, r.OriginList.Streams, "/watch/testcard", "the origin's / links to its stream")
	require.Empty(t, r.OriginList.PageErrors, "origin's stream list: script errors")

	if shots != "" {
		for _, name := range []string{"peer-page.png", "dashboard.png"} {
			fi, err := os.Stat(filepath.Join(shots, name))
			require.NoError(t, err)
			t.Logf("screenshot %s: %d bytes", fi.Name(), fi.Size())
			require.LessOrEqual(t, fi.Size(), int64(200<<10), "%s: keep the screenshots in docs/ small", name)
		}
	}
}

// visit runs one more peer from after until after+stay; the tracker forgets it a peer TTL later.
func visit(ctx context.Context, bin, watchLink string, after, stay time.Duration) {
	select {
	case <-time.After(after):
	case <-ctx.Done():
		return
	}
	p := exec.Command(bin, "peer", "--http", "127.0.0.1:0", "--mesh", "127.0.0.1:0", watchLink)
	if err := p.Start(); err != nil {
		return // the picture lacks the visitor; the test does not depend on it
	}
	select {
	case <-time.After(stay):
	case <-ctx.Done():
	}
	_ = p.Process.Signal(syscall.SIGINT)
	_ = p.Wait()
}

func requireNoCSPViolation(t *testing.T, page string, consoleErrors []string) {
	t.Helper()
	for _, e := range consoleErrors {
		require.NotContains(t, e, "Content Security Policy", "%s page", page)
	}
	if len(consoleErrors) > 0 {
		t.Logf("%s page console errors: %q", page, consoleErrors)
	}
}

type demoURLs struct{ peer, origin, dashboard, watchLink string }

var demoLine = regexp.MustCompile(`^\s+(peer 0\s+web player|origin web player|tracker dashboard|watch link)\s+((?:http|crowdsurf)://\S+)$`)

// startDemo runs `crowdsurf demo` on free loopback ports until the test ends and reads the
// pages' URLs from what it prints.
func startDemo(ctx context.Context, t *testing.T, bin string, peers int) demoURLs {
	t.Helper()
	demo := exec.Command(bin, "demo", "--peers", strconv.Itoa(peers),
		"--origin-http", "127.0.0.1:0", "--origin-rtsp", "127.0.0.1:0", "--origin-mesh", "127.0.0.1:0",
		"--tracker-http", "127.0.0.1:0", "--peer-http", "127.0.0.1:0")
	stdout, err := demo.StdoutPipe()
	require.NoError(t, err)
	logFile := filepath.Join(t.TempDir(), "demo.log")
	logOut, err := os.Create(logFile)
	require.NoError(t, err)
	demo.Stderr = logOut
	require.NoError(t, demo.Start())
	t.Cleanup(func() {
		// SIGINT drains as a user's Ctrl-C does; a demo that hangs is killed and reported.
		_ = demo.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- demo.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = demo.Process.Kill()
			<-done
			t.Errorf("crowdsurf demo did not stop within 15 s of SIGINT")
		}
		logOut.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("demo log:\n%s", b)
		}
	})

	found := make(chan demoURLs, 1)
	go func() {
		var u demoURLs
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			m := demoLine.FindStringSubmatch(sc.Text())
			switch {
			case m == nil:
			case strings.HasPrefix(m[1], "peer"):
				u.peer = m[2]
			case strings.HasPrefix(m[1], "origin"):
				u.origin = m[2]
			case strings.HasPrefix(m[1], "watch"):
				u.watchLink = m[2]
			default:
				u.dashboard = m[2]
			}
			if strings.HasPrefix(sc.Text(), "Ctrl-C stops") {
				found <- u
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case u := <-found:
		require.NotEmpty(t, u.peer, "demo printed no peer page")
		require.NotEmpty(t, u.origin, "demo printed no origin page")
		require.NotEmpty(t, u.dashboard, "demo printed no dashboard")
		return u
	case <-time.After(30 * time.Second):
		t.Fatalf("crowdsurf demo printed no URLs within 30 s (log in %s)", logFile)
	case <-ctx.Done():
		t.Fatal("context ended before the demo started")
	}
	return demoURLs{}
}

// seconds formats an optional figure from the browser.
func seconds(v *float64) string {
	if v == nil {
		return "–"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64) + " s"
}
