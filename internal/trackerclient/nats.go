package trackerclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/crowdsurf/crowdsurf/proto"
)

// RegisterStreamNATS registers (or renews) a stream by writing it into the tracker's streams
// bucket on the NATS server at natsURL; every tracker replica on that NATS sees it. Repeat it
// at least every proto.TrackerStreamTTL/3, or the registration expires. When no tracker has
// created the bucket yet it is created with the default TTL (file storage); a tracker that
// starts later adopts it.
func RegisterStreamNATS(ctx context.Context, natsURL string, reg proto.StreamRegistration) error {
	reg.ApplyDefaults()
	if err := reg.Validate(); err != nil {
		return err
	}
	val, err := json.Marshal(reg)
	if err != nil {
		return fmt.Errorf("register stream %q: %w", reg.Name, err)
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	nc, err := nats.Connect(natsURL, nats.Name("crowdsurf-origin"), nats.Timeout(timeout))
	if err != nil {
		return fmt.Errorf("register stream %q: connect to NATS at %s: %w", reg.Name, natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("register stream %q: %w", reg.Name, err)
	}
	kv, err := js.KeyValue(ctx, proto.TrackerStreamsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       proto.TrackerStreamsBucket,
			History:      1,
			TTL:          proto.TrackerStreamTTL,
			MaxValueSize: 8 << 10,
			Storage:      jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // a tracker created it meanwhile
			kv, err = js.KeyValue(ctx, proto.TrackerStreamsBucket)
		}
	}
	if err != nil {
		return fmt.Errorf("register stream %q: bucket %s: %w", reg.Name, proto.TrackerStreamsBucket, err)
	}
	if _, err := kv.Put(ctx, proto.TrackerStreamKey(reg.Name), val); err != nil {
		return fmt.Errorf("register stream %q: %w", reg.Name, err)
	}
	return nil
}
