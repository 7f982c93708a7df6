package proto

// The tracker's HTTP API (JSON). Peers announce themselves every AnnounceResponse.AnnounceIntervalMs
// and get neighbour candidates back; the origin registers its stream and re-registers it at least
// every TrackerStreamTTL/3, because a registration the tracker has not heard again within
// TrackerStreamTTL ages out (a dead origin's stream disappears by itself).
//
//	POST /v1/announce        AnnounceRequest    -> AnnounceResponse
//	POST /v1/streams         StreamRegistration -> StreamStatus
//	GET  /v1/streams                            -> []StreamStatus
//	GET  /v1/streams/{name}                     -> StreamStatus
//	any error                                   -> ErrorResponse with a 4xx/5xx status
//
// Errors: 400 a field is missing or absurd (the message names it), 401 POST /v1/streams without
// the tracker's register token (when it has one), 404 unknown stream, 409 a live stream is
// registered with another public key, 413 body too large, 429 too many requests from this
// source address (retry after a second), 503 the tracker cannot reach NATS.
//
// The origin may also register over NATS by writing the StreamRegistration as JSON under
// TrackerStreamKey(name) in the TrackerStreamsBucket key-value bucket.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// API paths of the tracker.
const (
	TrackerAnnouncePath = "/v1/announce"
	TrackerStreamsPath  = "/v1/streams"
)

// NATS JetStream key-value buckets that hold the swarm state shared by all tracker replicas.
const (
	// TrackerPeersBucket maps TrackerPeerKey(stream, peer) to a PeerRecord; its TTL forgets silent peers.
	TrackerPeersBucket = "crowdsurf_peers"
	// TrackerStreamsBucket maps TrackerStreamKey(name) to a StreamRegistration.
	TrackerStreamsBucket = "crowdsurf_streams"
)

// Limits and defaults of the tracker API. A request outside them is rejected with 400.
const (
	// MaxPeerIDLen bounds a peer id (hex or base64url of a key fits).
	MaxPeerIDLen = 64
	// TrackerDefaultStripes is the stripe count of a registration that names none.
	TrackerDefaultStripes = 4
	// TrackerMaxStripes bounds the stripe count of a stream (and so the length of Depths).
	TrackerMaxStripes = MaxStripes
	// TrackerMaxDepth bounds an announced depth; deeper trees are a bug, not a swarm.
	TrackerMaxDepth = 1024
	// TrackerMaxFreeSlots bounds announced free child slots.
	TrackerMaxFreeSlots = 4096
	// TrackerMaxBps bounds announced upload budgets and stream bitrates (1 Tbit/s).
	TrackerMaxBps = 1_000_000_000_000
	// TrackerMaxAddrLen bounds a QUIC host:port or an HTTP URL.
	TrackerMaxAddrLen = 256
	// TrackerStreamTTL is how long a stream registration lives without being renewed.
	TrackerStreamTTL = 30 * time.Second
)

// ErrBadAnnounce means an AnnounceRequest has a missing or absurd field; the message says which.
var ErrBadAnnounce = errors.New("bad announce")

// ErrBadRegistration means a StreamRegistration has a missing or absurd field; the message says which.
var ErrBadRegistration = errors.New("bad stream registration")

// AnnounceRequest is what a peer tells the tracker every few seconds.
type AnnounceRequest struct {
	PeerID string `json:"peer_id"`
	Stream string `json:"stream"`
	// Addr is the peer's QUIC address, host:port. An empty or unspecified host ("":4242,
	// "0.0.0.0:4242") is replaced by the address the request came from.
	Addr string `json:"addr"`
	// UploadBps is the peer's upload budget in bits per second.
	UploadBps int64 `json:"upload_bps"`
	// Depths holds the peer's depth per stripe (origin = 0, its children 1, ...); -1 means the
	// peer has no parent for that stripe. Empty means not attached at all.
	Depths []int `json:"depths"`
	// FreeSlots is how many more stripe children the peer accepts within its budget.
	FreeSlots int         `json:"free_slots"`
	Quality   PeerQuality `json:"quality"`
}

// PeerQuality is what a peer reports about its own playback, for operators.
type PeerQuality struct {
	BufferMs int64 `json:"buffer_ms"`
	Stalls   int64 `json:"stalls"`
	// FallbackShare is the share (0..1) of bytes the peer fetched over HTTP from the origin.
	FallbackShare float64 `json:"fallback_share"`
}

// PeerInfo is a neighbour candidate as the tracker hands it out.
type PeerInfo struct {
	PeerID    string `json:"peer_id"`
	Addr      string `json:"addr"`
	Depths    []int  `json:"depths"`
	FreeSlots int    `json:"free_slots"`
}

