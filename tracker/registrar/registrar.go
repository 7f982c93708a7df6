// Package registrar writes an origin's stream registrations straight into the tracker's NATS,
// and is the one home of the streams bucket's schema (name, keys, configuration), which the
// tracker opens with the same definitions. It is apart from the tracker so that an origin gets
// the writer without the tracker's HTTP server and embedded NATS server, and apart from
// internal/trackerclient so that a viewer's build does not link NATS at all.
package registrar

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crowdsurf/crowdsurf/proto"
)

// StreamsBucket is the NATS key-value bucket of stream registrations; every tracker replica on
// the NATS watches it. Values are proto.StreamRegistration JSON under StreamKey(name, key).
const StreamsBucket = "crowdsurf_streams"

// MaxValueSize bounds one entry of the bucket.
const MaxValueSize = 8 << 10

// BucketConfig is the streams bucket's configuration: entries expire unless re-registered.
func BucketConfig(ttl time.Duration, storage jetstream.StorageType) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       StreamsBucket,
		Description:  "crowdsurf streams registered by origins, signed by each stream's key; entries expire unless re-registered",
		History:      1,
		TTL:          ttl,
		MaxValueSize: MaxValueSize,
		Storage:      storage,
	}
}

// StreamKey is the key of the swarm (name, public key) in the bucket: "<name>.<key>". NATS keys
// use '.' as a token separator, so the dots a stream name may hold become '=', which no stream
// name holds; the key is in FormatPublicKey's spelling (base64url, no dots), so one swarm has one
// key whatever spelling a registration used.
func StreamKey(name string, pub ed25519.PublicKey) string {
	return NameToken(name) + "." + proto.FormatPublicKey(pub)
}

// NameToken is a stream name as one NATS key token.
func NameToken(name string) string { return strings.ReplaceAll(name, ".", "=") }

// ParseStreamKey reverses StreamKey.
func ParseStreamKey(key string) (name string, pub ed25519.PublicKey, err error) {
	tok, keyText, ok := strings.Cut(key, ".")
	if !ok {
		return "", nil, fmt.Errorf("stream key %q has no public key", key)
	}
	pub, err = proto.ParsePublicKey(keyText)
	if err != nil {
		return "", nil, err
	}
	return strings.ReplaceAll(tok, "=", "."), pub, nil
}

// Config configures a Registrar.
type Config struct {
	// NATSURL is the tracker's NATS server or cluster.
	NATSURL string
	// Options are further connect options; with nats.InProcessServer (a server in this process
	// that opens no port, see tracker.Tracker.NATSOptions) NATSURL may be empty.
	Options []nats.Option
	// Key signs every registration; its public half is the stream's key.
	Key ed25519.PrivateKey
	// Now is the clock that stamps registrations (default time.Now).
	Now func() time.Time
}

// Registrar keeps one NATS connection and writes signed registrations through it. Safe for
// concurrent use.
type Registrar struct {
	cfg Config

	mu sync.Mutex
	nc *nats.Conn
	kv jetstream.KeyValue
}

// New checks cfg; the connection is made by the first Register, so an origin starts while NATS
// is still down.
func New(cfg Config) (*Registrar, error) {
	if cfg.NATSURL == "" && len(cfg.Options) == 0 {
		return nil, errors.New("registrar: no NATS URL")
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("registrar: no signing key")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Registrar{cfg: cfg}, nil
}

// Register signs reg with the stream's key (setting PublicKey, IssuedAtMs and Signature) and
// writes it into the streams bucket. Repeat it at least every proto.TrackerStreamTTL/3, or the
// registration expires. When no tracker has created the bucket yet it is created with
// BucketConfig (file storage); a tracker that starts later adopts it.
func (r *Registrar) Register(ctx context.Context, reg proto.StreamRegistration) error {
	reg.Sign(r.cfg.Key, r.cfg.Now())
	if err := reg.Validate(); err != nil {
		return err
	}
	val, err := json.Marshal(reg)
	if err != nil {
		return fmt.Errorf("register stream %q: %w", reg.Name, err)
	}
	kv, err := r.bucket(ctx)
	if err != nil {
		return fmt.Errorf("register stream %q: %w", reg.Name, err)
	}
	if _, err := kv.Put(ctx, StreamKey(reg.Name, r.cfg.Key.Public().(ed25519.PublicKey)), val); err != nil {
		return fmt.Errorf("register stream %q: %w", reg.Name, err)
	}
	return nil
}

// bucket connects once and opens the bucket once; nats.go reconnects by itself afterwards.
func (r *Registrar) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kv != nil {
		return r.kv, nil
	}
	if r.nc == nil {
		timeout := 5 * time.Second
		if d, ok := ctx.Deadline(); ok {
			timeout = max(time.Until(d), time.Millisecond)
		}
		nc, err := nats.Connect(r.cfg.NATSURL, append([]nats.Option{nats.Name("crowdsurf-origin"), nats.Timeout(timeout),
			nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, r.cfg.Options...)...)
		if err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", r.cfg.NATSURL, err)
		}
		r.nc = nc
	}
	js, err := jetstream.New(r.nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, StreamsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, BucketConfig(proto.TrackerStreamTTL, jetstream.FileStorage))
		if errors.Is(err, jetstream.ErrBucketExists) { // a tracker created it meanwhile
			kv, err = js.KeyValue(ctx, StreamsBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", StreamsBucket, err)
	}
	r.kv = kv
	return kv, nil
}

// Close drops the connection.
func (r *Registrar) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nc != nil {
		r.nc.Close()
		r.nc, r.kv = nil, nil
	}
}
