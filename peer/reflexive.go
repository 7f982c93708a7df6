package peer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/crowdsurf/crowdsurf/proto"
)

// ErrNoBindingResponse means no observer answered a binding request in time: the tracker's
// observer is down or unreachable, or UDP is blocked. The peer can still dial out; it just
// cannot be a punch target.
var ErrNoBindingResponse = errors.New("no observer answered the binding request")

// ReflexiveConfig tunes DiscoverReflexive.
type ReflexiveConfig struct {
	// Observers are the tracker's observer sockets. Two on different ports are needed to
	// tell a cone NAT from a symmetric one; with one the kind of a NATed peer stays unknown.
	Observers []net.Addr
	// Timeout bounds the whole exchange (default 3s).
	Timeout time.Duration
	// Retransmit is the wait before the first retransmission to an observer that has not
	// answered; it doubles after each (default 200ms, so 5 tries in 3 s).
	Retransmit time.Duration
}

func (c ReflexiveConfig) withDefaults() ReflexiveConfig {
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Second
	}
	if c.Retransmit == 0 {
		c.Retransmit = 200 * time.Millisecond
	}
	return c
}

// Reflexive is what the observers saw of the mesh socket.
type Reflexive struct {
	// Addr is the socket's server-reflexive address: where other hosts' packets must go to
	// reach it (for a cone NAT, once it has sent to them). It is what the first observer that
	// answered saw; zero when none did.
	Addr netip.AddrPort
	// Kind is the NAT in front of the socket.
	Kind proto.NATKind
	// Observed holds what each observer saw, in Config.Observers order; zero where one did
	// not answer.
	Observed []netip.AddrPort
}

// DiscoverReflexive asks the observers which address the Transport's packets come from and
// works out the NAT kind: public when they see the socket's own address, cone when they all
// see the same mapped address, symmetric when they see different ports. It sends from tr (the
// mesh socket, so the answer is about the mapping other peers will use) and reads the answers
// with tr.ReadNonQUICPacket. It returns once every observer answered or the timeout passed;
// with no answer at all the result has Kind NATUnknown and the error is ErrNoBindingResponse.
//
// quic-go keeps one queue of non-QUIC packets per Transport, so nothing else may read them
// while this runs; other binding datagrams (punches) that arrive meanwhile are dropped. A Node
// does not call it: its one reader of non-QUIC packets demultiplexes (bindingReader).
func DiscoverReflexive(ctx context.Context, tr *quic.Transport, cfg ReflexiveConfig) (Reflexive, error) {
	ctx, cancel := context.WithCancel(ctx)
	responses := make(chan *proto.BindingResponse)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		readBindingResponses(ctx, tr, responses)
	}()
	defer func() { cancel(); <-readDone }()
	return discover(ctx, tr, cfg, responses)
}

// discover is DiscoverReflexive with the answers read by the caller: a node's one reader of
// non-QUIC packets (bindingReader) passes them on, and punch orders on the same socket go
// elsewhere.
func discover(ctx context.Context, tr *quic.Transport, cfg ReflexiveConfig, responses <-chan *proto.BindingResponse) (Reflexive, error) {
	cfg = cfg.withDefaults()
	res := Reflexive{Observed: make([]netip.AddrPort, len(cfg.Observers))}
	if len(cfg.Observers) == 0 {
		return res, fmt.Errorf("reflexive address: %w (no observers configured)", ErrNoBindingResponse)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	txids := make([]proto.TxID, len(cfg.Observers))
	for i := range txids {
		_, _ = rand.Read(txids[i][:]) // crypto/rand.Read never fails
	}

	send := func() {
		for i, obs := range cfg.Observers {
			if !res.Observed[i].IsValid() {
				// A failed send is like a lost packet: the next retransmission tries again.
				_, _ = tr.WriteTo((&proto.BindingRequest{TxID: txids[i]}).Append(nil), obs)
			}
		}
	}
	send()
	wait := cfg.Retransmit
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for answered := 0; answered < len(cfg.Observers); {
		select {
		case <-ctx.Done():
			return classify(tr.Conn.LocalAddr(), res)
		case <-timer.C:
			send()
			wait *= 2
			timer.Reset(wait)
		case resp := <-responses:
			for i, id := range txids {
				if resp.TxID == id && !res.Observed[i].IsValid() {
					res.Observed[i] = resp.Observed
					answered++
				}
			}
		}
	}
	return classify(tr.Conn.LocalAddr(), res)
}

// readBindingResponses passes every BINDING_RESPONSE arriving on tr to out until ctx ends.
func readBindingResponses(ctx context.Context, tr *quic.Transport, out chan<- *proto.BindingResponse) {
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.ReadNonQUICPacket(ctx, buf)
		if err != nil {
			return
		}
		m, _, err := proto.ParseBinding(buf[:n])
		resp, ok := m.(*proto.BindingResponse)
		if err != nil || !ok || !resp.Observed.IsValid() {
			continue
		}
		select {
		case out <- resp:
		case <-ctx.Done():
			return
		}
	}
}

// classify fills in Addr and Kind from what the observers saw.
func classify(local net.Addr, res Reflexive) (Reflexive, error) {
	var seen []netip.AddrPort
	for _, ap := range res.Observed {
		if ap.IsValid() {
			seen = append(seen, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
	}
	if len(seen) == 0 {
		return res, fmt.Errorf("reflexive address from %d observers: %w", len(res.Observed), ErrNoBindingResponse)
	}
	res.Addr = seen[0]
	same := true
	for _, ap := range seen[1:] {
		same = same && ap == seen[0]
	}
	switch {
	case same && isOwnAddr(local, seen[0]):
		res.Kind = proto.NATPublic
	case !same:
		res.Kind = proto.NATSymmetric
	case len(seen) > 1:
		res.Kind = proto.NATCone
	default:
		res.Kind = proto.NATUnknown // one mapped answer cannot tell the kinds apart
	}
	return res, nil
}

// isOwnAddr says whether the reflexive address is the socket's own: equal to it, or, for a
// socket bound to the unspecified address, its port on one of this machine's addresses.
func isOwnAddr(local net.Addr, reflexive netip.AddrPort) bool {
	u, ok := local.(*net.UDPAddr)
	if !ok {
		ap, err := netip.ParseAddrPort(local.String())
		if err != nil {
			return false
		}
		u = net.UDPAddrFromAddrPort(ap)
	}
	ap := u.AddrPort()
	if ap.Port() != reflexive.Port() {
		return false
	}
	ip := ap.Addr().Unmap()
	if !ip.IsUnspecified() {
		return ip == reflexive.Addr()
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ifIP, ok := netip.AddrFromSlice(n.IP); ok && ifIP.Unmap() == reflexive.Addr() {
				return true
			}
		}
	}
	return false
}
