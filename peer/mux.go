package peer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
)

// Mux lets the root nodes of several streams share one mesh socket, so an origin needs one UDP
// port however many streams it carries. Every mesh client names the stream it watches as the TLS
// server name of its connection; the Mux accepts connections on one quic.Transport and hands each
// to the listener of that stream, before any mesh message is read. A connection for a stream
// without a listener is refused.
type Mux struct {
	tr    *quic.Transport
	ln    *quic.Listener
	guard *admission

	mu     sync.Mutex
	routes map[string]*MuxListener
}

// ErrStreamTaken means a stream already has a listener on the Mux.
var ErrStreamTaken = errors.New("peer: stream already listening on this mux")

// MuxConfig configures a Mux.
type MuxConfig struct {
	// PacketConn is the shared mesh socket (required).
	PacketConn net.PacketConn
	// Identity is the origin's signing key (Config.Identity of every root behind the Mux): the
	// Mux holds the TLS side (required).
	Identity ed25519.PrivateKey
	// Limits bound what one source IP may hold across every stream of the Mux.
	Limits Limits
	// Registry takes the Mux's admission metrics (crowdsurf_mesh_*); nil = not exported.
	Registry *prometheus.Registry
}

// NewMux listens for mesh connections on cfg.PacketConn. Run routes them; Close stops.
func NewMux(cfg MuxConfig) (*Mux, error) {
	pc := cfg.PacketConn
	if pc == nil {
		return nil, fmt.Errorf("%w: no PacketConn for the mux", ErrConfig)
	}
	if len(cfg.Identity) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: the mux needs the origin's signing key as identity", ErrConfig)
	}
	server, _, err := meshTLS("", cfg.Identity)
	if err != nil {
		return nil, err
	}
	guard := newAdmission(cfg.Limits)
	if cfg.Registry != nil {
		if err := guard.register(cfg.Registry); err != nil {
			return nil, err
		}
	}
	tr := &quic.Transport{Conn: pc}
	guard.guardTransport(tr)
	ln, err := tr.Listen(server, meshQUICConfig())
	if err != nil {
		_ = tr.Close()
		return nil, fmt.Errorf("peer: mux listen on %s: %w", pc.LocalAddr(), err)
	}
	return &Mux{tr: tr, ln: ln, guard: guard, routes: make(map[string]*MuxListener)}, nil
}

// Addr is the shared mesh address.
func (m *Mux) Addr() net.Addr { return m.tr.Conn.LocalAddr() }

// Listen returns the listener of stream's connections, for a root Node's Config.Listener.
func (m *Mux) Listen(stream string) (*MuxListener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.routes[stream]; ok {
		return nil, fmt.Errorf("%w: %s", ErrStreamTaken, stream)
	}
	l := &MuxListener{m: m, stream: stream, conns: make(chan *quic.Conn, 64), done: make(chan struct{})}
	m.routes[stream] = l
	return l, nil
}

// Run accepts and routes connections until ctx ends or the Mux is closed.
func (m *Mux) Run(ctx context.Context) {
	for {
		conn, err := m.ln.Accept(ctx)
		if err != nil {
			return
		}
		acceptedConn(conn)
		stream := conn.ConnectionState().TLS.ServerName
		m.mu.Lock()
		l := m.routes[stream]
		m.mu.Unlock()
		if l == nil || !l.offer(conn) {
			_ = conn.CloseWithError(codeRejected, clip("no stream "+stream+" here"))
		}
	}
}

// Close stops listening and closes the socket's transport (not the socket).
func (m *Mux) Close() error {
	_ = m.ln.Close()
	return m.tr.Close()
}

// MuxListener hands a root Node the connections for its stream.
type MuxListener struct {
	m      *Mux
	stream string
	conns  chan *quic.Conn
	once   sync.Once
	done   chan struct{}
}

// offer queues conn for Accept; false when the listener is closed or hopelessly behind.
func (l *MuxListener) offer(conn *quic.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.conns <- conn:
		return true
	default:
		return false
	}
}

// Accept returns the next connection for the stream.
func (l *MuxListener) Accept(ctx context.Context) (*quic.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addr is the shared mesh address.
func (l *MuxListener) Addr() net.Addr { return l.m.Addr() }

// Close takes the stream off the Mux; connections still queued are refused.
func (l *MuxListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		if l.m.routes[l.stream] == l {
			delete(l.m.routes, l.stream)
		}
		l.m.mu.Unlock()
		for {
			select {
			case c := <-l.conns:
				_ = c.CloseWithError(codeGoodbye, "stream ended")
			default:
				return
			}
		}
	})
	return nil
}