// OriginInfo says where a stream's origin is: the root of every stripe (QUIC) and the CDN path (HTTP).
type OriginInfo struct {
	QUICAddr string `json:"quic_addr"`
	HTTPURL  string `json:"http_url"`
	// PublicKey is the origin's Ed25519 key, base64. A peer trusts the key in its watch link, not
	// this one; the tracker repeats it only so a mismatch can be reported.
	PublicKey string `json:"public_key"`
}

// AnnounceResponse is the tracker's answer to an AnnounceRequest.
type AnnounceResponse struct {
	// Neighbours are candidates, never the asker, in order of preference: first a weighted
	// random sample favouring free slots and small depth (good parents), then a few uniform
	// random picks that keep the mesh connected. Empty when the asker is alone.
	Neighbours         []PeerInfo `json:"neighbours"`
	Origin             OriginInfo `json:"origin"`
	Stripes            int        `json:"stripes"`
	AnnounceIntervalMs int64      `json:"announce_interval_ms"`
}

// StreamRegistration is what the origin tells the tracker about its stream. The origin repeats it
// at least every TrackerStreamTTL/3.
type StreamRegistration struct {
	Name string `json:"name"`
	// PublicKey is the origin's Ed25519 public key as ParsePublicKey reads it (FormatPublicKey's
	// spelling, or standard base64).
	PublicKey string `json:"public_key"`
	// QUICAddr is the origin's QUIC host:port (the root of every stripe).
	QUICAddr string `json:"quic_addr"`
	// HTTPURL is the base URL of the origin's HLS/chunk endpoint (http or https).
	HTTPURL string `json:"http_url"`
	// Stripes is the stripe count; 0 means TrackerDefaultStripes.
	Stripes           int   `json:"stripes"`
	SegmentDurationMs int64 `json:"segment_duration_ms"`
	BitrateBps        int64 `json:"bitrate_bps"`
}

// StreamStatus is a registered stream and the tracker's view of its swarm.
type StreamStatus struct {
	StreamRegistration
	SwarmSize int `json:"swarm_size"`
	// UploadBps is the sum of the announced upload budgets of the swarm.
	UploadBps int64 `json:"upload_bps"`
	// DepthHistogram has one entry per stripe.
	DepthHistogram []StripeDepths `json:"depth_histogram"`
}

// StripeDepths counts a stripe's peers by depth.
type StripeDepths struct {
	Stripe int `json:"stripe"`
	// Peers[d] is the number of peers at depth d.
	Peers []int `json:"peers"`
	// Unattached counts peers with no parent for this stripe.
	Unattached int `json:"unattached"`
}

// PeerRecord is what the tracker stores per peer in TrackerPeersBucket.
type PeerRecord struct {
	PeerID    string      `json:"peer_id"`
	Stream    string      `json:"stream"`
	Addr      string      `json:"addr"`
	UploadBps int64       `json:"upload_bps"`
	Depths    []int       `json:"depths"`
	FreeSlots int         `json:"free_slots"`
	Quality   PeerQuality `json:"quality"`
}

// ErrorResponse is the body of every error answer of the tracker.
type ErrorResponse struct {
	Error string `json:"error"`
}

// TrackerStreamKey is the key of a stream in TrackerStreamsBucket. NATS keys use '.' as a token
// separator and forbid empty tokens, so the dots a stream name may hold become '=', which no
// stream name holds.
func TrackerStreamKey(stream string) string { return strings.ReplaceAll(stream, ".", "=") }

// TrackerPeerKey is the key of a peer in TrackerPeersBucket: "<stream key>.<peer id>".
func TrackerPeerKey(stream, peerID string) string { return TrackerStreamKey(stream) + "." + peerID }

// ValidPeerID reports whether id can name a peer: 1 to MaxPeerIDLen characters from [A-Za-z0-9_=-],
// so it is a valid NATS key token and safe in URLs.
func ValidPeerID(id string) error {
	if len(id) == 0 || len(id) > MaxPeerIDLen {
		return fmt.Errorf("peer id %q must be 1 to %d characters", trackerClip(id), MaxPeerIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '=':
		default:
			return fmt.Errorf("peer id %q has character %q; use letters, digits, '_', '-' or '='", trackerClip(id), c)
		}
	}
	return nil
}

// ParseAnnounceRequest decodes and validates an AnnounceRequest. The stream's stripe count is
// checked by the tracker, which knows it.
func ParseAnnounceRequest(b []byte) (AnnounceRequest, error) {
	var r AnnounceRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return AnnounceRequest{}, fmt.Errorf("%w: %w", ErrBadAnnounce, err)
	}
	if err := r.Validate(); err != nil {
		return AnnounceRequest{}, err
	}
	return r, nil
}

