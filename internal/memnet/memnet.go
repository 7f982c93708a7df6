// Package memnet is an in-memory stream network: listeners and a dialer whose connections are
// net.Pipe pairs, for running HTTP servers and clients where no real socket may be used.
//
// Its reason to exist is testing/synctest. A goroutine blocked on a real socket is not "durably
// blocked", so a bubble whose servers wait in Accept or Read on TCP never lets its fake clock
// advance. net.Pipe and the channels here block durably when they are created inside the
// bubble, so an HTTP server and client on a Network make the bubble's time jump as soon as
// every goroutine waits. Create the Network inside the bubble that uses it.
//
// Addresses look like TCP ones (*net.TCPAddr, so servers and clients that log or parse
// RemoteAddr work unchanged), on one IP of the Network's own (default 10.254.0.1), which no
// real route reaches: a client that dials one of them over the real network fails instead of
// reaching something else.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// DefaultIP is the address every listener and client of a Network has unless Config.IP says
// otherwise.
var DefaultIP = netip.MustParseAddr("10.254.0.1")

// Port ranges: listeners take ports from firstListenPort up, clients from firstClientPort up,
// both wrapping within their range.
const (
	firstListenPort = 10000
	lastListenPort  = 32767
	firstClientPort = 32768
	lastClientPort  = 65535
)

// DefaultBacklog is how many dialled connections wait for Accept before further dials block.
const DefaultBacklog = 128

// Config configures a Network. The zero value works.
type Config struct {
	// IP is the address of every listener and client (default DefaultIP).
	IP netip.Addr
	// Backlog bounds the connections waiting for Accept per listener (default DefaultBacklog).
	Backlog int
}

// ErrClosed is returned by Listen on a closed Network.
var ErrClosed = errors.New("memnet: network closed")

// ErrAddrInUse is returned by ListenAddr for an address a live listener holds.
var ErrAddrInUse = errors.New("memnet: address already in use")

// Network is one in-memory network. Safe for concurrent use.
type Network struct {
	cfg Config

	mu         sync.Mutex
	listeners  map[netip.AddrPort]*Listener
	nextListen uint16
	nextClient uint16
	closed     bool
}

// New creates an empty network.
func New(cfg Config) *Network {
	if !cfg.IP.IsValid() {
		cfg.IP = DefaultIP
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = DefaultBacklog
	}
	return &Network{
		cfg:        cfg,
		listeners:  make(map[netip.AddrPort]*Listener),
		nextListen: firstListenPort,
		nextClient: firstClientPort,
	}
}

// Listen opens a listener on the next free port.
func (n *Network) Listen() (*Listener, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	for range lastListenPort - firstListenPort + 1 {
		ap := netip.AddrPortFrom(n.cfg.IP, n.nextListen)
		n.nextListen++
		if n.nextListen > lastListenPort {
			n.nextListen = firstListenPort
		}
		if _, taken := n.listeners[ap]; !taken {
			return n.listenLocked(ap), nil
		}
	}
	return nil, fmt.Errorf("memnet: listen: every port of %s is taken: %w", n.cfg.IP, ErrAddrInUse)
}

// ListenAddr opens a listener on addr ("ip:port"); any IP may be given.
func (n *Network) ListenAddr(addr string) (*Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("memnet: listen on %q: %w", addr, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if _, taken := n.listeners[ap]; taken {
		return nil, fmt.Errorf("memnet: listen on %s: %w", ap, ErrAddrInUse)
	}
	return n.listenLocked(ap), nil
}

func (n *Network) listenLocked(ap netip.AddrPort) *Listener {
	l := &Listener{
		net:     n,
		ap:      ap,
		addr:    net.TCPAddrFromAddrPort(ap),
		backlog: make(chan net.Conn, n.cfg.Backlog),
		closed:  make(chan struct{}),
	}
	n.listeners[ap] = l
	return l
}

// DialContext connects to the listener at addr ("ip:port"); network must be a TCP one. It has
// the signature of http.Transport.DialContext. With no listener there it fails at once with
// ECONNREFUSED, as a closed port does; with the listener's backlog full it waits for Accept,
// ctx or the listener's Close.
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	remote := net.TCPAddrFromAddrPort(ap)
	n.mu.Lock()
	l := n.listeners[ap]
	local := net.TCPAddrFromAddrPort(netip.AddrPortFrom(n.cfg.IP, n.nextClient))
	n.nextClient++
	if n.nextClient == 0 || n.nextClient > lastClientPort {
		n.nextClient = firstClientPort
	}
	n.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: remote, Err: syscall.ECONNREFUSED}
	}
	client, server := net.Pipe()
	select {
	case l.backlog <- &conn{Conn: server, local: remote, remote: local}:
		if !isClosed(l.closed) {
			return &conn{Conn: client, local: local, remote: remote}, nil
		}
		// Both cases were ready and the send won, maybe after Close drained the backlog:
		// drain it again, so no connection waits for an Accept that never comes.
		l.drain()
		err = syscall.ECONNREFUSED
	case <-l.closed:
		err = syscall.ECONNREFUSED
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = client.Close()
	_ = server.Close()
	return nil, &net.OpError{Op: "dial", Net: network, Addr: remote, Err: err}
}

// Close closes every listener; later Listen calls fail. Established connections stay up
// until their ends close them.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	ls := make([]*Listener, 0, len(n.listeners))
	for _, l := range n.listeners {
		ls = append(ls, l)
	}
	n.mu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
	return nil
}

// Listener is a net.Listener on a Network.
type Listener struct {
	net     *Network
	ap      netip.AddrPort
	addr    *net.TCPAddr
	backlog chan net.Conn

	closeOnce sync.Once
	closed    chan struct{}
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next dialled connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.backlog:
		return c, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close frees the address and closes the connections still waiting for Accept; dials waiting
// on the backlog fail.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.net.mu.Lock()
		if l.net.listeners[l.ap] == l {
			delete(l.net.listeners, l.ap)
		}
		l.net.mu.Unlock()
		close(l.closed)
		l.drain()
	})
	return nil
}

// drain closes the connections waiting for Accept.
func (l *Listener) drain() {
	for {
		select {
		case c := <-l.backlog:
			_ = c.Close()
		default:
			return
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Addr is the listener's address, a *net.TCPAddr.
func (l *Listener) Addr() net.Addr { return l.addr }

// conn is one end of a pipe with TCP-looking addresses.
type conn struct {
	net.Conn
	local, remote *net.TCPAddr
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }
