package tracker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Announces do not wait for NATS. A handler applies a changed (or refreshed) peer record to its
// own view at once, answers, and queues the record here; peerWriter publishes the queue in
// batches without waiting for each acknowledgement (JetStream's asynchronous publish), so a
// NATS round trip, several milliseconds on a loaded cluster, is paid once per batch instead of
// once per announce, and a peer that changes twice within a batch is written once. When the
// batch is stored, the view learns the revisions (so the watcher's echo of its own writes is
// skipped). A write that fails (NATS electing a new leader after a node went down) is queued
// again, after a pause, for as long as the view holds that record: other replicas must learn of
// the peer even if it never changes again.

// errWriteBacklog means the write queue is full: NATS has not kept up for a while.
var errWriteBacklog = errors.New("peer write backlog full")

// maxPendingWrites bounds the queue: distinct peers whose record waits for the next batch.
const maxPendingWrites = 1 << 16

// retryPause is how long the writer waits after a batch with failed writes before the next: NATS
// is failing over or gone, and a tight loop would not bring it back sooner.
const retryPause = 250 * time.Millisecond

// pendingWrite is a peer record queued for the peers bucket.
type pendingWrite struct {
	key    string // peerKey(id, peerID)
	id     swarmID
	peerID string
	fp     uint64 // the record's fingerprint, to match the result with the view's record
	val    []byte // the encoded proto.PeerRecord
}

// writeResult is a stored (rev > 0) or failed (err != nil) write.
type writeResult struct {
	pendingWrite
	rev uint64
	err error
}

// peerWriter publishes queued peer records to the peers bucket.
type peerWriter struct {
	js     jetstream.JetStream
	prefix string // the bucket's subject prefix, "$KV.<bucket>."
	// stored is told every batch's results and returns the failed writes still worth retrying;
	// it runs on the writer's goroutine.
	stored func([]writeResult) []pendingWrite

	mu      sync.Mutex
	pending map[string]pendingWrite // by key; a newer record of the same peer replaces the older
	wake    chan struct{}           // one token: the queue is not empty
}

func newPeerWriter(js jetstream.JetStream, bucket string, stored func([]writeResult) []pendingWrite) *peerWriter {
	return &peerWriter{
		js: js, prefix: "$KV." + bucket + ".", stored: stored,
		pending: make(map[string]pendingWrite),
		wake:    make(chan struct{}, 1),
	}
}

// enqueue queues w; errWriteBacklog when the queue is full.
func (p *peerWriter) enqueue(w pendingWrite) error {
	return p.put(w, true)
}

// put queues w, replacing a queued record of the same peer only if replace.
func (p *peerWriter) put(w pendingWrite, replace bool) error {
	p.mu.Lock()
	_, queued := p.pending[w.key]
	switch {
	case queued && !replace:
		p.mu.Unlock()
		return nil
	case !queued && len(p.pending) >= maxPendingWrites:
		p.mu.Unlock()
		return fmt.Errorf("%w: %d peers wait for NATS", errWriteBacklog, maxPendingWrites)
	}
	p.pending[w.key] = w
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

// run publishes batches until ctx ends; what is still queued then is dropped (its peers write
// again with their next announce to whichever tracker is up).
func (p *peerWriter) run(ctx context.Context) {
	next := make(map[string]pendingWrite)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		p.mu.Lock()
		batch := p.pending
		p.pending = next
		p.mu.Unlock()
		results := p.publish(ctx, batch)
		if ctx.Err() != nil {
			return
		}
		retry := p.stored(results)
		clear(batch)
		next = batch
		if len(retry) == 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryPause):
		}
		for _, w := range retry {
			_ = p.put(w, false) // a newer record of the peer may be queued meanwhile; a full queue drops it
		}
	}
}

// publish writes a batch and waits for its acknowledgements (each at most kvTimeout).
func (p *peerWriter) publish(ctx context.Context, batch map[string]pendingWrite) []writeResult {
	type inFlight struct {
		pendingWrite
		ack jetstream.PubAckFuture
		err error
	}
	flights := make([]inFlight, 0, len(batch))
	for _, w := range batch {
		f := inFlight{pendingWrite: w}
		f.ack, f.err = p.js.PublishAsync(p.prefix+w.key, w.val)
		flights = append(flights, f)
	}
	results := make([]writeResult, 0, len(flights))
	timeout := time.NewTimer(kvTimeout)
	defer timeout.Stop()
	expired := false // then the rest of the batch has had as long, and is not waited for
	for _, f := range flights {
		r := writeResult{pendingWrite: f.pendingWrite, err: f.err}
		if r.err == nil && !expired {
			select {
			case ack := <-f.ack.Ok():
				r.rev = ack.Sequence
			case err := <-f.ack.Err():
				r.err = err
			case <-timeout.C:
				expired = true
			case <-ctx.Done():
				r.err = ctx.Err()
			}
		}
		if r.err == nil && r.rev == 0 {
			select {
			case ack := <-f.ack.Ok():
				r.rev = ack.Sequence
			case err := <-f.ack.Err():
				r.err = err
			default:
				r.err = fmt.Errorf("no acknowledgement within %v", kvTimeout)
			}
		}
		if r.err != nil {
			r.err = fmt.Errorf("storing peer %s: %w", r.peerID, r.err)
		}
		results = append(results, r)
	}
	return results
}
