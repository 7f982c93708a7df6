package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// The single viewer's floor (make bench-peer PEER_FLAGS=-peer.floor): a bare quic-go receiver, a
// process of its own, that gets the same bytes as the measured viewer, in chunk-sized
// unidirectional streams over 4 of 9 connections, and reads them to the end: no verification, no
// HAVEs, no loop, no HLS. It runs in the measured window beside the swarm, so it sees the same
// machine, and the viewer's CPU is reported against it as the load test's --floor does for 100
// in-process peers. Both ends are this test binary run again (TestQuicFloorProcess).

const floorEnv = "CROWDSURF_QUIC_FLOOR" // "recv ADDR" or "send ADDR CONNS PARENTS CHUNKS_PER_S BYTES"

// floorQUICConfig is the mesh's (peer/tls.go, meshQUICConfig): the same windows, stream limits
// and keep-alives, so the floor's packets are the viewer's.
func floorQUICConfig() *quic.Config {
	return &quic.Config{
		KeepAlivePeriod:                2 * time.Second,
		MaxIdleTimeout:                 6 * time.Second,
		MaxIncomingUniStreams:          32,
		MaxIncomingStreams:             1,
		InitialStreamReceiveWindow:     proto.MaxChunkFrame,
		MaxStreamReceiveWindow:         proto.MaxChunkFrame,
		InitialConnectionReceiveWindow: 8 * proto.MaxChunkFrame,
		MaxConnectionReceiveWindow:     8 * proto.MaxChunkFrame,
	}
}

// TestQuicFloorProcess is one end of the floor when floorEnv says so; otherwise it does nothing.
// It runs until its process is killed.
func TestQuicFloorProcess(t *testing.T) {
	spec := strings.Fields(os.Getenv(floorEnv))
	if len(spec) == 0 {
		t.Skip("one end of make bench-peer's floor (-peer.floor), run by TestPeerProcessCost")
	}
	ctx := context.Background()
	switch spec[0] {
	case "recv":
		require.NoError(t, floorReceive(ctx, spec[1]))
	case "send":
		require.Len(t, spec, 6)
		conns, err1 := strconv.Atoi(spec[2])
		parents, err2 := strconv.Atoi(spec[3])
		rate, err3 := strconv.ParseFloat(spec[4], 64)
		size, err4 := strconv.Atoi(spec[5])
		for _, err := range []error{err1, err2, err3, err4} {
			require.NoError(t, err)
		}
		require.NoError(t, floorSend(ctx, spec[1], conns, parents, rate, size))
	default:
		t.Fatalf("%s=%q: recv or send", floorEnv, os.Getenv(floorEnv))
	}
}

func floorReceive(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	ln, err := (&quic.Transport{Conn: pc}).Listen(&tls.Config{Certificates: []tls.Certificate{floorCert()},
		NextProtos: []string{proto.ALPN}}, floorQUICConfig())
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			return err
		}
		go func() {
			for {
				s, err := c.AcceptUniStream(ctx)
				if err != nil {
					return
				}
				go func() { _, _ = io.Copy(io.Discard, s) }()
			}
		}()
	}
}

// floorSend dials conns connections, each from a socket of its own as a neighbour would, and opens
// one stream of size bytes per chunk, rate chunks a second, round the first parents connections.
func floorSend(ctx context.Context, addr string, conns, parents int, rate float64, size int) error {
	udp, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	var cs []*quic.Conn
	for range conns {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		c, err := (&quic.Transport{Conn: pc}).Dial(ctx, udp, &tls.Config{InsecureSkipVerify: true,
			NextProtos: []string{proto.ALPN}}, floorQUICConfig())
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	chunk := make([]byte, size)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		<-tick.C
		c := cs[i%parents]
		go func() {
			s, err := c.OpenUniStreamSync(ctx)
			if err != nil {
				return
			}
			_, _ = s.Write(chunk)
			_ = s.Close()
		}()
	}
}

func floorCert() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "floor"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startFloor runs the floor's two processes at bytesPerSec in streams of chunk bytes and returns the
// receiver's pid; both stop with ctx.
func startFloor(t *testing.T, ctx context.Context, bytesPerSec float64, chunk int) int {
	t.Helper()
	addr := freeAddr(t, "udp")
	run := func(cpu, spec string) *exec.Cmd {
		line := pinned(cpu, os.Args[0], "-test.run=^TestQuicFloorProcess$")
		cmd := exec.CommandContext(ctx, line[0], line[1:]...)
		cmd.Env = append(os.Environ(), floorEnv+"="+spec)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	recv := run("1", "recv "+addr)     // beside the measured viewer
	time.Sleep(500 * time.Millisecond) // the receiver's socket is open before the sender dials
	run("0", fmt.Sprintf("send %s %d %d %.2f %d", addr, 9, 4, bytesPerSec/float64(chunk), chunk))
	return recv.Process.Pid
}
