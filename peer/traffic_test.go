package peer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// /stats counts what the control plane costs: two viewers of a playing origin exchange HAVEs and
// SUBSCRIBEs, and every message one wrote the other read; the QUIC packets of their connections
// are counted too (ACKs included, so more than the messages and chunks alone).
func TestStatsCountControlMessagesAndPackets(t *testing.T) {
	o := newTestOrigin(t, 2)
	a := startNode(t, o.peerConfig(t, o.root.Addr().String()))
	b := startNode(t, o.peerConfig(t, o.root.Addr().String(), a.Addr().String()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := o.playAsync(ctx, 0, 6, nil)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("origin did not finish playing")
	}
	require.Eventually(t, func() bool {
		sa, sb := a.Stats(), b.Stats()
		return sa.ControlSent["HAVE"] > 0 && sb.ControlReceived["HAVE"] > 0 && sb.PacketsReceived > 0 && sb.PacketsSent > 0
	}, 10*time.Second, 50*time.Millisecond, "a: %+v\nb: %+v", a.Stats(), b.Stats())
	sb := b.Stats()
	require.Positive(t, sb.ControlSent[proto.TypeSubscribe.String()], "b subscribed to its parents: %+v", sb.ControlSent)
	require.Greater(t, sb.PacketsReceived, uint64(sb.ControlReceived["HAVE"]), "chunks and ACKs come in packets too")
	for name := range sb.ControlSent {
		require.NotContains(t, name, "type(", "every type the protocol knows is counted under its name")
	}
}

func TestMessageCountsNameEveryTypeItSaw(t *testing.T) {
	var c messageCounts
	c.add(proto.TypeHave)
	c.add(proto.TypeHave)
	c.add(proto.TypeStatusSlots)
	c.add(proto.MessageType(200))
	require.Equal(t, map[string]int64{"HAVE": 2, proto.TypeStatusSlots.String(): 1, "type(200)": 1}, c.byName())
}
