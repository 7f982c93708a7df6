package loadtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

// With half the viewers behind cone NATs, a third behind symmetric ones and the rest public, the
// tracker's observers and punch coordination still form a mesh: cone viewers punch through to
// each other and carry part of the stream, and the report says how.
func TestNATMixFormsTheMeshThroughPunches(t *testing.T) {
	mix, err := simnet.ParseNATMix("50%:cone,30%:symmetric,20%:public")
	require.NoError(t, err)
	cfg := Config{
		Peers: 12, Duration: 12 * time.Second, BitrateBps: 500_000, Segment: time.Second,
		Net: NetSim, Latency: 10 * time.Millisecond, Mode: ModeP2P, NAT: mix,
	}
	r, b, html := runLoadTest(t, cfg)
	requireSaneReport(t, r, cfg, b, html)
	require.NotNil(t, r.NAT)
	require.Equal(t, "50%:cone,30%:symmetric,20%:public", r.NAT.Mix)
	require.Equal(t, map[string]int{"cone": 6, "symmetric": 4, "public": 2}, r.NAT.Peers)
	require.Positive(t, r.NAT.PunchAttempts, "cone viewers were scheduled to punch")
	require.Positive(t, r.NAT.PunchSuccesses)
	require.Positive(t, r.NAT.Links.Punched)
	require.Positive(t, r.NAT.Links.OutgoingOnly, "NATed viewers dial the origin and public viewers")
	require.Positive(t, r.NAT.OffloadByClass["cone"], "cone viewers get bytes from peers: %+v", r.NAT)
	require.Positive(t, r.Offload)

	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	nat, ok := m["nat"].(map[string]any)
	require.True(t, ok, "the JSON report has a nat object")
	for _, k := range []string{"mix", "peers", "punch_attempts", "punch_successes", "punch_success", "punch_time_ms", "links", "offload_by_class"} {
		require.Contains(t, nat, k)
	}
}

func TestNATNeedsTheSimulatedNetwork(t *testing.T) {
	mix, err := simnet.ParseNATMix("100%:cone")
	require.NoError(t, err)
	_, err = New(Config{Net: NetUDP, NAT: mix})
	require.ErrorIs(t, err, ErrConfig)
}
