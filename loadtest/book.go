package loadtest

import (
	"sync"
	"time"
)

// emitBook remembers when the source emitted each chunk of the recent segments.
type emitBook struct {
	mu    sync.RWMutex
	times map[uint64][]time.Time // seq -> emit time by chunk index
	count int64
}

// emitBookSegments is how many segments of history the book keeps: far more than any window.
const emitBookSegments = 64

func newEmitBook() *emitBook { return &emitBook{times: map[uint64][]time.Time{}} }

func (b *emitBook) record(seq uint64, index uint32, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count++
	ts := b.times[seq]
	for uint32(len(ts)) <= index {
		ts = append(ts, time.Time{})
	}
	ts[index] = at
	b.times[seq] = ts
	// Sequence numbers may start anywhere (the origin derives the first from the clock), so old
	// entries are found by ranging over the few held rather than by counting up.
	if len(b.times) > 2*emitBookSegments {
		for s := range b.times {
			if s+emitBookSegments < seq {
				delete(b.times, s)
			}
		}
	}
}

func (b *emitBook) lookup(seq uint64, index uint32) (time.Time, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	ts := b.times[seq]
	if uint32(len(ts)) <= index || ts[index].IsZero() {
		return time.Time{}, false
	}
	return ts[index], true
}

func (b *emitBook) chunks() int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.count
}

// samples collects float64 samples from many goroutines.
type samples struct {
	mu sync.Mutex
	v  []float64
}

func (s *samples) add(x float64) {
	s.mu.Lock()
	s.v = append(s.v, x)
	s.mu.Unlock()
}

func (s *samples) sorted() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedCopy(s.v)
}
