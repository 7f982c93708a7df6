package simnet

import (
	"fmt"
	"net/netip"
	"time"
)

// Link rates are in bits per second; these make configs readable
// (Uplink: 2 * simnet.Mbps).
const (
	Kbps int64 = 1000
	Mbps       = 1000 * Kbps
	Gbps       = 1000 * Mbps
)

// DefaultMTU is the largest UDP payload a host accepts unless configured
// otherwise. It equals quic-go's maximum packet size, so QUIC (which starts
// at 1280 bytes) always fits.
const DefaultMTU = 1452

// DefaultReceiveBuffer is the socket receive buffer of a host, in bytes. It
// only fills when the application reads slower than packets arrive.
const DefaultReceiveBuffer = 4 << 20

// minQueueBytes is the smallest drop-tail buffer a capped link gets: at low
// rates 100 ms of queue would hold only a handful of packets.
const minQueueBytes = 64 << 10

// HostConfig describes a host's access link. The zero value is an
// unlimited, lossless, zero-latency link with the default MTU.
type HostConfig struct {
	// Addr is the host's address. Zero assigns the next free 10.x.y.z:4433.
	Addr netip.AddrPort
	// Uplink caps the host's sending rate in bits/s; 0 means unlimited.
	Uplink int64
	// UplinkBuffer is the uplink's drop-tail queue in bytes. Zero means
	// 100 ms worth of Uplink, at least 64 KiB.
	UplinkBuffer int
	// Downlink caps the host's receiving rate in bits/s; 0 means unlimited.
	Downlink int64
	// DownlinkBuffer is the downlink's drop-tail queue in bytes, defaulted
	// like UplinkBuffer.
	DownlinkBuffer int
	// Latency is the one-way delay of this host's access link. A packet from
	// A to B is delayed by A.Latency + B.Latency (plus queueing).
	Latency time.Duration
	// Loss is the probability in [0, 1) that this host's access link loses a
	// packet, applied to packets it sends and to packets it receives.
	Loss float64
	// MTU is the largest UDP payload in bytes; bigger packets are dropped
	// silently, as a router would. Zero means DefaultMTU.
	MTU int
	// ReceiveBuffer is the socket receive buffer in bytes (like SO_RCVBUF).
	// Zero means DefaultReceiveBuffer.
	ReceiveBuffer int
	// NAT puts the host behind a home router; the zero value leaves it public. With a NAT,
	// Addr is the host's private address (zero: the next free 172.16.x.y:4433).
	NAT NAT
}

func (c HostConfig) withDefaults() HostConfig {
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.ReceiveBuffer == 0 {
		c.ReceiveBuffer = DefaultReceiveBuffer
	}
	if c.UplinkBuffer == 0 {
		c.UplinkBuffer = defaultQueueBytes(c.Uplink)
	}
	if c.DownlinkBuffer == 0 {
		c.DownlinkBuffer = defaultQueueBytes(c.Downlink)
	}
	return c
}

// defaultQueueBytes is 100 ms of the link rate, at least minQueueBytes: a
// plausible home-router buffer.
func defaultQueueBytes(rate int64) int {
	b := int(rate / 8 / 10)
	return max(b, minQueueBytes)
}

func (c HostConfig) validate() error {
	switch {
	case c.Uplink < 0 || c.Downlink < 0:
		return fmt.Errorf("simnet: host config: negative rate (uplink %d, downlink %d)", c.Uplink, c.Downlink)
	case c.Latency < 0:
		return fmt.Errorf("simnet: host config: negative latency %s", c.Latency)
	case c.Loss < 0 || c.Loss >= 1:
		return fmt.Errorf("simnet: host config: loss %v outside [0, 1)", c.Loss)
	case c.MTU < 0 || c.ReceiveBuffer < 0 || c.UplinkBuffer < 0 || c.DownlinkBuffer < 0:
		return fmt.Errorf("simnet: host config: negative size")
	}
	return c.NAT.validate()
}

// rateLink is one direction of a capped access link: a FIFO drained at a
// fixed bit rate behind a drop-tail buffer. It keeps only the time its last
// queued bit leaves, which is enough to know both the queue length and every
// new packet's departure time.
type rateLink struct {
	rate      int64 // bits/s; 0 = unlimited
	buffer    int   // bytes
	busyUntil int64 // simulated ns when the queue drains
}

// depart enqueues a packet of size bytes at time now and returns when its
// last bit leaves, or false if the buffer is full (drop tail).
func (l *rateLink) depart(now int64, size int) (int64, bool) {
	if l.rate == 0 {
		return now, true
	}
	start := now
	if l.busyUntil > now {
		backlog := float64(l.busyUntil-now) * float64(l.rate) / 8 / 1e9
		if backlog+float64(size) > float64(l.buffer) {
			return 0, false
		}
		start = l.busyUntil
	}
	l.busyUntil = start + int64(float64(size)*8*1e9/float64(l.rate))
	return l.busyUntil, true
}
