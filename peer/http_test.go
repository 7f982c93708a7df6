package peer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// brokenListener fails every Accept with an error that is neither a close nor temporary, as a
// listener whose process ran out of file descriptors for good would.
type brokenListener struct {
	net.Listener
	err error
}

func (l brokenListener) Accept() (net.Conn, error) { return nil, l.err }

// TestRunEndsWithTheLocalHLSServersError pins issue 13: the local HLS server's error was written
// by its goroutine and returned before the join that orders it (a data race), and Run went on
// without the endpoint the player reads. A server that fails ends Run with its error.
func TestRunEndsWithTheLocalHLSServersError(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	cfg := testConfig(t, pub)
	acceptErr := errors.New("accept: no more file descriptors")
	cfg.HTTPListener = brokenListener{Listener: cfg.HTTPListener, err: acceptErr}
	n, err := New(cfg)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() { done <- n.Run(context.Background()) }() // nothing cancels it but the failure
	select {
	case err := <-done:
		require.ErrorIs(t, err, acceptErr)
		require.ErrorContains(t, err, "local HLS server")
	case <-time.After(10 * time.Second):
		t.Fatal("Run went on without its HLS server")
	}
}
