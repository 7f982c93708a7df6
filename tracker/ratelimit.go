package tracker

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipLimiter rate-limits requests per source address. Its map is bounded: when full, addresses
// idle for a while are forgotten first, then arbitrary ones (a forgotten address starts again
// with a full burst, which is the lesser evil compared with unbounded memory). A mutex is
// enough here: the critical section is a map lookup.
type ipLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	buckets map[string]*ipBucket
}

type ipBucket struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

// idleForget is how long an address must be quiet before it may be forgotten first.
const idleForget = time.Minute

func newIPLimiter(limit rate.Limit, burst, max int) *ipLimiter {
	return &ipLimiter{limit: limit, burst: burst, max: max, buckets: map[string]*ipBucket{}}
}

// allow reports whether a request from ip may proceed now.
func (l *ipLimiter) allow(ip string, now time.Time) bool {
	if l.limit == rate.Inf {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[ip]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &ipBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[ip] = b
	}
	b.lastSeen = now
	return b.lim.AllowN(now, 1)
}

// evict makes room for at least one address.
func (l *ipLimiter) evict(now time.Time) {
	for ip, b := range l.buckets {
		if now.Sub(b.lastSeen) > idleForget {
			delete(l.buckets, ip)
		}
	}
	for ip := range l.buckets {
		if len(l.buckets) < l.max {
			break
		}
		delete(l.buckets, ip)
	}
}

func (l *ipLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
