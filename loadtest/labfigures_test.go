package loadtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHopTimeIsLatencyPlusAChunkOnTheMedianUplink(t *testing.T) {
	for _, tc := range []struct {
		name   string
		uplink string
		want   time.Duration
	}{
		// An 8 KiB frame at 3 Mbit/s is 21.8 ms on the wire, after 20 ms of latency.
		{"one rate", "3Mbit", 20*time.Millisecond + 21845333*time.Nanosecond},
		// Free riders forward nothing; of the rest, the median peer has 1 Mbit/s.
		{"mixed, free riders left out", "40%:1Mbit,20%:3Mbit,40%:0", 20*time.Millisecond + 65536*time.Microsecond},
		{"nobody uploads", "0", 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uplink, err := ParseUplink(tc.uplink)
			require.NoError(t, err)
			cfg, err := Config{Peers: 100, Uplink: uplink}.withDefaults()
			require.NoError(t, err)
			require.InDelta(t, tc.want, cfg.hopTime(), float64(10*time.Microsecond))
		})
	}
}

func TestLabTargetsSayWhichWereMissed(t *testing.T) {
	formed := SecondHalf{OriginCopies: 2.1, Offload: 0.997, DeliveryLatencyMs: LatencyQuantiles{P99: 600}}
	for _, tc := range []struct {
		name   string
		churn  float64
		half   SecondHalf
		missed []string
	}{
		{"a formed swarm meets all", 0, formed, nil},
		{"too many copies, slow, stalls", 0,
			SecondHalf{OriginCopies: 3, Offload: 0.997, Stalls: 2, DeliveryLatencyMs: LatencyQuantiles{P99: 1100}},
			[]string{"origin copies", "delivery p99", "delivery p99 in hops", "stalls"}},
		// 10 hops of 41.8 ms: 2.5 x is 1046 ms, so 900 ms misses only the absolute target.
		{"p99 within the hop budget but over 800 ms", 0,
			SecondHalf{OriginCopies: 2, Offload: 0.999, DeliveryLatencyMs: LatencyQuantiles{P99: 900}},
			[]string{"delivery p99"}},
		// Under churn only stalls and a looser offload count.
		{"churn: 99.2 % offload is enough", 10,
			SecondHalf{OriginCopies: 4, Offload: 0.992, DeliveryLatencyMs: LatencyQuantiles{P99: 2000}}, nil},
		{"churn: 98 % is not", 10, SecondHalf{Offload: 0.98}, []string{"offload"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Config{Peers: 1000, ChurnPct: tc.churn}.withDefaults()
			require.NoError(t, err)
			l := newLabFigures(&Report{SecondHalf: tc.half}, cfg, time.Minute, time.Hour, time.Hour)
			require.Equal(t, 10, l.LogHops)
			var missed []string
			for _, tg := range l.Targets {
				if !tg.Met {
					missed = append(missed, tg.Name)
				}
			}
			require.Equal(t, tc.missed, missed)
			require.Equal(t, 60.0, l.CPUPerSimulatedS)
		})
	}
}