// Validate reports the first absurd field of r, wrapped in ErrBadAnnounce.
func (r *AnnounceRequest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadAnnounce, fmt.Sprintf(format, args...))
	}
	if err := ValidPeerID(r.PeerID); err != nil {
		return bad("%v", err)
	}
	if err := ValidStreamName(r.Stream); err != nil {
		return bad("%v", err)
	}
	if err := trackerCheckAddr(r.Addr, true); err != nil {
		return bad("addr: %v", err)
	}
	if r.UploadBps < 0 || r.UploadBps > TrackerMaxBps {
		return bad("upload_bps %d must be 0 to %d", r.UploadBps, int64(TrackerMaxBps))
	}
	if len(r.Depths) > TrackerMaxStripes {
		return bad("%d depths, at most %d stripes", len(r.Depths), TrackerMaxStripes)
	}
	for i, d := range r.Depths {
		if d < -1 || d > TrackerMaxDepth {
			return bad("depth %d of stripe %d must be -1 (unattached) to %d", d, i, TrackerMaxDepth)
		}
	}
	if r.FreeSlots < 0 || r.FreeSlots > TrackerMaxFreeSlots {
		return bad("free_slots %d must be 0 to %d", r.FreeSlots, TrackerMaxFreeSlots)
	}
	q := r.Quality
	if q.BufferMs < 0 || q.Stalls < 0 {
		return bad("quality figures must not be negative")
	}
	if !(q.FallbackShare >= 0 && q.FallbackShare <= 1) { // also rejects NaN
		return bad("quality.fallback_share %v must be 0 to 1", q.FallbackShare)
	}
	return nil
}

// ParseStreamRegistration decodes, defaults and validates a StreamRegistration.
func ParseStreamRegistration(b []byte) (StreamRegistration, error) {
	var r StreamRegistration
	if err := json.Unmarshal(b, &r); err != nil {
		return StreamRegistration{}, fmt.Errorf("%w: %w", ErrBadRegistration, err)
	}
	r.ApplyDefaults()
	if err := r.Validate(); err != nil {
		return StreamRegistration{}, err
	}
	return r, nil
}

// ApplyDefaults fills the fields a registration may leave out.
func (r *StreamRegistration) ApplyDefaults() {
	if r.Stripes == 0 {
		r.Stripes = TrackerDefaultStripes
	}
}

// Validate reports the first absurd field of r, wrapped in ErrBadRegistration.
func (r *StreamRegistration) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadRegistration, fmt.Sprintf(format, args...))
	}
	if err := ValidStreamName(r.Name); err != nil {
		return bad("%v", err)
	}
	if _, err := ParsePublicKey(r.PublicKey); err != nil {
		return bad("%v", err)
	}
	if err := trackerCheckAddr(r.QUICAddr, false); err != nil {
		return bad("quic_addr: %v", err)
	}
	if len(r.HTTPURL) > TrackerMaxAddrLen {
		return bad("http_url longer than %d", TrackerMaxAddrLen)
	}
	u, err := url.Parse(r.HTTPURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("http_url %q must be an absolute http(s) URL", trackerClip(r.HTTPURL))
	}
	if r.Stripes < 1 || r.Stripes > TrackerMaxStripes {
		return bad("stripes %d must be 1 to %d", r.Stripes, TrackerMaxStripes)
	}
	if r.SegmentDurationMs < 0 || r.SegmentDurationMs > 60_000 {
		return bad("segment_duration_ms %d must be 0 to 60000", r.SegmentDurationMs)
	}
	if r.BitrateBps < 0 || r.BitrateBps > TrackerMaxBps {
		return bad("bitrate_bps %d must be 0 to %d", r.BitrateBps, int64(TrackerMaxBps))
	}
	return nil
}

// trackerCheckAddr checks a QUIC address. With emptyHostOK the host may be empty or unspecified
// (the tracker fills in the request's source address).
func trackerCheckAddr(s string, emptyHostOK bool) error {
	if len(s) > TrackerMaxAddrLen {
		return fmt.Errorf("longer than %d", TrackerMaxAddrLen)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", trackerClip(s))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port must be 1 to 65535", trackerClip(s))
	}
	if host == "" {
		if emptyHostOK {
			return nil
		}
		return fmt.Errorf("%q has no host", trackerClip(s))
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsUnspecified() && !emptyHostOK {
			return fmt.Errorf("%q: unspecified address", trackerClip(s))
		}
		if ip.IsMulticast() {
			return fmt.Errorf("%q: multicast address", trackerClip(s))
		}
		return nil
	}
	if !trackerHostname(host) {
		return fmt.Errorf("%q: host is neither an IP address nor a host name", trackerClip(s))
	}
	return nil
}

func trackerHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// trackerClip shortens what we echo back in an error, so a huge field does not make a huge answer.
func trackerClip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
