package trackerclient_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/trackerclient"
	"github.com/crowdsurf/crowdsurf/proto"
)

func registration() proto.StreamRegistration {
	return proto.StreamRegistration{
		Name: "live", PublicKey: base64.StdEncoding.EncodeToString(make([]byte, 32)),
		QUICAddr: "127.0.0.1:9000", HTTPURL: "http://127.0.0.1:8080",
	}
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

	_, err := c.Announce(ctx, proto.AnnounceRequest{PeerID: "p", Stream: "x", Addr: "127.0.0.1:1"})
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

func TestRegisterStreamNATSRejectsInvalidRegistrationBeforeConnecting(t *testing.T) {
	reg := registration()
	reg.PublicKey = "short"
	err := trackerclient.RegisterStreamNATS(context.Background(), "nats://127.0.0.1:1", reg)
	require.ErrorIs(t, err, proto.ErrBadRegistration)
}

func TestRegisterStreamNATSCreatesTheBucketWhenNoTrackerDidYet(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, trackerclient.RegisterStreamNATS(ctx, ns.ClientURL(), registration()))
	require.NoError(t, trackerclient.RegisterStreamNATS(ctx, ns.ClientURL(), registration()), "renewal works too")

	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, proto.TrackerStreamsBucket)
	require.NoError(t, err)
	e, err := kv.Get(ctx, proto.TrackerStreamKey("live"))
	require.NoError(t, err)
	got, err := proto.ParseStreamRegistration(e.Value())
	require.NoError(t, err)
	want := registration()
	want.ApplyDefaults()
	require.Equal(t, want, got)
	status, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, proto.TrackerStreamTTL, status.TTL())
}
