package simnet_test

import (
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

func TestReadDeadlineTimesOutThenReadsAgain(t *testing.T) {
	n := testNetwork(t)
	a := newHost(t, n, simnet.HostConfig{})
	b := newHost(t, n, simnet.HostConfig{})
	buf := make([]byte, 100)

	const wait = 50 * time.Millisecond
	start := time.Now()
	require.NoError(t, b.SetReadDeadline(start.Add(wait)))
	_, _, err := b.ReadFrom(buf)
	requireTimeout(t, err)
	require.GreaterOrEqual(t, time.Since(start), wait)

	// A deadline in the past fails at once, even with data waiting.
	_, err = a.WriteTo([]byte("x"), b.LocalAddr())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.Stats().PacketsReceived == 1 }, time.Second, time.Millisecond)
	_, _, err = b.ReadFrom(buf)
	requireTimeout(t, err)

	// Clearing it makes the waiting packet readable.
	require.NoError(t, b.SetReadDeadline(time.Time{}))
	k, from, err := b.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "x", string(buf[:k]))
	require.Equal(t, a.LocalAddr(), from)
}

func TestMovingTheDeadlineUnblocksAWaitingReader(t *testing.T) {
	n := testNetwork(t)
	h := newHost(t, n, simnet.HostConfig{})
	errc := make(chan error, 1)
	go func() {
		_, _, err := h.ReadFrom(make([]byte, 10))
		errc <- err
	}()
	// quic-go stops its read loop exactly like this when a Transport closes.
	require.NoError(t, h.SetReadDeadline(time.Now()))
	select {
	case err := <-errc:
		requireTimeout(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("reader still blocked after the deadline moved to now")
	}
}

func TestCloseUnblocksReaderAndFailsWrites(t *testing.T) {
	n := testNetwork(t)
	h := newHost(t, n, simnet.HostConfig{})
	other := newHost(t, n, simnet.HostConfig{})
	errc := make(chan error, 1)
	go func() {
		_, _, err := h.ReadFrom(make([]byte, 10))
		errc <- err
	}()
	require.NoError(t, h.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("reader still blocked after Close")
	}
	_, err := h.WriteTo([]byte("x"), other.LocalAddr())
	require.ErrorIs(t, err, net.ErrClosed)
	require.NoError(t, h.Close(), "a second Close is harmless")
}

func TestWriteDeadlineInThePastFailsWrites(t *testing.T) {
	n := testNetwork(t)
	a := newHost(t, n, simnet.HostConfig{})
	b := newHost(t, n, simnet.HostConfig{})
	require.NoError(t, a.SetWriteDeadline(time.Now().Add(-time.Second)))
	_, err := a.WriteTo([]byte("x"), b.LocalAddr())
	requireTimeout(t, err)
	require.NoError(t, a.SetWriteDeadline(time.Time{}))
	_, err = a.WriteTo([]byte("x"), b.LocalAddr())
	require.NoError(t, err)
}

func TestHostsGetDistinctAddressesAndExplicitOnesAreChecked(t *testing.T) {
	n := testNetwork(t)
	seen := map[string]bool{}
	for range 600 { // crosses two /24 boundaries
		h := newHost(t, n, simnet.HostConfig{})
		addr := h.Addr()
		require.True(t, addr.Addr().Is4())
		require.Equal(t, byte(10), addr.Addr().As4()[0])
		require.False(t, seen[addr.String()], "duplicate address %s", addr)
		seen[addr.String()] = true
	}
	first := n.Hosts()[0]
	_, err := n.NewHost(simnet.HostConfig{Addr: first.Addr()})
	require.ErrorIs(t, err, simnet.ErrAddrInUse)

	_, err = n.NewHost(simnet.HostConfig{Loss: 1})
	require.Error(t, err)
}

func TestNetworkCloseStopsEveryGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	n := simnet.New(simnet.Config{})
	var hosts []*simnet.Host
	for range 50 {
		h, err := n.NewHost(simnet.HostConfig{Uplink: 1_000_000, Latency: 10 * time.Millisecond})
		require.NoError(t, err)
		hosts = append(hosts, h)
	}
	readers := make(chan error, len(hosts))
	for _, h := range hosts {
		require.NoError(t, h.SetReadDeadline(time.Now().Add(time.Hour))) // a pending timer
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := h.ReadFrom(buf); err != nil {
					readers <- err
					return
				}
			}
		}()
	}
	for i, h := range hosts { // leave packets in flight
		_, err := h.WriteTo(make([]byte, 1000), hosts[(i+1)%len(hosts)].LocalAddr())
		require.NoError(t, err)
	}
	require.NoError(t, n.Close())
	for range hosts {
		require.True(t, errors.Is(<-readers, net.ErrClosed))
	}
	_, err := n.NewHost(simnet.HostConfig{})
	require.ErrorIs(t, err, simnet.ErrClosed)
	// +1: Eventually runs each check on a goroutine of its own.
	if !assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+1 }, 5*time.Second, 10*time.Millisecond) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines before %d, now %d:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}
