package simnet_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

// receivedRate is the bit rate seen by the reader between its first and
// last arrival. The first packet is not counted: it marks the start.
func receivedRate(arrivals []arrival) float64 {
	var bytes int
	for _, a := range arrivals[1:] {
		bytes += a.size
	}
	span := arrivals[len(arrivals)-1].at.Sub(arrivals[0].at)
	return float64(bytes*8) / span.Seconds()
}

// offerLoad sends packets of size bytes from src to dst at offered bits/s
// for the given duration, in 10 ms bursts, as a congested application would.
func offerLoad(t *testing.T, src, dst *simnet.Host, offered int64, size int, d time.Duration) int {
	t.Helper()
	perTick := int(offered / 8 / 100 / int64(size))
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	var seq uint64
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for range perTick {
			seq++
			_, err := src.WriteTo(numbered(seq, size), dst.LocalAddr())
			require.NoError(t, err)
		}
		<-ticker.C
	}
	return int(seq)
}

func TestCappedLinkDeliversAtItsCap(t *testing.T) {
	const rate = 2_000_000
	cases := []struct {
		name     string
		sender   simnet.HostConfig
		receiver simnet.HostConfig
	}{
		{name: "uplink", sender: simnet.HostConfig{Uplink: rate}},
		{name: "downlink", receiver: simnet.HostConfig{Downlink: rate}},
	}
	for _, tc := range cases {
		// On the bubble's clock: on a loaded machine the sender's 10 ms ticks fell behind
		// and offered less than the cap, so nothing was dropped.
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := testNetwork(t)
				src := newHost(t, n, tc.sender)
				dst := newHost(t, n, tc.receiver)
				rec := record(dst)

				// Offer 1.5x the cap for 1.6 s: the queue stays full, so the
				// link is busy all along and drops the excess at its tail.
				sent := offerLoad(t, src, dst, rate*3/2, 1200, 1600*time.Millisecond)
				require.Eventually(t, func() bool {
					s := n.TotalStats()
					return s.PacketsReceived+s.PacketsDropped == uint64(sent)
				}, 5*time.Second, 10*time.Millisecond)
				require.Eventually(t, func() bool {
					return uint64(rec.count()) == n.TotalStats().PacketsReceived
				}, 5*time.Second, 10*time.Millisecond)

				got := receivedRate(rec.snapshot())
				t.Logf("%s: received %.3f Mbit/s at a %.3f Mbit/s cap", tc.name, got/1e6, float64(rate)/1e6)
				require.InDelta(t, rate, got, rate*0.15)

				s := n.TotalStats()
				require.Positive(t, s.DroppedQueue, "an overloaded link must drop at its tail")
				require.Equal(t, s.DroppedQueue, s.PacketsDropped, "no other drop cause is configured")
			})
		})
	}
}

func TestUplinkBufferBoundsABurst(t *testing.T) {
	n := testNetwork(t)
	const buffer = 32 << 10
	src := newHost(t, n, simnet.HostConfig{Uplink: 1_000_000, UplinkBuffer: buffer})
	dst := newHost(t, n, simnet.HostConfig{})

	// 200 KiB at once: only what fits in the buffer, plus the little that
	// drains while we write, can get through.
	const size = 1024
	for i := range 200 {
		_, err := src.WriteTo(numbered(uint64(i), size), dst.LocalAddr())
		require.NoError(t, err)
	}
	s := src.Stats()
	require.Equal(t, uint64(200), s.PacketsSent)
	require.GreaterOrEqual(t, s.DroppedQueue, uint64(200-buffer/size-8))
	require.Less(t, s.DroppedQueue, uint64(200-buffer/size+1), "a full buffer's worth must be queued")
	require.Eventually(t, func() bool {
		return dst.Stats().PacketsReceived == 200-s.DroppedQueue
	}, 5*time.Second, 10*time.Millisecond)
}

func TestDefaultBufferIsHundredMillisecondsOrAtLeast64KiB(t *testing.T) {
	n := testNetwork(t)
	slow := newHost(t, n, simnet.HostConfig{Uplink: 1_000_000, Downlink: 1_000_000})
	require.Equal(t, 64<<10, slow.Config().UplinkBuffer)
	require.Equal(t, 64<<10, slow.Config().DownlinkBuffer)
	fast := newHost(t, n, simnet.HostConfig{Uplink: 100_000_000})
	require.Equal(t, 100_000_000/8/10, fast.Config().UplinkBuffer)
	require.Equal(t, simnet.DefaultMTU, fast.Config().MTU)
}

