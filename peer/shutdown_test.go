package peer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRunReturnsWhenAConnectionCameUpAsTheLoopStopped pins the shutdown of a connection whose
// handshake finished just as the node stopped: its evConnUp sits in the event queue, unseen by the
// loop, while its writer waits on a connection the remote's keep-alives hold open. Run must close
// it and return anyway. The loop picks between the queued event and the cancelled context at
// random, so a few rounds make the unseen case all but certain.
func TestRunReturnsWhenAConnectionCameUpAsTheLoopStopped(t *testing.T) {
	o := newTestOrigin(t, 2)
	remote := startNode(t, o.peerConfig(t))
	for round := range 6 {
		n, err := New(o.peerConfig(t))
		require.NoError(t, err)
		dctx, dcancel := context.WithCancel(context.Background())
		n.dial(dctx, remote.Addr().String()) // hands evConnUp to the (not yet running) loop
		require.Len(t, n.events, 1, "round %d: the dial did not come up", round)
		dcancel()

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Run did not return after cancel", round)
		}
	}
}
