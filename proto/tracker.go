package proto

// The tracker's HTTP API (JSON). Peers announce themselves every AnnounceResponse.AnnounceIntervalMs
// and get neighbour candidates back; the origin registers its stream and re-registers it at least
// every TrackerStreamTTL/3, because a registration the tracker has not heard again within
// TrackerStreamTTL ages out (a dead origin's stream disappears by itself).
//
//	POST TrackerAnnouncePath       AnnounceRequest    -> AnnounceResponse
//	POST TrackerStreamsPath        StreamRegistration -> StreamStatus
//	GET  TrackerStreamsPath                           -> []StreamStatus
//	GET  TrackerStreamsPath/{name}[?key=KEY]          -> StreamStatus
//	any error                                         -> ErrorResponse with a 4xx/5xx status
//
// A swarm is a (stream name, public key) pair: announces name the key from the watch link, and a
// registration is signed by that key (see StreamRegistration), so whoever holds another key can
// neither block a name nor join or overwrite its swarm.
//
// Errors: 400 a field is missing or absurd (the message names it), 401 POST TrackerStreamsPath
// without the tracker's register token (when it has one), 403 a peer id without its secret, an
// address that is not the announcing host's, or a registration that is not signed by its key or
// is older than the last one, 404 unknown stream, 409 GET of a name registered under several keys
// without ?key=, 413 body too large, 429 too many requests from this source address,
// 503 the tracker cannot reach NATS or holds as many streams as it may. An announce from a host
// that already runs as many peers in the swarm as the tracker allows is answered (200) but not
// listed (AnnounceResponse.Listed).
//
// The origin may also register over NATS, writing the signed registration into the tracker's
// streams bucket (tracker/registrar); the tracker verifies it the same way.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// API paths of the tracker; the server routes and the client calls these, nothing else.
const (
	TrackerAnnouncePath = "/v1/announce"
	TrackerStreamsPath  = "/v1/streams"
)

// Limits and defaults of the tracker API. A request outside them is rejected with 400.
const (
	// MaxPeerIDLen bounds a peer id (hex or base64url of a key fits).
	MaxPeerIDLen = 64
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
	// PeerSecretLen is the size of the per-run secret a peer id is derived from.
	PeerSecretLen = 32
	// PeerIDLen is the size of a peer id (the mesh HELLO carries it raw; the tracker API in hex).
	PeerIDLen = 16
)

// ErrBadAnnounce means an AnnounceRequest has a missing or absurd field; the message says which.
var ErrBadAnnounce = errors.New("bad announce")

// ErrPeerSecret means an announce's peer id is not the one its secret derives: someone announces
// under another peer's id, or the peer is broken.
var ErrPeerSecret = errors.New("peer id does not belong to the announced secret")

// PeerState is what a peer says about itself; the announce carries it, the tracker stores it.
type PeerState struct {
	PeerID string `json:"peer_id"`
	Stream string `json:"stream"`
	// StreamKey is the origin's public key from the watch link (FormatPublicKey's spelling, or
	// any ParsePublicKey reads): with Stream it names the swarm.
	StreamKey string `json:"stream_key"`
	// Addr is the peer's QUIC address, IP:port. An empty or unspecified host (":4242",
	// "0.0.0.0:4242") is replaced by the address the request came from. Host names are refused:
	// the tracker checks that the address is the announcing host's own.
	Addr string `json:"addr"`
	// UploadBps is the peer's upload budget in bits per second.
	UploadBps int64 `json:"upload_bps"`
	// Depths holds the peer's depth per stripe (origin = 0, its children 1, ...); -1 means the
	// peer has no parent for that stripe. Empty means not attached at all.
	Depths []int `json:"depths"`
	// Parents holds the peer id of the peer's parent per stripe, "" where it has none. The
	// tracker believes a peer's free slots only once children on other hosts name it here.
	Parents []string `json:"parents"`
	// FreeSlots is how many more stripe children the peer accepts within its budget.
	FreeSlots int         `json:"free_slots"`
	Quality   PeerQuality `json:"quality"`
	// ReflexiveAddr is the mesh socket's address as the tracker's observers saw it (IP:port);
	// empty when the peer has not asked them. The tracker checks its host like Addr's.
	ReflexiveAddr string `json:"reflexive_addr,omitempty"`
	// NATKind is what the observers told of the peer's NAT. With a ReflexiveAddr it decides
	// who may dial whom (tracker.ConnectPath); without one the peer counts as reachable at Addr,
	// as before NAT traversal.
	NATKind NATKind `json:"nat_kind,omitempty"`
}

// AnnounceRequest is what a peer tells the tracker every few seconds.
type AnnounceRequest struct {
	PeerState
	// PeerSecret is PeerSecretLen random bytes in hex, drawn once per run; PeerID must be
	// PeerIDFromSecret of it. The tracker checks and forgets it: it is never stored nor shown.
	PeerSecret string `json:"peer_secret"`
}

