package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"golang.org/x/sync/errgroup"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/crowdsurf/crowdsurf/segwindow"
)

// The CDN path: chunks the swarm could not deliver in time are fetched from the origin's HTTP
// endpoint, each at its own immutable URL, and verified like any other chunk.

// fetchState is the CDN path's bookkeeping per segment: jobs running, when each last ended, how
// many it took, the requests spent against the segment's budget (cdnBudget), and which segments
// needed the CDN at all (for the accounting).
type fetchState struct {
	running  map[uint64]bool
	last     map[uint64]time.Time
	attempts map[uint64]int
	requests map[uint64]int
	fromHTTP map[uint64]bool
	// notFound counts the fetches in a row that ended at a 404 (ErrNotFound): the part fallback
	// backs off on them.
	notFound map[uint64]int
	// slices: how a joiner's fetch of its slice of a start segment went (startslice.go).
	slices map[uint64]sliceState
}

func newFetchState() fetchState {
	return fetchState{
		running:  make(map[uint64]bool),
		last:     make(map[uint64]time.Time),
		attempts: make(map[uint64]int),
		requests: make(map[uint64]int),
		fromHTTP: make(map[uint64]bool),
		notFound: make(map[uint64]int),
		slices:   make(map[uint64]sliceState),
	}
}

// prune forgets segments before low; running jobs report back and remove themselves.
func (f *fetchState) prune(low uint64) {
	old := func(seq uint64) bool { return seq < low }
	maps.DeleteFunc(f.last, func(seq uint64, _ time.Time) bool { return old(seq) })
	maps.DeleteFunc(f.attempts, func(seq uint64, _ int) bool { return old(seq) })
	maps.DeleteFunc(f.requests, func(seq uint64, _ int) bool { return old(seq) })
	maps.DeleteFunc(f.fromHTTP, func(seq uint64, _ bool) bool { return old(seq) })
	maps.DeleteFunc(f.notFound, func(seq uint64, _ int) bool { return old(seq) })
	maps.DeleteFunc(f.slices, func(seq uint64, _ sliceState) bool { return old(seq) })
}

// ErrNotFound means the origin does not have (yet, or any more) what we asked for.
var ErrNotFound = errors.New("not found at the origin")

const (
	fetchParallel = 4
	// maxTailChunks bounds how far past the highest known index a fetch walks looking for the
	// segment's last chunk.
	maxTailChunks = 4096
	maxPlaylist   = 1 << 20
)

// fetchJob asks for some chunks of one segment: the listed indexes, and when the segment's
// length is unknown, every index from tailFrom on until the last chunk.
type fetchJob struct {
	base, stream string
	seq          uint64
	indexes      []uint32
	tailFrom     int // -1: the chunk count is known
	// whole: we hold nothing of the segment, so ask for all its chunks in one request
	// (segwindow.AllChunks); if that fails, the indexes and tail are fetched one by one.
	whole bool
	// budget is the most HTTP requests the job may make (cdnBudget).
	budget int
	// untilPart: the tail walk stops once the segment holds part untilPart whole (the part an LL
	// player waits for; llfallback.go); < 0: at the segment's last chunk.
	untilPart int
	// startRest: a joiner's start chunks that no viewer neighbour holds (fetchStartRest), or
	// its slice of a start segment (slice.Count > 0, startslice.go).
	startRest bool
	// slice: fetch only this slice of the complete segment, in one request (segwindow.Slice).
	slice segwindow.Slice
}

// maxBundle bounds the body of a whole-segment fetch: a 6 s segment at 40 Mbit/s.
const maxBundle = 32 << 20

func chunkURL(base, stream string, seq uint64, index uint32) string {
	return base + segwindow.ChunkPath(stream, seq, index)
}

// fetchRun is one job in progress: its request budget, and the first error.
type fetchRun struct {
	n   *Node
	job fetchJob

	mu       sync.Mutex
	requests int
	firstErr error
	// notFound: the origin answered 404, so the chunks after this one do not exist (yet): the
	// series stops instead of asking for each in turn.
	notFound bool
}

// take reserves one request of the budget; false when it is spent or a 404 ended the series.
func (r *fetchRun) take() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.notFound || r.requests >= r.job.budget {
		return false
	}
	r.requests++
	r.n.stats.cdnRequests.Add(1)
	return true
}

