package peer

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// A chunk sender's stream credit comes back creditBatch streams at a time, not one MAX_STREAMS
// per chunk: with all maxUniStreams streams used, creditBatch-1 finished ones give it nothing,
// the creditBatch-th gives it the whole batch.
func TestChunkStreamCreditComesBackInBatches(t *testing.T) {
	ln, addr := rawListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tr := &quic.Transport{Conn: loopbackUDP(t)}
	t.Cleanup(func() { tr.Close() })
	_, cliTLS, err := meshTLS(testStream, nil)
	require.NoError(t, err)
	udp, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	sender, err := tr.Dial(ctx, udp, cliTLS, meshQUICConfig())
	require.NoError(t, err)
	receiver, err := ln.Accept(ctx)
	require.NoError(t, err)

	open := func(timeout time.Duration) error {
		octx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		s, err := sender.OpenUniStreamSync(octx)
		if err != nil {
			return err
		}
		if _, err := s.Write([]byte("chunk")); err != nil {
			return err
		}
		return s.Close()
	}
	for range maxUniStreams {
		require.NoError(t, open(5*time.Second), "the first maxUniStreams streams need no credit back")
	}

	var credit streamCredit
	finish := func() {
		s, err := receiver.AcceptUniStream(ctx)
		require.NoError(t, err)
		_, err = io.ReadAll(s)
		require.NoError(t, err)
		credit.release(s)
	}
	for range creditBatch - 1 {
		finish()
	}
	require.ErrorIs(t, open(300*time.Millisecond), context.DeadlineExceeded,
		"a partial batch gives no credit back")

	finish()
	for i := range creditBatch {
		require.NoError(t, open(10*time.Second), "stream %d of the released batch", i)
	}
	require.ErrorIs(t, open(300*time.Millisecond), context.DeadlineExceeded,
		"the batch gave back exactly creditBatch streams")
}
