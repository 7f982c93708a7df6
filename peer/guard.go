package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
)

// Admission: the rules a mesh socket applies per source IP before a connection costs us a
// handshake. quic-go asks us twice about an inbound connection attempt: VerifySourceAddress for
// every Initial without a token (true: answer with a stateless Retry, so a spoofed flood costs us
// one packet each and no state), then ConnContext once it is about to create the connection
// (an error: refuse it before any TLS work). Accepting a connection (acceptLoop, Mux.Run) marks
// its handshake finished; the connection's context ending releases its per-IP count.

// Limits bound what one source IP may hold of a node or of a Mux. Zero values take the defaults
// documented on each field.
type Limits struct {
	// MaxConnsPerIP bounds the connections one source IP has with us at once, handshaking or
	// up (default 4: a few viewers behind one NAT).
	MaxConnsPerIP int
	// NewConnsPerSec and NewConnsBurst are the token bucket of new connections per source IP
	// (default 1 per second, bursts of 4).
	NewConnsPerSec float64
	NewConnsBurst  int
	// RetryAbove is how many handshakes may be in progress before every new one must first
	// prove its source address with a QUIC Retry (default 16). A source IP that already has a
	// handshake in progress or has used its burst is asked for a Retry at once.
	RetryAbove int
	// BanFor is how long the IP of a banned peer is refused (default 10 min).
	BanFor time.Duration
	// LimitLoopback applies the per-IP rules (caps, rate, IP bans, seed-slot shares) to
	// loopback sources too. Off by default: the load test and the demo run a whole swarm on
	// 127.0.0.1, and no packet from another machine carries a loopback source (the kernel drops
	// it). Tests of the rules turn it on and use 127.0.0.2, 127.0.0.3... as distinct IPs.
	LimitLoopback bool
}

const (
	// maxTrackedIPs bounds the per-IP table (about 100 bytes an entry). Entries with no
	// connection and a full bucket are pruned when it fills; past that, new IPs are refused.
	maxTrackedIPs = 1 << 16
	// maxBannedIPs bounds the ban table; a new ban beyond it replaces the one ending soonest.
	maxBannedIPs = 1 << 12
)

func (l Limits) withDefaults() Limits {
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = 4
	}
	if l.NewConnsPerSec <= 0 {
		l.NewConnsPerSec = 1
	}
	if l.NewConnsBurst <= 0 {
		l.NewConnsBurst = 4
	}
	if l.RetryAbove <= 0 {
		l.RetryAbove = 16
	}
	if l.BanFor <= 0 {
		l.BanFor = 10 * time.Minute
	}
	return l
}

// Reasons a connection is refused, the label of crowdsurf_mesh_conns_refused_total.
const (
	refusedBanned     = "banned"
	refusedPerIP      = "per_ip"
	refusedRate       = "rate"
	refusedTableFull  = "table_full"
	refusedNeighbours = "neighbours"
)

// ErrRefused means an inbound connection attempt broke a per-IP rule; quic-go answers it with
// CONNECTION_REFUSED.
var ErrRefused = errors.New("peer: connection refused")

// admission keeps the per-IP state of one mesh socket (a Node's own, or a Mux shared by roots).
// quic-go calls it from its own goroutines, so a mutex guards it; every call is a map lookup.
type admission struct {
	lim Limits
	now func() time.Time

	mu          sync.Mutex
	ips         map[netip.Addr]*ipState
	bans        map[netip.Addr]time.Time
	handshaking int

	refused *prometheus.CounterVec
	banned  prometheus.Counter
	retries prometheus.Counter

	seedRefused   prometheus.Counter
	seedDisplaced prometheus.Counter
}

type ipState struct {
	conns, handshaking int
	tokens             float64
	at                 time.Time // tokens were counted at
}

func newAdmission(lim Limits) *admission {
	const ns, sub = "crowdsurf", "mesh"
	return &admission{
		lim:  lim.withDefaults(),
		now:  time.Now,
		ips:  make(map[netip.Addr]*ipState),
		bans: make(map[netip.Addr]time.Time),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "conns_refused_total", Help: "Inbound mesh connections refused, by reason (banned, per_ip, rate, table_full, neighbours)."},
			[]string{"reason"}),
		banned: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bans_total", Help: "Peers banned for breaking the mesh protocol (their IP is refused for a while)."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "retries_total", Help: "Connection attempts asked to prove their source address with a QUIC Retry."}),
		seedRefused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "seed_refused_per_ip_total", Help: "Seed-slot requests refused because the source IP holds its share."}),
		seedDisplaced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "seed_displaced_total", Help: "Seed children that forwarded nothing and lost their slot to another candidate."}),
	}
}

func (a *admission) register(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{a.refused, a.banned, a.retries, a.seedRefused, a.seedDisplaced} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("mesh metrics: %w", err)
		}
	}
	return nil
}

// guardTransport has tr consult a before any inbound connection costs a handshake.
func (a *admission) guardTransport(tr *quic.Transport) {
	tr.VerifySourceAddress = a.verifySourceAddress
	tr.ConnContext = a.connContext
}

