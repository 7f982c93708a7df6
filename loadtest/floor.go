package loadtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// The floor: what relaying a stream through a tree of N QUIC nodes costs with nothing of ours in
// the way. Every node receives each chunk once on its own unidirectional stream and forwards it
// to its children the same way; no signatures, no HAVEs, no repair, no HLS, no players. It is the
// yardstick for the mesh's CPU: the mesh does the same QUIC work plus its own, so the ratio of
// the two is what our logic costs on top of the transport.

// FloorConfig is one floor run. Zero values take the defaults on each field.
type FloorConfig struct {
	Peers      int           // relaying nodes below the source (default 100)
	BitrateBps int64         // the stream (default 1 Mbit/s)
	ChunkSize  int           // bytes per chunk: the origin's frame at this bit rate (default 8 KiB)
	Fanout     int           // children per node (default 2)
	Duration   time.Duration // the whole run; CPU is measured over its second half (default 40 s)
}

func (c FloorConfig) withDefaults() (FloorConfig, error) {
	if c.Peers == 0 {
		c.Peers = 100
	}
	if c.BitrateBps == 0 {
		c.BitrateBps = 1_000_000
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = 8 << 10
	}
	if c.Fanout == 0 {
		c.Fanout = 2
	}
	if c.Duration == 0 {
		c.Duration = 40 * time.Second
	}
	if c.Peers < 1 || c.BitrateBps < 1 || c.ChunkSize < 1 || c.Fanout < 1 || c.Duration < 2*time.Second {
		return c, fmt.Errorf("loadtest: floor: peers, bitrate, chunk size and fanout must be positive and the duration at least 2 s")
	}
	return c, nil
}

// FloorResult is what a floor run measured.
type FloorResult struct {
	Peers       int     `json:"peers"`
	BitrateBps  int64   `json:"bitrate_bps"`
	ChunkSize   int     `json:"chunk_size"`
	Fanout      int     `json:"fanout"`
	Depth       int     `json:"depth"`
	Chunks      int64   `json:"chunks"`            // chunks the source sent
	Delivered   float64 `json:"delivered"`         // share of (chunk, node) pairs delivered
	Cores       float64 `json:"cores_second_half"` // process CPU / wall time over the second half
	MaxRSS      int64   `json:"max_rss_bytes"`
	HeapPerPeer int64   `json:"heap_per_peer_bytes"`
}

// floorNode is one relay: its transport, its children's connections.
type floorNode struct {
	tr       *quic.Transport
	ln       *quic.Listener
	children []*quic.Conn
	received atomic.Int64
}

// RunFloor builds the tree on loopback UDP, streams through it for cfg.Duration and measures.
func RunFloor(ctx context.Context, cfg FloorConfig) (FloorResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return FloorResult{}, err
	}
	serverTLS, clientTLS, err := floorTLS()
	if err != nil {
		return FloorResult{}, err
	}
	qconf := &quic.Config{
		MaxIdleTimeout:                 10 * time.Second,
		MaxIncomingUniStreams:          1000,
		InitialStreamReceiveWindow:     uint64(2 * cfg.ChunkSize),
		MaxStreamReceiveWindow:         uint64(2 * cfg.ChunkSize),
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     16 << 20,
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	nodes := make([]*floorNode, cfg.Peers+1) // 0 is the source
	defer func() {
		for _, n := range nodes {
			if n != nil {
				_ = n.tr.Close()
				_ = n.tr.Conn.Close()
			}
		}
	}()
	for i := range nodes {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return FloorResult{}, fmt.Errorf("loadtest: floor: %w", err)
		}
		n := &floorNode{tr: &quic.Transport{Conn: pc}}
		nodes[i] = n
		if i == 0 {
			continue
		}
		if n.ln, err = n.tr.Listen(serverTLS, qconf); err != nil {
			return FloorResult{}, fmt.Errorf("loadtest: floor: %w", err)
		}
		wg.Go(func() { n.relay(ctx) })
	}
	// Each node dials its children: node i's parent is (i-1)/fanout.
	depth := 0
	for i := 1; i < len(nodes); i++ {
		parent := nodes[(i-1)/cfg.Fanout]
		conn, err := parent.tr.Dial(ctx, nodes[i].tr.Conn.LocalAddr(), clientTLS, qconf)
		if err != nil {
			return FloorResult{}, fmt.Errorf("loadtest: floor: dial node %d: %w", i, err)
		}
		parent.children = append(parent.children, conn)
		d := 0
		for j := i; j > 0; j = (j - 1) / cfg.Fanout {
			d++
		}
		depth = max(depth, d)
	}

	chunk := make([]byte, cfg.ChunkSize)
	_, _ = rand.Read(chunk)
	every := time.Duration(float64(time.Second) * float64(cfg.ChunkSize*8) / float64(cfg.BitrateBps))
	tick := time.NewTicker(every)
	defer tick.Stop()
	start := time.Now()
	half := start.Add(cfg.Duration / 2)
	end := start.Add(cfg.Duration)
	var atHalf resourceUsage
	var sent int64
	measuring := false
	for now := range tick.C {
		if ctx.Err() != nil {
			return FloorResult{}, ctx.Err()
		}
		if now.After(end) {
			break
		}
		if !measuring && now.After(half) {
			measuring, atHalf = true, processUsage()
			half = now
		}
		nodes[0].forward(ctx, chunk)
		sent++
	}
	usage := processUsage()
	wall := time.Since(half)
	time.Sleep(time.Second) // the last chunks reach the leaves
	var got int64
	for _, n := range nodes[1:] {
		got += n.received.Load()
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return FloorResult{
		Peers: cfg.Peers, BitrateBps: cfg.BitrateBps, ChunkSize: cfg.ChunkSize, Fanout: cfg.Fanout, Depth: depth,
		Chunks:      sent,
		Delivered:   float64(got) / float64(sent*int64(cfg.Peers)),
		Cores:       (usage.CPU - atHalf.CPU).Seconds() / wall.Seconds(),
		MaxRSS:      usage.MaxRSS,
		HeapPerPeer: int64(ms.HeapInuse) / int64(cfg.Peers),
	}, nil
}

// relay accepts the parent's connection and forwards every chunk it receives to the children.
func (n *floorNode) relay(ctx context.Context) {
	conn, err := n.ln.Accept(ctx)
	if err != nil {
		return
	}
	for {
		s, err := conn.AcceptUniStream(ctx)
		if err != nil {
			return
		}
		go func() {
			b, err := io.ReadAll(s)
			if err != nil {
				return
			}
			n.received.Add(1)
			n.forward(ctx, b)
		}()
	}
}

// forward sends one chunk to every child, each on its own stream, as the mesh pushes.
func (n *floorNode) forward(ctx context.Context, b []byte) {
	for _, c := range n.children {
		go func() {
			s, err := c.OpenUniStreamSync(ctx)
			if err != nil {
				return
			}
			if _, err := s.Write(b); err != nil {
				s.CancelWrite(0)
				return
			}
			_ = s.Close()
		}()
	}
}

// floorTLS is the mesh's TLS without its identities: a throwaway Ed25519 certificate, X25519.
func floorTLS() (server, client *tls.Config, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, errors.Join(errors.New("loadtest: floor certificate"), err)
	}
	curves := []tls.CurveID{tls.X25519}
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
		NextProtos: []string{"floor"}, MinVersion: tls.VersionTLS13, CurvePreferences: curves}
	client = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"floor"}, MinVersion: tls.VersionTLS13, //nolint:gosec // a yardstick, not a product
		CurvePreferences: curves}
	return server, client, nil
}
