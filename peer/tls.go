package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/crowdsurf/crowdsurf/proto"
)

// meshTLS returns the server and client TLS configs of the mesh; the client names stream.
//
// A viewer makes a throwaway self-signed certificate at start and clients do not verify it: the
// mesh's integrity does not come from viewers' TLS identities (any viewer can join and claim any
// id) but from the origin's signature on every chunk, which every receiver checks before it
// stores, forwards or serves the chunk. TLS still gives us QUIC's encryption and ALPN.
//
// The origin's root is the one identity that matters: it is depth 0 on every stripe, holds every
// chunk and is treated differently (asked last, told no HAVEs). A root passes the stream's signing
// key as identity and its certificate is made with it; TLS 1.3 makes the server prove possession
// of the certificate's key (CertificateVerify, checked even when the chain is not), so a client
// that finds the watch link's key in the certificate knows it reached the origin (isOriginConn).
// Anyone else claiming depth 0 is lying.
//
// The key exchange is plain X25519: Go's default leads with the X25519MLKEM768 hybrid, whose
// ML-KEM half costs as much CPU again per handshake and protects nothing we need (the stream is
// public and signed; what a recording of today's traffic could reveal tomorrow is a concert
// everyone watched). A node makes a handshake with every neighbour it meets, so at a few hundred
// peers per machine handshakes were a fifth of the CPU.
var meshCurves = []tls.CurveID{tls.X25519}

// serverName is the TLS server name a client sends: the stream it watches, so that an origin
// carrying several streams on one socket routes the connection before any mesh message (Mux).
// Stream names are letters, digits, '.', '_' and '-', which a server name may hold.
func serverName(stream string) string {
	if stream == "" {
		return "crowdsurf-peer"
	}
	return stream
}

func meshTLS(stream string, identity ed25519.PrivateKey) (server, client *tls.Config, err error) {
	priv := identity
	if priv == nil {
		if _, priv, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, nil, fmt.Errorf("mesh key: %w", err)
		}
	}
	pub := priv.Public()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("mesh cert serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		DNSNames:     []string{"crowdsurf-peer"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh cert: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	server = &tls.Config{
		Certificates:     []tls.Certificate{cert},
		NextProtos:       []string{proto.ALPN},
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: meshCurves,
	}
	client = &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // see above: chunk signatures, not TLS, protect the mesh
		NextProtos:         []string{proto.ALPN},
		ServerName:         serverName(stream),
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   meshCurves,
	}
	return server, client, nil
}

// isOriginConn says whether the remote end of conn proved it holds the private half of originKey
// (see meshTLS).
func isOriginConn(conn *quic.Conn, originKey ed25519.PublicKey) bool {
	if len(originKey) != ed25519.PublicKeySize {
		return false
	}
	certs := conn.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return false
	}
	pub, ok := certs[0].PublicKey.(ed25519.PublicKey)
	return ok && pub.Equal(originKey)
}

// meshQUICConfig tunes QUIC for a live mesh. Dead neighbours are noticed by the application, not
// by QUIC: parents and children send each other a STATUS at least every heartbeatEvery, and a
// silent parent (parentSilent) or child (dropSilentChildren) is dropped within ParentTimeout*1.5.
// The QUIC idle timeout only reclaims connections nobody uses, so it is generous: a short one
// (it was 1.2 s) kills healthy connections whenever a loaded machine falls a second behind, and
// every re-dial is a handshake that loads it more, a collapse we measured at 200 peers.
//
// Every figure below bounds what one connection can make us hold. A sender has at most
// pushWorkers chunk streams in flight (repair answers share the pushers), so maxUniStreams leaves
// it ample room; the remote may open one bidirectional stream, the control stream. What QUIC
// buffers for us is bounded by the flow-control windows: a stream never holds more than one chunk
// frame, and a connection never more than maxChunkReads frames (about 530 KB) - an attacker that
// opened 1,000 one-byte streams per connection once took 26 KB per stream.
func meshQUICConfig() *quic.Config {
	return &quic.Config{
		KeepAlivePeriod:                2 * time.Second,
		MaxIdleTimeout:                 6 * time.Second,
		HandshakeIdleTimeout:           handshakeTimeout,
		MaxIncomingUniStreams:          maxUniStreams,
		MaxIncomingStreams:             1, // the control stream
		InitialStreamReceiveWindow:     proto.MaxChunkFrame,
		MaxStreamReceiveWindow:         proto.MaxChunkFrame,
		InitialConnectionReceiveWindow: maxChunkReads * proto.MaxChunkFrame,
		MaxConnectionReceiveWindow:     maxChunkReads * proto.MaxChunkFrame,
		// Chunk streams' credit goes back in batches (credit.go), not one MAX_STREAMS per chunk.
		RequireStreamCreditRelease: true,
	}
}