func (r *fetchRun) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if errors.Is(err, ErrNotFound) {
		r.notFound = true
	}
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// runFetch runs one job and reports each verified chunk and the end to the loop.
func (n *Node) runFetch(ctx context.Context, job fetchJob) {
	r := &fetchRun{n: n, job: job}
	defer func() {
		n.emit(ctx, evFetchDone{seq: job.seq, requests: r.requests, err: r.firstErr, startRest: job.startRest,
			slice: job.slice.Count > 0})
	}()
	if job.slice.Count > 0 {
		if r.take() {
			if err := n.fetchSlice(ctx, job); err != nil {
				r.fail(err)
			}
		}
		return
	}
	if job.whole && r.take() {
		err := n.fetchWhole(ctx, job)
		if err == nil {
			return
		}
		n.log.Debug("whole-segment fetch failed; fetching chunks", "seq", job.seq, "error", err)
		if errors.Is(err, ErrNotFound) {
			r.fail(err) // the origin has no such segment: asking chunk by chunk would be no wiser
			return
		}
	}
	// Failures are collected in r (the first error, and whether a 404 ended the series), not
	// by the group: one chunk failing does not cancel the others.
	var g errgroup.Group
	g.SetLimit(fetchParallel)
	for _, idx := range job.indexes {
		if ctx.Err() != nil {
			break
		}
		if n.window.Has(job.seq, idx) {
			continue // arrived from the swarm meanwhile
		}
		if !r.take() {
			break
		}
		g.Go(func() error {
			if _, err := n.fetchChunk(ctx, job, idx); err != nil {
				r.fail(err)
			}
			return nil
		})
	}
	_ = g.Wait()
	if ctx.Err() != nil {
		return
	}
	if job.tailFrom >= 0 {
		for idx := uint32(job.tailFrom); ; idx++ {
			c, ok := n.window.Chunk(job.seq, idx)
			if !ok {
				if !r.take() {
					break
				}
				var err error
				if c, err = n.fetchChunk(ctx, job, idx); err != nil {
					r.fail(err)
					break
				}
			}
			if c.Last() || n.partWhole(job, idx) {
				break
			}
		}
	}
}

// partWhole says whether the segment of job holds the part the job is for, up to chunk idx.
func (n *Node) partWhole(job fetchJob, idx uint32) bool {
	if job.untilPart < 0 {
		return false
	}
	ends, _, ok := n.partsEndedThrough(job.seq, idx)
	return ok && ends > job.untilPart
}

func (n *Node) fetchChunk(ctx context.Context, job fetchJob, idx uint32) (*proto.Chunk, error) {
	url := chunkURL(job.base, job.stream, job.seq, idx)
	b, err := n.httpGet(ctx, url, proto.MaxChunkFrame)
	if err != nil {
		return nil, err
	}
	c, used, err := proto.ParseChunk(b)
	if err == nil && (used != len(b) || c.ID.Stream != job.stream || c.ID.Seq != job.seq || c.ID.Index != idx) {
		err = fmt.Errorf("%w: %s holds chunk %s", proto.ErrMalformed, url, c.ID)
	}
	if err == nil {
		err = n.verify(c)
		n.cdnChunkChecked(job.seq, err)
	}
	if err != nil {
		// Not a neighbour to ban: count it and let the playlist move on if it never verifies.
		n.countRejected()
		return nil, fmt.Errorf("fallback %s: %w", url, err)
	}
	n.emit(ctx, evChunk{c: c, size: len(b), at: time.Now()})
	return c, nil
}

// fetchWhole fetches every chunk of a segment in one body, verifies each and hands it to the loop.
// At a flash crowd every joiner needs a segment or two before any tree exists; one request per
// segment instead of one per chunk cut the CDN path's CPU (client and server) by an order of
// magnitude in the 200-peer simulation.
func (n *Node) fetchWhole(ctx context.Context, job fetchJob) error {
	return n.fetchFrames(ctx, job.base+segwindow.BundlePath(job.stream, job.seq), func(b []byte) ([]*proto.Chunk, error) {
		return segwindow.ParseBundle(b, job.stream, job.seq)
	})
}

