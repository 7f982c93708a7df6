package loadtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSegmentLogCountsSkippedSequenceNumbers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/9.ts") {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, strings.Repeat("x", 4096))
	}))
	defer srv.Close()
	log := newSegmentLog()
	client := &http.Client{Transport: &loggingTransport{base: http.DefaultTransport, log: log}}
	get := func(path string, readAll bool) {
		resp, err := client.Get(srv.URL + path)
		require.NoError(t, err)
		if readAll {
			_, err = io.Copy(io.Discard, resp.Body)
			require.NoError(t, err)
		} else {
			_, _ = resp.Body.Read(make([]byte, 10))
		}
		require.NoError(t, resp.Body.Close())
	}

	require.Zero(t, log.missing(), "nothing received, nothing missing")
	get("/live/s/index.m3u8", true) // playlists are not segments
	get("/live/s/5.ts", true)
	get("/live/s/6.ts", true)
	get("/live/s/7.ts", false) // cut short: not received
	get("/live/s/9.ts", true)  // 404: not received
	get("/live/s/10.ts", true)
	get("/live/s/6.ts", true) // a retry counts once
	require.Equal(t, 3, log.missing(), "7, 8 and 9 never arrived between 5 and 10")
}

func TestSegmentLogReadsLowLatencyNames(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "x")
	}))
	defer srv.Close()
	log := newSegmentLog()
	client := &http.Client{Transport: &loggingTransport{base: http.DefaultTransport, log: log}}
	for _, path := range []string{"/live/s/init.mp4", "/live/s/4.mp4", "/live/s/5.3.mp4", "/live/s/8.0.mp4", "/live/s/ll.m3u8"} {
		resp, err := client.Get(srv.URL + path)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
	}
	// A whole segment (4) or any part of one (5, 8) counts it received; the init segment and
	// the playlist are not segments.
	require.Equal(t, 2, log.missing(), "6 and 7 never arrived between 4 and 8")
}
