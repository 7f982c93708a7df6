package tracker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crowdsurf/crowdsurf/tracker/registrar"
)

// embeddedNATS is an in-process NATS server with JetStream, listening on 127.0.0.1 at a random
// port, or on no port at all (inProcess).
type embeddedNATS struct {
	srv       *server.Server
	tempDir   string // removed on shutdown; empty when DataDir holds the state
	inProcess bool
}

// startEmbeddedNATS starts the server. JetStream always needs a store directory, even for
// memory-only buckets, so without a DataDir a temporary one is used and removed again.
func startEmbeddedNATS(dataDir string, inProcess bool) (*embeddedNATS, error) {
	e := &embeddedNATS{inProcess: inProcess}
	storeDir := ""
	if dataDir != "" {
		storeDir = filepath.Join(dataDir, "nats")
		if err := os.MkdirAll(storeDir, 0o750); err != nil {
			return nil, fmt.Errorf("tracker: data dir: %w", err)
		}
	} else {
		dir, err := os.MkdirTemp("", "crowdsurf-tracker-nats-")
		if err != nil {
			return nil, fmt.Errorf("tracker: temporary NATS store: %w", err)
		}
		storeDir, e.tempDir = dir, dir
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "crowdsurf-tracker",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		DontListen: inProcess,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
		// Nothing but this machine talks to the embedded server; bound what it will hold.
		MaxPayload: 1 << 20,
	})
	if err != nil {
		e.removeTemp()
		return nil, fmt.Errorf("tracker: embedded NATS: %w", err)
	}
	e.srv = srv
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		e.shutdown()
		return nil, errors.New("tracker: embedded NATS server did not become ready within 10s")
	}
	return e, nil
}

// clientURL is the server's URL; empty when it has no port (inProcess).
func (e *embeddedNATS) clientURL() string {
	if e.inProcess {
		return ""
	}
	return e.srv.ClientURL()
}

// clientOptions are what a client needs besides the URL: the in-process connection, if any.
func (e *embeddedNATS) clientOptions() []nats.Option {
	if e.inProcess {
		return []nats.Option{nats.InProcessServer(e.srv)}
	}
	return nil
}

func (e *embeddedNATS) shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.removeTemp()
}

func (e *embeddedNATS) removeTemp() {
	if e.tempDir != "" {
		_ = os.RemoveAll(e.tempDir)
	}
}

// buckets opens (creating or updating) the two key-value buckets the swarm state lives in.
func openBuckets(ctx context.Context, js jetstream.JetStream, cfg Config, storage jetstream.StorageType) (peers, streams jetstream.KeyValue, err error) {
	peers, err = openBucket(ctx, js, cfg, jetstream.KeyValueConfig{
		Bucket:       peersBucket,
		Description:  "crowdsurf swarm members; entries expire when peers stop announcing",
		History:      1,
		TTL:          cfg.PeerTTL,
		MaxValueSize: 8 << 10,
		Storage:      storage,
		Replicas:     cfg.Replicas,
	})
	if err != nil {
		return nil, nil, err
	}
	streamsCfg := registrar.BucketConfig(cfg.StreamTTL, storage)
	streamsCfg.Replicas = cfg.Replicas
	streams, err = openBucket(ctx, js, cfg, streamsCfg)
	return peers, streams, err
}

// openBucket makes the bucket match kvc. When that fails (a bucket created elsewhere with another
// storage type cannot be changed) it uses the bucket as it is, so a fleet never fights over it.
func openBucket(ctx context.Context, js jetstream.JetStream, cfg Config, kvc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, kvc)
	// A cluster that is still forming (its nodes started together with the trackers) has no
	// peers to place a replicated bucket on yet: wait for it rather than fail the tracker.
	for delay := 100 * time.Millisecond; err != nil && clusterForming(err) && ctx.Err() == nil; delay = min(2*delay, 2*time.Second) {
		cfg.Logger.Info("NATS cluster not ready for the bucket yet; retrying", "bucket", kvc.Bucket, "in", delay, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		kv, err = js.CreateOrUpdateKeyValue(ctx, kvc)
	}
	if err == nil {
		return kv, nil
	}
	kv, bindErr := js.KeyValue(ctx, kvc.Bucket)
	if bindErr != nil {
		return nil, fmt.Errorf("tracker: bucket %s: %w", kvc.Bucket, err)
	}
	cfg.Logger.Warn("using existing bucket with another configuration", "bucket", kvc.Bucket, "error", err)
	return kv, nil
}

// clusterForming says whether a JetStream error means the cluster has no (or too few) peers
// online for a placement yet: no meta leader, or no suitable peers (err_code 10005).
func clusterForming(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.ErrorCode == jsNoSuitablePeers || api.Code == 503
	}
	return errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// jsNoSuitablePeers is JetStream's "no suitable peers for placement" error code.
const jsNoSuitablePeers jetstream.ErrorCode = 10005

// connectNATS connects to url with reconnects forever: a tracker outlives NATS restarts. After
// every reconnect it signals reconnected (without blocking), so the view watches the buckets
// afresh: a watcher's consumer may have lived on the server that went away.
func connectNATS(url string, extra []nats.Option, cfg Config, reconnected chan<- struct{}) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("crowdsurf-tracker"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				cfg.Logger.Warn("NATS disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			cfg.Logger.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted())
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}),
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("tracker: connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}
