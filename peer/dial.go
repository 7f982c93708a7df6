package peer

import (
	"context"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Dialling: bootstrap addresses, the origin and the tracker's candidates, within MaxNeighbours.

func (l *loop) onAnnounce(ctx context.Context, resp proto.AnnounceResponse) {
	if l.cfg.OriginHTTP == "" && resp.Origin.HTTPURL != "" && resp.Origin.HTTPURL != l.originHTTP {
		l.originHTTP = trimSlash(resp.Origin.HTTPURL)
		u := l.originHTTP
		l.n.originHTTP.Store(&u)
	}
	if l.cfg.OriginQUIC == "" && resp.Origin.QUICAddr != "" {
		l.originQUIC = normalizeAddr(resp.Origin.QUICAddr)
	}
	if resp.Stripes != 0 && resp.Stripes != len(l.stripes) {
		l.n.log.Warn("tracker says the stream has a different stripe count; neighbours with it will refuse us",
			"tracker", resp.Stripes, "ours", len(l.stripes))
	}
	l.candidates = l.candidates[:0]
	for _, p := range resp.Neighbours {
		if a := normalizeAddr(p.Addr); a != "" {
			l.candidates = append(l.candidates, a)
		}
	}
	l.dialMore(ctx)
}

func (l *loop) dialMore(ctx context.Context) {
	if l.cfg.Root {
		return
	}
	connected := make(map[string]bool, 2*len(l.nbs))
	for _, nb := range l.nbs {
		connected[nb.addr] = true
		if nb.dialAddr != "" {
			connected[nb.dialAddr] = true
		}
	}
	try := func(addr string, always bool) {
		if addr == "" || addr == l.selfAddr || connected[addr] || l.dialing[addr] || l.bannedAddrs[addr] {
			return
		}
		if nb, ok := l.dialNotBefore[addr]; ok && l.now.Before(nb) {
			return
		}
		if !always && len(l.nbs)+len(l.dialing) >= l.cfg.MaxNeighbours {
			return
		}
		l.dialing[addr] = true
		l.n.wg.Go(func() { l.n.dial(ctx, addr) })
	}
	// The origin is always a candidate parent, whatever the neighbour budget.
	try(l.originQUIC, true)
	for _, a := range l.cfg.Bootstrap {
		try(normalizeAddr(a), false)
	}
	for _, a := range l.candidates {
		try(a, false)
	}
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}