// On the bubble's clock, so a loaded machine cannot stretch a round trip.
func TestRoundTripIsTwiceTheOneWayLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := testNetwork(t)
		a := newHost(t, n, simnet.HostConfig{Latency: 20 * time.Millisecond})
		b := newHost(t, n, simnet.HostConfig{Latency: 30 * time.Millisecond})
		const rtt = 2 * (20 + 30) * time.Millisecond

		// b echoes every datagram back.
		go func() {
			buf := make([]byte, 2048)
			for {
				k, from, err := b.ReadFrom(buf)
				if err != nil {
					return
				}
				if _, err := b.WriteTo(buf[:k], from); err != nil {
					return
				}
			}
		}()

		buf := make([]byte, 2048)
		var rtts []time.Duration
		for i := range 5 {
			start := time.Now()
			_, err := a.WriteTo(numbered(uint64(i), 100), b.LocalAddr())
			require.NoError(t, err)
			require.NoError(t, a.SetReadDeadline(time.Now().Add(5*time.Second)))
			k, from, err := a.ReadFrom(buf)
			require.NoError(t, err)
			require.Equal(t, 100, k)
			require.Equal(t, b.LocalAddr().String(), from.String())
			rtts = append(rtts, time.Since(start))
		}
		t.Logf("round trips: %v (expected %v)", rtts, rtt)
		for _, got := range rtts {
			require.Equal(t, rtt, got, "a packet arrives neither early nor late")
		}
	})
}

func TestLossMatchesConfiguredProbability(t *testing.T) {
	cases := []struct {
		name             string
		sender, receiver float64
		wantDelivered    float64
	}{
		{name: "sender link", sender: 0.2, wantDelivered: 0.8},
		{name: "receiver link", receiver: 0.2, wantDelivered: 0.8},
		{name: "both links", sender: 0.1, receiver: 0.1, wantDelivered: 0.81},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := testNetwork(t)
			src := newHost(t, n, simnet.HostConfig{Loss: tc.sender})
			dst := newHost(t, n, simnet.HostConfig{Loss: tc.receiver})
			const total = 5000
			for i := range total {
				_, err := src.WriteTo(numbered(uint64(i), 64), dst.LocalAddr())
				require.NoError(t, err)
			}
			require.Eventually(t, func() bool {
				return dst.Stats().PacketsReceived+src.Stats().DroppedLoss == total
			}, 5*time.Second, 10*time.Millisecond)
			got := float64(dst.Stats().PacketsReceived) / total
			t.Logf("delivered %.4f, want %.2f", got, tc.wantDelivered)
			// 5000 draws: one standard deviation is about 0.006.
			require.InDelta(t, tc.wantDelivered, got, 0.03)
			require.Equal(t, src.Stats().DroppedLoss, src.Stats().PacketsDropped)
		})
	}
}

func TestPacketsAboveTheMTUAreDropped(t *testing.T) {
	n := testNetwork(t)
	src := newHost(t, n, simnet.HostConfig{})
	dst := newHost(t, n, simnet.HostConfig{})
	narrow := newHost(t, n, simnet.HostConfig{MTU: 1000})
	rec := record(dst)
	narrowRec := record(narrow)

	for _, w := range []struct {
		to   *simnet.Host
		size int
	}{
		{dst, simnet.DefaultMTU},     // fits
		{dst, simnet.DefaultMTU + 1}, // sender's MTU
		{narrow, 1000},               // fits
		{narrow, 1001},               // receiver's MTU
	} {
		k, err := src.WriteTo(numbered(0, w.size), w.to.LocalAddr())
		require.NoError(t, err, "like UDP beyond the first hop, an oversized packet vanishes silently")
		require.Equal(t, w.size, k)
	}
	require.Eventually(t, func() bool { return rec.count() == 1 && narrowRec.count() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, simnet.DefaultMTU, rec.snapshot()[0].size)
	require.Equal(t, 1000, narrowRec.snapshot()[0].size)
	s := src.Stats()
	require.Equal(t, uint64(2), s.DroppedMTU)
	require.Equal(t, uint64(2), s.PacketsDropped)
	require.Equal(t, uint64(simnet.DefaultMTU+1+1001), s.BytesDropped)
}

func TestPacketsOnOneLinkArriveInOrder(t *testing.T) {
	n := testNetwork(t)
	src := newHost(t, n, simnet.HostConfig{Uplink: 50_000_000, Latency: 5 * time.Millisecond})
	dst := newHost(t, n, simnet.HostConfig{Latency: time.Millisecond})
	rec := record(dst)
	const total = 2000
	for i := range total {
		_, err := src.WriteTo(numbered(uint64(i), 200), dst.LocalAddr())
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return rec.count() == total }, 5*time.Second, 5*time.Millisecond)
	for i, a := range rec.snapshot() {
		require.Equal(t, uint64(i), a.seq)
		require.Equal(t, src.LocalAddr().String(), a.from.String())
	}
}

func TestUnknownDestinationIsDroppedSilently(t *testing.T) {
	n := testNetwork(t)
	src := newHost(t, n, simnet.HostConfig{})
	gone := newHost(t, n, simnet.HostConfig{})
	require.NoError(t, gone.Close())

	_, err := src.WriteTo([]byte("hello"), gone.LocalAddr())
	require.NoError(t, err)
	require.Equal(t, uint64(1), src.Stats().DroppedUnroutable)
}
