package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	rpprof "runtime/pprof"
	"time"
)

// debugFlagHelp explains --debug-addr; the same words on every command that has it.
const debugFlagHelp = "serve Go's profiler (net/http/pprof: /debug/pprof/) on this loopback `ADDR`, e.g. 127.0.0.1:6060;\n" +
	"empty = off. It is a listener of its own, never the HLS endpoint: the profiles show the process's\n" +
	"internals, so only a loopback address is accepted. E.g. go tool pprof http://ADDR/debug/pprof/profile?seconds=30"

// ErrDebugNotLoopback means --debug-addr named an address other hosts could reach.
var ErrDebugNotLoopback = errors.New("--debug-addr must be a loopback address (127.0.0.1:PORT or [::1]:PORT)")

// listenDebug opens the profiler's listener: a loopback address only, since anyone who reaches
// it can read the process's memory layout and make it spend CPU on profiles.
func listenDebug(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%w, not %q", ErrDebugNotLoopback, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr %s: %w", addr, err)
	}
	return ln, nil
}

// serveDebug serves net/http/pprof on ln until ctx ends, then closes the server and returns. The
// handlers are on a mux of their own (importing net/http/pprof also registers them on
// http.DefaultServeMux, which nothing here serves).
func serveDebug(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		// A profile being taken is cut short: the process is leaving.
		_ = srv.Close()
	}()
	err := srv.Serve(ln)
	cancel()
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("debug server: %w", err)
}

// startCPUProfile writes a CPU profile of the whole process to file (--cpuprofile) until stop is
// called: for a run from start to exit, where --debug-addr is for a window of a running one.
func startCPUProfile(file string) (stop func() error, err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := rpprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		rpprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return nil
	}, nil
}