// fetchSlice fetches a slice of a complete segment's chunks in one body: a joiner's share of a
// start segment in a crowd (startslice.go).
func (n *Node) fetchSlice(ctx context.Context, job fetchJob) error {
	return n.fetchFrames(ctx, job.base+segwindow.SlicePath(job.stream, job.seq, job.slice), func(b []byte) ([]*proto.Chunk, error) {
		return segwindow.ParseSlice(b, job.stream, job.seq, job.slice)
	})
}

// fetchFrames fetches a body of chunk frames (a bundle or a slice), parses it, verifies each
// chunk and hands it to the loop.
func (n *Node) fetchFrames(ctx context.Context, url string, parse func([]byte) ([]*proto.Chunk, error)) error {
	b, err := n.httpGet(ctx, url, maxBundle)
	if err != nil {
		return err
	}
	chunks, err := parse(b)
	if err != nil {
		n.countRejected()
		return fmt.Errorf("fallback %s: %w", url, err)
	}
	for _, c := range chunks {
		err := n.verify(c)
		n.cdnChunkChecked(c.ID.Seq, err)
		if err != nil {
			n.countRejected()
			return fmt.Errorf("fallback %s: %w", url, err)
		}
		n.emit(ctx, evChunk{c: c, size: c.Len(), at: time.Now()})
	}
	return nil
}

// httpGet fetches url and returns at most limit bytes of its body; a longer body is an error.
func (n *Node) httpGet(ctx context.Context, url string, limit int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s: %w", url, ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", url, resp.Status)
	}
	if resp.ContentLength > int64(limit) {
		return nil, fmt.Errorf("%s: %w: body of %d bytes, over %d", url, proto.ErrTooLarge, resp.ContentLength, limit)
	}
	if resp.ContentLength >= 0 {
		// One buffer of the announced size, read once: the chunks parsed from it alias it from
		// now on (window, pushes, HTTP), so it is the only copy of their bytes.
		b := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s: %w: body over %d bytes", url, proto.ErrTooLarge, limit)
	}
	return b, nil
}

// endedPollEvery is how often a viewer whose stream ended polls the origin's playlist for a new
// publishing session.
const endedPollEvery = 5 * time.Second

// playlistPoller reads the origin's playlist while the loop wants it (joining, no parent, or a
// silent mesh), so the node knows the live edge without any neighbour.
func (n *Node) playlistPoller(ctx context.Context) {
	interval := max(n.cfg.TargetDuration/4, 100*time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastPoll time.Time
	for {
		// After the stream ended, the mesh is silent by nature: a waiting viewer asks the origin
		// every endedPollEvery whether a new session began, not four times a segment.
		ended := n.window.Ended() && time.Since(lastPoll) < endedPollEvery
		if base := n.originHTTP.Load(); base != nil && n.wantPlaylist.Load() && !ended {
			lastPoll = time.Now()
			url := *base + segwindow.PlaylistPath(n.cfg.Stream)
			if b, err := n.httpGet(ctx, url, maxPlaylist); err == nil {
				if seqs := playlistSeqs(b); len(seqs) > 0 {
					n.emit(ctx, evPlaylist{seqs: seqs})
				}
			} else {
				n.log.Debug("origin playlist", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.originLearnt:
		}
	}
}

// playlistSeqs reads the media sequence numbers of the origin's playlist, decoded with
// hls-m3u8: the segment URIs the origin lists (segwindow.SegmentURI). A playlist that does not
// decode, or is not a media playlist, gives none. hls-m3u8 (v0.6.5) panics on some malformed
// tags (the player's FuzzMediaPlaylist found one): whoever answers for the origin must not crash
// the peer, so a panic is no playlist.
func playlistSeqs(b []byte) (seqs []uint64) {
	defer func() {
		if recover() != nil {
			seqs = nil
		}
	}()
	pl, kind, err := m3u8.DecodeFrom(bytes.NewReader(b), true)
	if err != nil || kind != m3u8.MEDIA {
		return nil
	}
	for _, s := range pl.(*m3u8.MediaPlaylist).GetAllSegments() {
		if s == nil {
			continue
		}
		if seq, ok := segwindow.ParseSegmentURI(s.URI); ok {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}
