package peer

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
)

// What a viewer is told when nothing plays: the node keeps the reason its local playlist has no
// segment yet (the tracker does not know the stream, the tracker does not answer), and stops with
// ErrWrongKey when the origin's own chunks fail the watch link's key.

// ErrWrongKey means the watch link's key is not the origin's: the chunks the origin's CDN path
// serves fail it, or the tracker has the stream only under another key. The link is wrong
// (mistyped, or for another origin), or the origin has changed its key since the link was made.
// Nothing will ever verify, so Run stops with it instead of banning every source in turn.
var ErrWrongKey = errors.New("the watch link's key is not the origin's")

// wrongKeySegments is how many different segments' chunks from the origin's CDN must fail the key,
// with none verifying in between, before the node gives up: one bad segment could be a proxy's
// mangled answer; the joiner's first fetches cover two segments within a second.
const wrongKeySegments = 2

// wrongKeyAnnounces is how many announces in a row must find the stream registered only under
// another key before the node gives up (a few seconds of backoff: long enough for a restarted
// origin to register its key again).
const wrongKeyAnnounces = 3

// diagnosis holds what the node knows of why it has nothing to play. It is written by the
// announce and fetch goroutines and read by the HTTP handlers, so it has its own lock.
type diagnosis struct {
	mu sync.Mutex
	// tracker is why the announce loop gets no neighbours ("" while announces succeed), and
	// retryAt when it tries again.
	tracker   string
	attempt   int
	retryAt   time.Time
	needsCDN  bool // the reason matters only while no CDN URL is known (the tracker is down)
	trackerPK string
	// badKeySeqs are segments whose CDN chunks failed the signature check since the last one
	// that verified.
	badKeySeqs map[uint64]bool
	fatal      error
	abort      func(error) // ends Run with the error; set by Run
}

// setTrackerTrouble records why the attempt-th announce in a row failed.
func (d *diagnosis) setTrackerTrouble(reason string, attempt int, needsCDN bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tracker, d.attempt, d.needsCDN = reason, attempt, needsCDN
	d.retryAt = time.Now().Add(time.Second)
}

// retryingIn records when the next announce goes out and returns the reason the last failed.
func (d *diagnosis) retryingIn(at time.Time) (reason string, attempt int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.retryAt = at
	return d.tracker, d.attempt
}

// trackerAnswered clears the tracker trouble and keeps the key the tracker has the stream
// registered with, for the wrong-key message.
func (d *diagnosis) trackerAnswered(originKey string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tracker, d.retryAt, d.needsCDN = "", time.Time{}, false
	if originKey != "" {
		d.trackerPK = originKey
	}
}

// notReady is the reason the local playlist gives a player while it has no segment, and how long
// the player should wait before asking again; "" when there is nothing to say (just joining).
func (n *Node) notReady(now time.Time) (string, time.Duration) {
	d := &n.diag
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fatal != nil {
		return d.fatal.Error(), 0
	}
	if d.tracker == "" || d.needsCDN && n.originHTTP.Load() != nil {
		return "", 0
	}
	wait := max(d.retryAt.Sub(now), time.Second)
	return d.tracker + "; retrying in " + strconv.Itoa(int(math.Ceil(wait.Seconds()))) + "s", wait
}

// cdnChunkChecked is told the outcome of verifying each chunk fetched from the origin's CDN
// path; after wrongKeySegments segments whose chunks fail the signature (and none that verifies)
// it stops the node with ErrWrongKey.
func (n *Node) cdnChunkChecked(seq uint64, err error) {
	d := &n.diag
	d.mu.Lock()
	if err == nil {
		clear(d.badKeySeqs)
		d.mu.Unlock()
		return
	}
	if !errors.Is(err, proto.ErrBadSignature) || d.fatal != nil {
		d.mu.Unlock()
		return
	}
	if d.badKeySeqs == nil {
		d.badKeySeqs = make(map[uint64]bool)
	}
	d.badKeySeqs[seq] = true
	enough := len(d.badKeySeqs) >= wrongKeySegments
	d.mu.Unlock()
	if enough {
		n.stopWrongKey("the origin's chunks fail it")
	}
}

// stopWrongKey ends the node with ErrWrongKey; evidence says how we know.
func (n *Node) stopWrongKey(evidence string) {
	d := &n.diag
	d.mu.Lock()
	if d.fatal != nil {
		d.mu.Unlock()
		return
	}
	fatal := n.wrongKeyError(evidence, d.trackerPK)
	d.fatal = fatal
	abort := d.abort
	d.mu.Unlock()
	n.log.Error("stopping: the watch link's key is not the origin's", "error", fatal,
		"origin_http", derefString(n.originHTTP.Load()))
	if abort != nil {
		abort(fatal)
	}
}

// fatalError is the error Run stops with, if any.
func (d *diagnosis) fatalError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fatal
}

func (n *Node) wrongKeyError(evidence, trackerKey string) error {
	facts := []string{"key=" + proto.FormatPublicKey(n.cfg.OriginKey)}
	if evidence != "" {
		facts = append(facts, evidence)
	}
	if pk, err := proto.ParsePublicKey(trackerKey); err == nil && !pk.Equal(ed25519.PublicKey(n.cfg.OriginKey)) {
		facts = append(facts, fmt.Sprintf("the tracker has stream %q under key %s", n.cfg.Stream, proto.FormatPublicKey(pk)))
	}
	return fmt.Errorf("%w (%s): the watch link is wrong, or the origin changed its key since the link was made; "+
		"ask the broadcaster for the current watch link (the origin lists it at GET /v1/streams)", ErrWrongKey, strings.Join(facts, "; "))
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
