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

// meshTLS returns the server and client TLS configs of the mesh. Each node makes a throwaway
// self-signed certificate at start and clients do not verify it: the mesh's integrity does not
// come from TLS identities (any viewer can join and claim any id) but from the origin's signature
// on every chunk, which every receiver checks before it stores, forwards or serves the chunk. TLS
// still gives us QUIC's encryption and ALPN.
func meshTLS() (server, client *tls.Config, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh key: %w", err)
	}
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
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{proto.ALPN},
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // see above: chunk signatures, not TLS, protect the mesh
		NextProtos:         []string{proto.ALPN},
		ServerName:         "crowdsurf-peer",
		MinVersion:         tls.VersionTLS13,
	}
	return server, client, nil
}

// meshQUICConfig tunes QUIC for a live mesh: keep-alives and a short idle timeout notice a dead
// neighbour within about a second (a dead parent is also noticed by its silence on the control
// stream, parentSilent; the root learns of a dead child only from the idle timeout, and frees
// its seed slot then), and each chunk being its own stream needs many concurrent streams.
func meshQUICConfig() *quic.Config {
	return &quic.Config{
		KeepAlivePeriod:                500 * time.Millisecond,
		MaxIdleTimeout:                 1200 * time.Millisecond,
		HandshakeIdleTimeout:           2 * time.Second,
		MaxIncomingUniStreams:          1000,
		MaxIncomingStreams:             4, // the control stream; anything else is ignored
		InitialStreamReceiveWindow:     proto.MaxChunkFrame,
		MaxStreamReceiveWindow:         proto.MaxChunkFrame,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     16 << 20,
	}
}
