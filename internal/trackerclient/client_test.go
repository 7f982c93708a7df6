package trackerclient_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
)

func registration() proto.StreamRegistration {
	r := proto.StreamRegistration{
		Name: "live", QUICAddr: "127.0.0.1:9000", HTTPURL: "http://127.0.0.1:8080", Stripes: 4,
	}
	r.Sign(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), time.UnixMilli(1_790_000_000_000))
	return r
}

func TestErrorsCarryTheServersMessage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case proto.TrackerAnnouncePath:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(proto.ErrorResponse{Error: `unknown stream "x"`})
		default:
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("upstream down"))
		}
	}))
	defer srv.Close()
	c := &trackerclient.Client{BaseURL: srv.URL + "/"}
	ctx := context.Background()

	_, err := c.Announce(ctx, proto.AnnounceRequest{PeerState: proto.PeerState{PeerID: "p", Stream: "x", Addr: "127.0.0.1:1"}})
	require.ErrorIs(t, err, trackerclient.ErrUnknownStream)
	require.NotErrorIs(t, err, trackerclient.ErrRateLimited)
	require.Contains(t, err.Error(), `unknown stream "x"`)

	err = c.RegisterStream(ctx, registration())
	require.ErrorIs(t, err, trackerclient.ErrUnavailable)
	require.Contains(t, err.Error(), "upstream down", "a non-JSON error body is still reported")
}

func TestRequestsSendJSON(t *testing.T) {
	var (
		got                proto.StreamRegistration
		method, path, auth string
		decodeErr          error
	)
	// The handler only records; the test goroutine asserts.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, path, auth = r.Method, r.URL.Path, r.Header.Get("Authorization")
		decodeErr = json.NewDecoder(r.Body).Decode(&got)
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := &trackerclient.Client{BaseURL: srv.URL, RegisterToken: "tok"}
	require.NoError(t, c.RegisterStream(context.Background(), registration()))
	require.NoError(t, decodeErr)
	require.Equal(t, http.MethodPost, method)
	require.Equal(t, proto.TrackerStreamsPath, path)
	require.Equal(t, "Bearer tok", auth)
	require.Equal(t, registration(), got)
}

func TestStreamAsksForTheWatchLinksKey(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(proto.ErrorResponse{Error: "several keys"})
	}))
	defer srv.Close()
	c := &trackerclient.Client{BaseURL: srv.URL}
	_, err := c.Stream(context.Background(), "live", "")
	require.ErrorIs(t, err, trackerclient.ErrConflict)
	require.Empty(t, query)
	_, _ = c.Stream(context.Background(), "live", "AAA-_")
	require.Equal(t, "key=AAA-_", query)
}
