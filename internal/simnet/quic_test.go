package simnet_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

const testALPN = "simnet-test"

func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "simnet"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"simnet"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{testALPN},
	}
	client = &tls.Config{RootCAs: pool, ServerName: "simnet", NextProtos: []string{testALPN}}
	return server, client
}

// TestQUICTransfersDataOverSimnet runs a real quic-go handshake and a 1 MiB
// stream over capped, lossy, delayed links, with the hosts as the
// Transports' plain net.PacketConns.
func TestQUICTransfersDataOverSimnet(t *testing.T) {
	n := testNetwork(t)
	link := simnet.HostConfig{Uplink: 20_000_000, Downlink: 50_000_000, Latency: 10 * time.Millisecond, Loss: 0.01}
	serverHost := newHost(t, n, link)
	clientHost := newHost(t, n, link)
	serverTLS, clientTLS := testTLS(t)
	qconf := &quic.Config{MaxIdleTimeout: 10 * time.Second}

	serverTr := &quic.Transport{Conn: serverHost}
	clientTr := &quic.Transport{Conn: clientHost}
	ln, err := serverTr.Listen(serverTLS, qconf)
	require.NoError(t, err)

	payload := make([]byte, 1<<20)
	_, err = rand.Read(payload)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	// The server reads the whole stream, then acks so the client knows.
	type result struct {
		data []byte
		err  error
	}
	served := make(chan result, 1)
	go func() {
		data, err := func() ([]byte, error) {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return nil, err
			}
			str, err := conn.AcceptStream(ctx)
			if err != nil {
				return nil, err
			}
			data, err := io.ReadAll(str)
			if err != nil {
				return nil, err
			}
			if _, err := str.Write([]byte("ok")); err != nil {
				return nil, err
			}
			return data, str.Close()
		}()
		served <- result{data, err}
	}()

	start := time.Now()
	conn, err := clientTr.Dial(ctx, serverHost.LocalAddr(), clientTLS, qconf)
	require.NoError(t, err)
	handshake := time.Since(start)
	require.GreaterOrEqual(t, handshake, 40*time.Millisecond, "a handshake takes at least one 40 ms round trip")

	str, err := conn.OpenStreamSync(ctx)
	require.NoError(t, err)
	_, err = str.Write(payload)
	require.NoError(t, err)
	require.NoError(t, str.Close())
	ack, err := io.ReadAll(str)
	require.NoError(t, err)
	require.Equal(t, "ok", string(ack))
	elapsed := time.Since(start)

	res := <-served
	require.NoError(t, res.err)
	require.True(t, bytes.Equal(payload, res.data), "payload corrupted in transit")
	t.Logf("handshake %v, 1 MiB transferred in %v", handshake, elapsed)
	// 1 MiB cannot cross a 20 Mbit/s uplink faster than 0.42 s.
	require.GreaterOrEqual(t, elapsed, 400*time.Millisecond)

	require.NoError(t, conn.CloseWithError(0, ""))
	require.NoError(t, ln.Close())
	require.NoError(t, clientTr.Close(), "Transport.Close must unblock the read loop via SetReadDeadline")
	require.NoError(t, serverTr.Close())

	s := clientHost.Stats()
	require.Greater(t, s.BytesSent, uint64(len(payload)))
	require.Positive(t, serverHost.Stats().BytesReceived)
}