// ipOf is the source a per-IP rule keys on: the IPv4 address, or the /64 of an IPv6 one (one
// subscriber line holds a whole /64, so one address each would be no bound at all).
func ipOf(addr net.Addr) netip.Addr {
	var ip netip.Addr
	if u, ok := addr.(*net.UDPAddr); ok {
		ip, _ = netip.AddrFromSlice(u.IP)
	} else if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if ip.Is6() && !ip.IsLoopback() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// exempt says whether the per-IP rules skip ip (see Limits.LimitLoopback).
func (a *admission) exempt(ip netip.Addr) bool {
	return !ip.IsValid() || (ip.IsLoopback() && !a.lim.LimitLoopback)
}

// verifySourceAddress asks for a Retry when handshakes pile up, or when this IP is busy already.
func (a *admission) verifySourceAddress(addr net.Addr) bool {
	ip := ipOf(addr)
	a.mu.Lock()
	defer a.mu.Unlock()
	retry := a.handshaking >= a.lim.RetryAbove
	if st := a.ips[ip]; !retry && st != nil && !a.exempt(ip) {
		a.refill(st)
		retry = st.handshaking > 0 || st.tokens < 1
	}
	if retry {
		a.retries.Inc()
	}
	return retry
}

func (a *admission) refill(st *ipState) {
	now := a.now()
	st.tokens = min(float64(a.lim.NewConnsBurst), st.tokens+now.Sub(st.at).Seconds()*a.lim.NewConnsPerSec)
	st.at = now
}

// ticket is one admitted inbound connection's claim on the counts.
type ticket struct {
	a           *admission
	ip          netip.Addr
	counted     bool // the per-IP counts hold it (not exempt)
	handshaking bool // guarded by a.mu
}

type ticketKey struct{}

// connContext admits or refuses a connection attempt before its handshake.
func (a *admission) connContext(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	t, err := a.admit(ipOf(info.RemoteAddr))
	if err != nil {
		return ctx, err
	}
	context.AfterFunc(ctx, t.closed)
	return context.WithValue(ctx, ticketKey{}, t), nil
}

func (a *admission) admit(ip netip.Addr) (*ticket, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := &ticket{a: a, ip: ip, handshaking: true}
	if !a.exempt(ip) {
		if until, ok := a.bans[ip]; ok {
			if a.now().Before(until) {
				return nil, a.refuse(refusedBanned)
			}
			delete(a.bans, ip)
		}
		st := a.ips[ip]
		if st == nil {
			if len(a.ips) >= maxTrackedIPs {
				a.pruneIPs()
			}
			if len(a.ips) >= maxTrackedIPs {
				return nil, a.refuse(refusedTableFull)
			}
			st = &ipState{tokens: float64(a.lim.NewConnsBurst), at: a.now()}
			a.ips[ip] = st
		}
		if st.conns >= a.lim.MaxConnsPerIP {
			return nil, a.refuse(refusedPerIP)
		}
		a.refill(st)
		if st.tokens < 1 {
			return nil, a.refuse(refusedRate)
		}
		st.tokens--
		st.conns++
		st.handshaking++
		t.counted = true
	}
	a.handshaking++
	return t, nil
}

func (a *admission) refuse(reason string) error {
	a.refused.WithLabelValues(reason).Inc()
	return fmt.Errorf("%w: %s", ErrRefused, reason)
}

// pruneIPs forgets IPs that hold nothing: no connection and a full bucket again.
func (a *admission) pruneIPs() {
	for ip, st := range a.ips {
		a.refill(st)
		if st.conns == 0 && st.tokens >= float64(a.lim.NewConnsBurst) {
			delete(a.ips, ip)
		}
	}
}

// established marks the handshake of the connection done (it is being accepted).
func (t *ticket) established() {
	t.a.mu.Lock()
	defer t.a.mu.Unlock()
	t.endHandshake()
}

func (t *ticket) endHandshake() {
	if !t.handshaking {
		return
	}
	t.handshaking = false
	t.a.handshaking--
	if st := t.a.ips[t.ip]; t.counted && st != nil {
		st.handshaking--
	}
}

// closed releases the connection's counts; quic-go calls it once the connection is gone.
func (t *ticket) closed() {
	t.a.mu.Lock()
	defer t.a.mu.Unlock()
	t.endHandshake()
	if st := t.a.ips[t.ip]; t.counted && st != nil {
		st.conns--
	}
}

// acceptedConn marks conn's handshake as done, when it was admitted by us.
func acceptedConn(conn *quic.Conn) {
	if t, ok := conn.Context().Value(ticketKey{}).(*ticket); ok {
		t.established()
	}
}

// ban refuses ip's new connections for BanFor; false when ip is exempt.
func (a *admission) ban(ip netip.Addr) bool {
	a.banned.Inc()
	if a.exempt(ip) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if _, ok := a.bans[ip]; !ok && len(a.bans) >= maxBannedIPs {
		var first netip.Addr
		var firstEnd time.Time
		for b, until := range a.bans {
			if !until.After(now) {
				delete(a.bans, b)
				continue
			}
			if firstEnd.IsZero() || until.Before(firstEnd) {
				first, firstEnd = b, until
			}
		}
		if len(a.bans) >= maxBannedIPs {
			delete(a.bans, first)
		}
	}
	a.bans[ip] = now.Add(a.lim.BanFor)
	return true
}

// isBanned says whether ip is banned now.
func (a *admission) isBanned(ip netip.Addr) bool {
	if a.exempt(ip) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	until, ok := a.bans[ip]
	return ok && a.now().Before(until)
}

// inProgress is the number of handshakes in progress (tests).
func (a *admission) inProgress() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.handshaking
}
