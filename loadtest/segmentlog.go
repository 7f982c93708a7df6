package loadtest

import (
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/crowdsurf/crowdsurf/segwindow"
)

// segmentLog records which media sequence numbers a player received in full, so the report can
// count the ones it skipped. It sits in the player's HTTP client; the player knows nothing of it.
type segmentLog struct {
	mu       sync.Mutex
	have     map[uint64]struct{}
	min, max uint64
}

func newSegmentLog() *segmentLog { return &segmentLog{have: map[uint64]struct{}{}} }

func (l *segmentLog) add(seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.have) == 0 {
		l.min, l.max = seq, seq
	}
	l.have[seq] = struct{}{}
	l.min, l.max = min(l.min, seq), max(l.max, seq)
}

// missing counts the sequence numbers between the first and the last segment received that
// never arrived.
func (l *segmentLog) missing() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.have) == 0 {
		return 0
	}
	return int(l.max-l.min+1) - len(l.have)
}

// loggingTransport notes every segment ("SEQ.ts"; for LL-HLS "SEQ.mp4" or any of its parts,
// "SEQ.PART.mp4") whose body was read to the end.
type loggingTransport struct {
	base http.RoundTripper
	log  *segmentLog
}

func (t *loggingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	name := path.Base(req.URL.Path)
	var seq uint64
	switch {
	case strings.HasSuffix(name, ".ts"):
		n, perr := strconv.ParseUint(strings.TrimSuffix(name, ".ts"), 10, 64)
		if perr != nil {
			return resp, nil
		}
		seq = n
	case strings.HasSuffix(name, ".mp4"):
		n, _, ok := segwindow.ParseFMP4URI(name)
		if !ok {
			return resp, nil
		}
		seq = n
	default:
		return resp, nil
	}
	resp.Body = &eofBody{ReadCloser: resp.Body, onEOF: func() { t.log.add(seq) }}
	return resp, nil
}

// eofBody calls onEOF once when the body has been read to its end without error.
type eofBody struct {
	io.ReadCloser
	onEOF func()
	done  bool
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.onEOF()
	}
	return n, err
}
