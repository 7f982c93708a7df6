package tracker

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/crowdsurf/crowdsurf/internal/runonce"
	"github.com/crowdsurf/crowdsurf/proto"
)

func listenUDP(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startObserver runs an observer on cfg.Conns (two fresh loopback sockets when empty) until the
// test ends, and checks that Run then returns nil.
func startObserver(t *testing.T, cfg ObserverConfig) *Observer {
	t.Helper()
	if len(cfg.Conns) == 0 {
		cfg.Conns = []net.PacketConn{listenUDP(t), listenUDP(t)}
	}
	o, err := NewObserver(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("observer Run did not return after its context ended")
		}
	})
	return o
}

// readBinding waits up to wait for one datagram; ok is false if none came.
func readBinding(t *testing.T, c net.PacketConn, wait time.Duration) (proto.BindingMessage, bool) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		return nil, false
	}
	m, _, err := proto.ParseBinding(buf[:n])
	require.NoError(t, err)
	return m, true
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func TestObserverAnswersEachPortWithTheSourceAddress(t *testing.T) {
	o := startObserver(t, ObserverConfig{})
	client := listenUDP(t)
	for i, conn := range o.cfg.Conns {
		req := &proto.BindingRequest{TxID: proto.TxID{byte(i), 42}}
		_, err := client.WriteTo(req.Append(nil), conn.LocalAddr())
		require.NoError(t, err)
		m, ok := readBinding(t, client, 5*time.Second)
		require.True(t, ok, "no answer from %s", conn.LocalAddr())
		require.Equal(t, &proto.BindingResponse{
			TxID:     req.TxID,
			Observed: client.LocalAddr().(*net.UDPAddr).AddrPort(),
		}, m)
	}
}

func TestObserverAnswersOnlyRequests(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := startObserver(t, ObserverConfig{Registry: reg})
	client := listenUDP(t)
	to := o.cfg.Conns[0].LocalAddr()
	for _, junk := range [][]byte{
		(&proto.Punch{}).Append(nil),
		(&proto.BindingResponse{Observed: netip.MustParseAddrPort("192.0.2.1:1")}).Append(nil),
		{0xc0, 0, 0, 0, 1},
		{},
	} {
		_, err := client.WriteTo(junk, to)
		require.NoError(t, err)
	}
	_, ok := readBinding(t, client, 200*time.Millisecond)
	require.False(t, ok, "only a BINDING_REQUEST gets an answer")
	require.Eventually(t, func() bool {
		return counterValue(t, o.answers.WithLabelValues("malformed")) == 4
	}, 5*time.Second, 10*time.Millisecond)
}

func TestObserverLimitsEachSource(t *testing.T) {
	o := startObserver(t, ObserverConfig{RateLimit: rate.Every(time.Hour), RateBurst: 2})
	client := listenUDP(t)
	for range 5 {
		_, err := client.WriteTo((&proto.BindingRequest{}).Append(nil), o.cfg.Conns[0].LocalAddr())
		require.NoError(t, err)
	}
	answers := 0
	for {
		if _, ok := readBinding(t, client, 300*time.Millisecond); !ok {
			break
		}
		answers++
	}
	require.Equal(t, 2, answers)
	require.Eventually(t, func() bool {
		return counterValue(t, o.answers.WithLabelValues("rate_limited")) == 3
	}, 5*time.Second, 10*time.Millisecond)
}

func TestObserverNeedsASocketAndRunsOnce(t *testing.T) {
	_, err := NewObserver(ObserverConfig{})
	require.ErrorIs(t, err, ErrNoObserverConns)

	o, err := NewObserver(ObserverConfig{Conns: []net.PacketConn{listenUDP(t)}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, o.Run(ctx))
	require.ErrorIs(t, o.Run(ctx), runonce.ErrRunTwice)
}
