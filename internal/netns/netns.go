// Package netns builds small networks of Linux network namespaces for tests that need a real
// kernel between peers: home routers that NAT with nftables, behind them one host each, and a
// public segment. Sockets are opened inside a namespace from the test process itself (setns on
// a locked thread), so components run in-process as in every other test; only the plumbing
// uses ip(8) and nft(8). It needs root.
//
// Addresses come from the documentation ranges only: the public segment is 203.0.113.0/24
// (TEST-NET-3), home networks are /28s of 198.51.100.0/24 (TEST-NET-2).
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnavailable means this machine cannot build namespaces: not root, or ip/nft missing. The
// message says which and what to do.
var ErrUnavailable = errors.New("network namespaces unavailable")

// PublicIP is the public namespace's own address on the public segment.
const PublicIP = "203.0.113.1"

// Check says whether New can work here.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (run the test as root, as CI does)", ErrUnavailable)
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found (apt-get install iproute2 nftables)", ErrUnavailable, tool)
		}
	}
	return nil
}

// Lab is a set of namespaces made for one test. Close removes them all; a namespace takes
// its interfaces and nft tables with it.
type Lab struct {
	prefix string
	made   []string
	homes  int
}

// NAT rules a home router can apply to what leaves its WAN interface.
const (
	// Masquerade is Linux's ordinary source NAT: it keeps the source port when it can, so a
	// socket gets one mapping for every destination (cone), and conntrack lets in only
	// replies from the exact addr:port a flow went to.
	Masquerade = "masquerade"
	// MasqueradeRandom picks a random port for every flow: a new mapping per destination,
	// as a symmetric NAT does.
	MasqueradeRandom = "masquerade fully-random"
)

// New makes the public namespace: a bridge that is the public segment, with PublicIP on it.
// prefix names everything it makes (keep it short and unique: namespace names are global).
func New(prefix string) (_ *Lab, err error) {
	if err := Check(); err != nil {
		return nil, err
	}
	l := &Lab{prefix: prefix}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	pub := l.Public()
	if err := l.addNS(pub); err != nil {
		return nil, err
	}
	err = run(
		[]string{"ip", "-n", pub, "link", "add", "br0", "type", "bridge"},
		[]string{"ip", "-n", pub, "addr", "add", PublicIP + "/24", "dev", "br0"},
		[]string{"ip", "-n", pub, "link", "set", "br0", "up"},
	)
	return l, err
}

// Public is the public namespace's name.
func (l *Lab) Public() string { return l.prefix + "-pub" }

// Home is one home network: a router namespace and the host namespace behind it.
type Home struct {
	Router, Host string
	// WANIP is the router's public address, HostIP the host's private one.
	WANIP, HostIP string
}

// AddHome makes a router with WAN address 203.0.113.(10+i) on the public segment, applying
// rule (Masquerade or MasqueradeRandom) to what it forwards out, and a host behind it at
// 198.51.100.(16i+2). With firewall the router drops new flows arriving on its WAN side, for
// itself or forwarded, as home routers do.
//
// Without it, an unsolicited packet to the router is accepted (and answered with ICMP port
// unreachable), and its conntrack entry is confirmed: a punch that arrives before the host's
// own punch has left then blocks the mapping the host needs, because the host's flow to the
// same remote would have the same reply tuple, so masquerade gives it another port.
func (l *Lab) AddHome(rule string, firewall bool) (Home, error) {
	l.homes++
	i := l.homes
	h := Home{
		Router: fmt.Sprintf("%s-r%d", l.prefix, i),
		Host:   fmt.Sprintf("%s-h%d", l.prefix, i),
		WANIP:  fmt.Sprintf("203.0.113.%d", 10+i),
		HostIP: fmt.Sprintf("198.51.100.%d", 16*i+2),
	}
	lanIP := fmt.Sprintf("198.51.100.%d", 16*i+1)
	for _, ns := range []string{h.Router, h.Host} {
		if err := l.addNS(ns); err != nil {
			return h, err
		}
	}
	pub, port := l.Public(), fmt.Sprintf("wan%d", i)
	err := run(
		[]string{"ip", "link", "add", "wan", "netns", h.Router, "type", "veth", "peer", "name", port, "netns", pub},
		[]string{"ip", "-n", pub, "link", "set", port, "master", "br0", "up"},
		[]string{"ip", "-n", h.Router, "addr", "add", h.WANIP + "/24", "dev", "wan"},
		[]string{"ip", "-n", h.Router, "link", "set", "wan", "up"},
		[]string{"ip", "link", "add", "lan", "netns", h.Router, "type", "veth", "peer", "name", "eth0", "netns", h.Host},
		[]string{"ip", "-n", h.Router, "addr", "add", lanIP + "/28", "dev", "lan"},
		[]string{"ip", "-n", h.Router, "link", "set", "lan", "up"},
		[]string{"ip", "-n", h.Host, "addr", "add", h.HostIP + "/28", "dev", "eth0"},
		[]string{"ip", "-n", h.Host, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", h.Host, "route", "add", "default", "via", lanIP},
		[]string{"ip", "netns", "exec", h.Router, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	)
	if err != nil {
		return h, err
	}
	ruleset := fmt.Sprintf(`table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" %s
	}
}
`, rule)
	if firewall {
		ruleset += `table ip filter {
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state new drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wan" ct state new drop
	}
}
`
	}
	cmd := exec.Command("ip", "netns", "exec", h.Router, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return h, fmt.Errorf("netns: nft in %s: %w: %s", h.Router, err, bytes.TrimSpace(out))
	}
	return h, nil
}

func (l *Lab) addNS(name string) error {
	_ = exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	if err := run([]string{"ip", "netns", "add", name}); err != nil {
		return err
	}
	l.made = append(l.made, name)
	return run([]string{"ip", "-n", name, "link", "set", "lo", "up"})
}

// ListenUDP opens a UDP socket inside namespace ns. The socket stays in that namespace
// whatever thread later reads or writes it.
func (l *Lab) ListenUDP(ns, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := inNS(ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: listen on %s in %s: %w", addr, ns, err)
	}
	return pc, nil
}

// ListenTCP opens a TCP listener inside namespace ns.
func (l *Lab) ListenTCP(ns, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: listen on tcp %s in %s: %w", addr, ns, err)
	}
	return ln, nil
}

// Dialer returns a DialContext (for an http.Transport) that opens its TCP connections inside
// namespace ns, so an in-process component's HTTP traffic takes that namespace's routes and NAT.
func (l *Lab) Dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := inNS(ns, func() error {
			var err error
			conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}

// inNS runs f on a thread switched into namespace ns. If the thread cannot be switched back
// it stays locked, so the runtime retires it instead of reusing it elsewhere.
func inNS(ns string, f func() error) error {
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns back from %s: %w", ns, err) // the thread stays locked and dies
	}
	runtime.UnlockOSThread()
	return ferr
}

// Close removes every namespace the lab made, also after a failed setup.
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := run([]string{"ip", "netns", "del", l.made[i]}); err != nil {
			errs = append(errs, err)
		}
	}
	l.made = nil
	return errors.Join(errs...)
}

func run(cmds ...[]string) error {
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("netns: %s: %w: %s", strings.Join(c, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}
