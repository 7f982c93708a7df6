package simnet_test

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

// testNetwork is a network closed when the test ends, with a fixed seed so
// loss decisions repeat from run to run.
func testNetwork(t testing.TB) *simnet.Network {
	t.Helper()
	n := simnet.New(simnet.Config{Seed: 42})
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n
}

func newHost(t testing.TB, n *simnet.Network, cfg simnet.HostConfig) *simnet.Host {
	t.Helper()
	h, err := n.NewHost(cfg)
	require.NoError(t, err)
	return h
}

// arrival is one datagram as a reader saw it.
type arrival struct {
	at   time.Time
	size int
	seq  uint64
	from net.Addr
}

// recorder reads a host until it closes and keeps every arrival.
type recorder struct {
	mu       sync.Mutex
	arrivals []arrival
	done     chan struct{}
}

func record(h *simnet.Host) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := h.ReadFrom(buf)
			if err != nil {
				return
			}
			a := arrival{at: time.Now(), size: n, from: from}
			if n >= 8 {
				a.seq = binary.BigEndian.Uint64(buf)
			}
			r.mu.Lock()
			r.arrivals = append(r.arrivals, a)
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) snapshot() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.arrivals...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.arrivals)
}

// numbered returns a datagram of size bytes starting with seq.
func numbered(seq uint64, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, seq)
	return b
}

func requireTimeout(t *testing.T, err error) {
	t.Helper()
	var nerr net.Error
	require.True(t, errors.As(err, &nerr), "error %v is not a net.Error", err)
	require.True(t, nerr.Timeout(), "error %v is not a timeout", err)
}
