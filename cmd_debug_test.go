package main

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDebugAddrTakesOnlyLoopbackAddresses(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:6060", "[::]:0", "example.com:6060"} {
		_, err := listenDebug(addr)
		require.ErrorIs(t, err, ErrDebugNotLoopback, addr)
	}
	_, err := listenDebug("127.0.0.1")
	require.Error(t, err, "no port")
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		ln, err := listenDebug(addr)
		require.NoError(t, err, addr)
		require.NoError(t, ln.Close())
	}
}

// The profiler answers while the command runs, and serveDebug returns, its listener closed, once
// the command's context ends (nothing is left running after the peer stops).
func TestDebugServerServesPprofUntilItsContextEnds(t *testing.T) {
	ln, err := listenDebug("127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveDebug(ctx, ln) }()
	url := "http://" + ln.Addr().String() + "/debug/pprof/"

	resp, err := http.Get(url + "goroutine?debug=1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "goroutine profile:")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("serveDebug did not return after its context ended")
	}
	_, err = http.Get(url)
	require.Error(t, err, "the listener is closed")
}
