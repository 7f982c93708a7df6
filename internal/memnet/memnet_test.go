package memnet_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/memnet"
)

// TestHTTPInBubbleLetsTimeJump is why the package exists: an HTTP server and client on a
// Network inside a synctest bubble wait durably, so a handler that takes ten simulated
// seconds answers at once in wall time, at exactly ten seconds of the bubble's clock.
func TestHTTPInBubbleLetsTimeJump(t *testing.T) {
	wallStart := time.Now()
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(memnet.Config{})
		ln, err := n.Listen()
		require.NoError(t, err)
		var seenRemote string
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seenRemote = r.RemoteAddr
			time.Sleep(10 * time.Second)
			_, _ = io.WriteString(w, "late hello")
		})}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()

		tr := &http.Transport{DialContext: n.DialContext}
		client := &http.Client{Transport: tr, Timeout: time.Minute}
		start := time.Now()
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, "late hello", string(body))
		require.Equal(t, 10*time.Second, time.Since(start), "simulated time passes only while everyone waits")

		host, _, err := net.SplitHostPort(seenRemote)
		require.NoError(t, err, "the server sees a TCP-looking remote address")
		require.Equal(t, memnet.DefaultIP.String(), host)

		tr.CloseIdleConnections()
		require.NoError(t, srv.Shutdown(context.Background()))
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	require.Less(t, time.Since(wallStart), 5*time.Second, "ten simulated seconds must not take ten real ones")
}

func TestDialWithoutListenerIsRefused(t *testing.T) {
	n := memnet.New(memnet.Config{})
	_, err := n.DialContext(context.Background(), "tcp", "10.254.0.1:10000")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)

	ln, err := n.Listen()
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	_, err = n.DialContext(context.Background(), "tcp", ln.Addr().String())
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "a closed listener frees its port")

	_, err = n.DialContext(context.Background(), "udp", ln.Addr().String())
	require.Error(t, err, "only stream networks are served")
}

func TestListenersGetDistinctAddressesAndAddrInUse(t *testing.T) {
	n := memnet.New(memnet.Config{})
	a, err := n.Listen()
	require.NoError(t, err)
	b, err := n.Listen()
	require.NoError(t, err)
	require.NotEqual(t, a.Addr().String(), b.Addr().String())
	_, err = n.ListenAddr(a.Addr().String())
	require.ErrorIs(t, err, memnet.ErrAddrInUse)
	require.NoError(t, n.Close())
	_, err = n.Listen()
	require.ErrorIs(t, err, memnet.ErrClosed)
	_, err = a.Accept()
	require.ErrorIs(t, err, net.ErrClosed, "closing the network closes its listeners")
}

// TestFullBacklogWaitsForContextOrClose: a dial beyond the backlog waits like a SYN queue does,
// and gives up when its context ends or the listener closes; connections left in the backlog
// are closed, so their clients read EOF instead of waiting for ever.
func TestFullBacklogWaitsForContextOrClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := memnet.New(memnet.Config{Backlog: 1})
		ln, err := n.Listen()
		require.NoError(t, err)
		queued, err := n.DialContext(context.Background(), "tcp", ln.Addr().String())
		require.NoError(t, err)

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = n.DialContext(ctx, "tcp", ln.Addr().String())
		require.ErrorIs(t, err, context.DeadlineExceeded)

		waiting := make(chan error, 1)
		go func() {
			_, err := n.DialContext(context.Background(), "tcp", ln.Addr().String())
			waiting <- err
		}()
		synctest.Wait()
		require.NoError(t, ln.Close())
		require.ErrorIs(t, <-waiting, syscall.ECONNREFUSED)

		_, err = queued.Read(make([]byte, 1))
		require.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe), "got %v", err)
	})
}
