package peer

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// A watch link with the wrong key: every chunk of the origin's CDN fails it. The peer says so once
// and stops, instead of banning every source and leaving its player a 404.
func TestWrongWatchLinkKeyStopsThePeerWithTheReason(t *testing.T) {
	o := newTestOrigin(t, 2)
	other := testIdentity(t).Public().(ed25519.PublicKey)
	cfg := testConfig(t, other) // the watch link names another key than the one the origin signs with
	cfg.OriginHTTP = o.http.URL
	cfg.Bootstrap = []string{o.root.Addr().String()}
	n, err := New(cfg)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := o.playAsync(ctx, 0, 40, nil)
	defer func() { cancel(); <-done }()

	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()
	select {
	case err := <-runErr:
		require.ErrorIs(t, err, ErrWrongKey)
		require.Contains(t, err.Error(), "watch link is wrong, or the origin changed its key")
		require.Contains(t, err.Error(), proto.FormatPublicKey(other), "the message names the key it checked against")
		require.Zero(t, n.Stats().SegmentsComplete, "nothing was accepted")
	case <-time.After(15 * time.Second):
		t.Fatalf("the peer did not stop; stats %+v", n.Stats())
	}
}

// fakeHTTPTracker is a tracker that lists the given streams and answers every announce 404, as
// the real tracker answers one for a stream it does not know.
func fakeHTTPTracker(t *testing.T, known ...proto.StreamStatus) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+proto.TrackerAnnouncePath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(proto.ErrorResponse{Error: "unknown stream"})
	})
	mux.HandleFunc("GET "+proto.TrackerStreamsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(append([]proto.StreamStatus{}, known...))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// A misspelt stream: the local playlist answers 503 at once, naming the streams the tracker
// knows, with Retry-After, instead of holding the player ten seconds for a bare error.
func TestUnknownStreamPlaylistAnswers503NamingTheTrackersStreams(t *testing.T) {
	tr := fakeHTTPTracker(t, namedStream("lobby", ""), namedStream("concert", ""))
	cfg := testConfig(t, testIdentity(t).Public().(ed25519.PublicKey))
	cfg.TrackerURL = tr.URL
	n := startNode(t, cfg)
	require.Eventually(t, func() bool {
		reason, _ := n.notReady(time.Now())
		return reason != ""
	}, 5*time.Second, 20*time.Millisecond, "the first announce fails")

	start := time.Now()
	resp, err := http.Get(n.HLSURL())
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Less(t, time.Since(start), firstPlaylistWait/2, "answered at once, not after the first-playlist wait")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After is whole seconds")
	require.GreaterOrEqual(t, retry, 1)
	require.LessOrEqual(t, retry, int(announceRetryMax/time.Second))
	var body map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Contains(t, body["error"], `stream "cam1" unknown at the tracker at `+tr.URL)
	require.Contains(t, body["error"], "it knows: concert, lobby")
	require.Regexp(t, `retrying in \d+s$`, body["error"])
}

// A tracker that does not answer, and no CDN URL to play from meanwhile: the player is told so.
func TestTrackerDownPlaylistAnswers503WithTheReason(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	cfg := testConfig(t, testIdentity(t).Public().(ed25519.PublicKey))
	cfg.TrackerURL = dead
	n := startNode(t, cfg)
	require.Eventually(t, func() bool {
		reason, _ := n.notReady(time.Now())
		return reason != ""
	}, 5*time.Second, 20*time.Millisecond)

	code, body := httpGetBody(t, n.HLSURL())
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "the tracker at "+dead+" does not answer")
}

func namedStream(name, key string) proto.StreamStatus {
	return proto.StreamStatus{StreamRegistration: proto.StreamRegistration{Name: name, PublicKey: key}}
}

// The tracker knows our stream, but under another key than the watch link's (the tracker keeps
// swarms by name and key): the name is right and the key is not. The player is told so, and after
// a few announces the peer stops with ErrWrongKey.
func TestStreamKnownOnlyUnderAnotherKeyStopsThePeerAsAWrongKey(t *testing.T) {
	registered := testIdentity(t).Public().(ed25519.PublicKey)
	tr := fakeHTTPTracker(t, namedStream(testStream, proto.FormatPublicKey(registered)))
	cfg := testConfig(t, testIdentity(t).Public().(ed25519.PublicKey))
	cfg.TrackerURL = tr.URL
	n, err := New(cfg)
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(t.Context()) }()

	require.Eventually(t, func() bool {
		reason, _ := n.notReady(time.Now())
		return reason != ""
	}, 5*time.Second, 10*time.Millisecond)
	code, body := httpGetBody(t, n.HLSURL())
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "registered at the tracker at "+tr.URL+" with another key ("+proto.FormatPublicKey(registered)+")")
	require.Contains(t, body, "the watch link is wrong, or the origin changed its key")

	select {
	case err := <-runErr:
		require.ErrorIs(t, err, ErrWrongKey)
		require.Contains(t, err.Error(), fmt.Sprintf("the tracker has stream %q under key %s", testStream, proto.FormatPublicKey(registered)))
	case <-time.After(15 * time.Second):
		t.Fatal("the peer kept announcing a key the tracker does not have")
	}
}
