package registrar_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/tracker/registrar"
)

func startNATS(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func registration() proto.StreamRegistration {
	return proto.StreamRegistration{Name: "cam.1", QUICAddr: "127.0.0.1:9000", HTTPURL: "http://127.0.0.1:8080", Stripes: 4}
}

func TestRegisterRejectsInvalidRegistrationBeforeConnecting(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	r, err := registrar.New(registrar.Config{NATSURL: "nats://127.0.0.1:1", Key: priv})
	require.NoError(t, err)
	defer r.Close()
	reg := registration()
	reg.Stripes = 0
	require.ErrorIs(t, r.Register(context.Background(), reg), proto.ErrBadRegistration)
}

func TestRegisterSignsAndCreatesTheBucketWhenNoTrackerDidYet(t *testing.T) {
	ns := startNATS(t)
	_, priv, _ := ed25519.GenerateKey(nil)
	now := time.UnixMilli(1_790_000_000_000)
	r, err := registrar.New(registrar.Config{NATSURL: ns.ClientURL(), Key: priv, Now: func() time.Time { return now }})
	require.NoError(t, err)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, r.Register(ctx, registration()))
	now = now.Add(5 * time.Second)
	require.NoError(t, r.Register(ctx, registration()), "renewal works too")
	require.Equal(t, 1, ns.NumClients(), "one connection for every registration")

	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, registrar.StreamsBucket)
	require.NoError(t, err)
	pub := priv.Public().(ed25519.PublicKey)
	e, err := kv.Get(ctx, registrar.StreamKey("cam.1", pub))
	require.NoError(t, err)
	got, err := proto.ParseStreamRegistration(e.Value())
	require.NoError(t, err, "the stored registration verifies")
	require.Equal(t, proto.FormatPublicKey(pub), got.PublicKey)
	require.Equal(t, now.UnixMilli(), got.IssuedAtMs)
	status, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, proto.TrackerStreamTTL, status.TTL())
}

func TestStreamKeysAreDotSafeAndReversible(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	k := registrar.StreamKey("a.b", pub)
	require.Equal(t, "a=b."+proto.FormatPublicKey(pub), k)
	name, got, err := registrar.ParseStreamKey(k)
	require.NoError(t, err)
	require.Equal(t, "a.b", name)
	require.Equal(t, pub, got)
}