// PeerRecord is what the tracker stores per peer in its peers bucket: the peer's state (never
// its secret) and the address its announce came from.
type PeerRecord struct {
	PeerState
	// SourceIP is the announcing host's address as the tracker saw it.
	SourceIP string `json:"source_ip"`
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
	PeerID string `json:"peer_id"`
	// Addr is where to dial the peer: its reflexive address when it is behind a NAT.
	Addr      string `json:"addr"`
	Depths    []int  `json:"depths"`
	FreeSlots int    `json:"free_slots"`
	// NATKind is the candidate's NAT as its observers reported it (omitted: unknown, or a
	// peer that reported none and is dialled at Addr as before).
	NATKind NATKind `json:"nat_kind,omitempty"`
	// Punch, when set, says both sides punch DelayMs after this answer and the asker then
	// dials Addr from its mesh socket: the candidate sits behind a cone NAT and has been asked
	// to punch towards the asker at the same moment. A NATed candidate without it is not dialled.
	Punch *PunchInfo `json:"punch,omitempty"`
}

// PunchInfo schedules one punch between the asker and a candidate.
type PunchInfo struct {
	// ID is the attempt's id (hex of a TxID), carried in every PUNCH datagram.
	ID string `json:"id"`
	// DelayMs is how long after receiving the answer to start (0 to MaxPunchDelay).
	DelayMs int64 `json:"delay_ms"`
}

// PunchOrder is a punch another peer asked the tracker for: punch towards Target (that peer's
// reflexive address) DelayMs after receiving it; the other peer dials. The tracker pushes it
// over UDP at once (a PUNCH_REQUEST from its observer) and repeats it in the next announce
// answer in case the datagram was lost.
type PunchOrder struct {
	ID      string `json:"id"`
	Target  string `json:"target"`
	DelayMs int64  `json:"delay_ms"`
}

// OriginInfo says where a stream's origin is: the root of every stripe (QUIC) and the CDN path (HTTP).
type OriginInfo struct {
	QUICAddr string `json:"quic_addr"`
	HTTPURL  string `json:"http_url"`
	// PublicKey is the origin's Ed25519 key, base64: the swarm's key, which the announce named.
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
	// Registration is the stream's registration as its origin signed it. A peer takes the
	// origin's addresses from it, after checking the signature against the watch link's key, and
	// never from Origin: a tracker (or whoever answers in its name) could aim every viewer's
	// CDN requests and QUIC dials at a third party. Nil from trackers before signed registrations.
	Registration *StreamRegistration `json:"registration,omitempty"`
	// Listed is false when the tracker answered but does not hand the asker out to others: its
	// host runs as many peers in the swarm as the tracker allows, or the swarm is full. The
	// asker still receives from its neighbours and the CDN.
	Listed bool `json:"listed"`
	// Observers are the tracker's reflexive-address observers (UDP IP:port, two on different
	// ports): a peer asks them for its reflexive address and NAT kind and keeps its mapping
	// towards them open, the path the tracker's PUNCH_REQUESTs take. Empty: the tracker runs none.
	Observers []string `json:"observers,omitempty"`
	// Punches are punches other peers' answers scheduled with the asker, not older than a
	// couple of seconds.
	Punches []PunchOrder `json:"punches,omitempty"`
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

// ErrorResponse is the body of every error answer of the tracker.
type ErrorResponse struct {
	Error string `json:"error"`
}

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
	r, err := decodeAnnounceJSON(b)
	if err != nil {
		return AnnounceRequest{}, fmt.Errorf("%w: %w", ErrBadAnnounce, err)
	}
	if err := r.Validate(); err != nil {
		return AnnounceRequest{}, err
	}
	return r, nil
}

// Validate reports the first absurd field of r, wrapped in ErrBadAnnounce. Whether the secret
// derives the peer id is CheckPeerSecret's question (ErrPeerSecret), not a format error.
func (r *AnnounceRequest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadAnnounce, fmt.Sprintf(format, args...))
	}
	if err := ValidPeerID(r.PeerID); err != nil {
		return bad("%v", err)
	}
	if len(r.PeerSecret) != 2*PeerSecretLen {
		return bad("peer_secret must be %d hex digits", 2*PeerSecretLen)
	}
	if _, err := hex.DecodeString(r.PeerSecret); err != nil {
		return bad("peer_secret must be %d hex digits", 2*PeerSecretLen)
	}
	if err := ValidStreamName(r.Stream); err != nil {
		return bad("%v", err)
	}
	if _, err := ParsePublicKey(r.StreamKey); err != nil {
		return bad("stream_key: %v", err)
	}
	if _, err := ParseAnnounceAddr(r.Addr); err != nil {
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
	if len(r.Parents) > TrackerMaxStripes {
		return bad("%d parents, at most %d stripes", len(r.Parents), TrackerMaxStripes)
	}
	for i, p := range r.Parents {
		if p == "" {
			continue
		}
		if err := ValidPeerID(p); err != nil {
			return bad("parent of stripe %d: %v", i, err)
		}
	}
	if r.FreeSlots < 0 || r.FreeSlots > TrackerMaxFreeSlots {
		return bad("free_slots %d must be 0 to %d", r.FreeSlots, TrackerMaxFreeSlots)
	}
	if r.ReflexiveAddr != "" {
		if ap, err := ParseAnnounceAddr(r.ReflexiveAddr); err != nil || !ap.Addr().IsValid() {
			return bad("reflexive_addr %q must be IP:port", trackerClip(r.ReflexiveAddr))
		}
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

// NewPeerSecret draws a peer's per-run secret from rnd (crypto/rand.Read in production) and
// returns it with the peer id it derives.
func NewPeerSecret(rnd func([]byte) (int, error)) (secret [PeerSecretLen]byte, id [PeerIDLen]byte, err error) {
	if _, err := rnd(secret[:]); err != nil {
		return secret, id, fmt.Errorf("peer secret: %w", err)
	}
	return secret, PeerIDFromSecret(secret), nil
}

// PeerIDFromSecret derives a peer id: the first PeerIDLen bytes of SHA-256(secret). Anyone can
// check it; only the holder of the secret can announce under the id.
func PeerIDFromSecret(secret [PeerSecretLen]byte) [PeerIDLen]byte {
	h := sha256.Sum256(secret[:])
	return [PeerIDLen]byte(h[:PeerIDLen])
}

// CheckPeerSecret reports, wrapped in ErrPeerSecret, whether the hex secret does not derive the
// hex peer id (as FormatPeerID spells it).
func CheckPeerSecret(peerID, secretHex string) error {
	var secret [PeerSecretLen]byte
	if n, err := hex.Decode(secret[:], []byte(secretHex)); err != nil || n != PeerSecretLen || len(secretHex) != 2*PeerSecretLen {
		return fmt.Errorf("%w: the secret is not %d hex digits", ErrPeerSecret, 2*PeerSecretLen)
	}
	id := PeerIDFromSecret(secret)
	if hex.EncodeToString(id[:]) != peerID {
		return fmt.Errorf("%w: peer %q", ErrPeerSecret, trackerClip(peerID))
	}
	return nil
}

// ParseAnnounceAddr reads a peer's QUIC address: an IP literal or an empty host (which the
// tracker fills in), and a port 1 to 65535. Host names are refused (the tracker must be able to
// compare the address with the announcing host's), and so are addresses nobody can be at:
// broadcast and multicast. An unspecified host comes back as the zero netip.Addr, like an empty one.
func ParseAnnounceAddr(s string) (netip.AddrPort, error) {
	host, port, err := splitAddr(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if host == "" {
		return netip.AddrPortFrom(netip.Addr{}, port), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: host must be an IP address, not a name", trackerClip(s))
	}
	ip = ip.Unmap()
	if err := checkUsableIP(ip, s); err != nil {
		return netip.AddrPort{}, err
	}
	if ip.IsUnspecified() {
		ip = netip.Addr{}
	}
	return netip.AddrPortFrom(ip, port), nil
}

// checkRegistrationAddr checks an origin's QUIC address: a host name or an IP that can be
// dialled (not unspecified, broadcast or multicast), and a port.
func checkRegistrationAddr(s string) error {
	host, _, err := splitAddr(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host", trackerClip(s))
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.IsUnspecified() {
			return fmt.Errorf("%q: unspecified address", trackerClip(s))
		}
		return checkUsableIP(ip, s)
	}
	if !validHostname(host) {
		return fmt.Errorf("%q: host is neither an IP address nor a host name", trackerClip(s))
	}
	return nil
}

func splitAddr(s string) (host string, port uint16, err error) {
	if len(s) > TrackerMaxAddrLen {
		return "", 0, fmt.Errorf("longer than %d", TrackerMaxAddrLen)
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", trackerClip(s))
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port must be 1 to 65535", trackerClip(s))
	}
	return host, uint16(p), nil
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func checkUsableIP(ip netip.Addr, s string) error {
	switch {
	case ip == limitedBroadcast:
		return fmt.Errorf("%q: broadcast address", trackerClip(s))
	case ip.IsMulticast():
		return fmt.Errorf("%q: multicast address", trackerClip(s))
	}
	return nil
}

// trackerClip shortens what we echo back in an error, so a huge field does not make a huge answer.
func trackerClip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
