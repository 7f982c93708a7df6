package proto

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// A registration travels as JSON (the tracker's HTTP API and its NATS bucket are JSON), but its
// signature covers a canonical binary form (AppendSigned), not the JSON bytes: JSON has many
// spellings of one registration (key order, white space, escapes, four accepted spellings of the
// public key), and a signature over one spelling would break whenever a hop re-encoded it. The
// binary form has exactly one spelling per registration, signs the key as its raw 32 bytes, and
// starts with a context string, so a registration signature can never be taken for a chunk
// signature made with the same key.

// MaxRegistrationBytes bounds a registration's JSON; a longer one is refused before it is decoded.
const MaxRegistrationBytes = 4096

// registrationContext separates registration signatures from chunk signatures (signContext).
const registrationContext = "crowdsurf registration v1\x00"

// ErrBadRegistration means a StreamRegistration has a missing or absurd field; the message says which.
var ErrBadRegistration = errors.New("bad stream registration")

// ErrRegistrationSignature means a registration is not signed by the key it names: someone who
// does not hold the stream's private key tried to register it (or the bytes were changed).
var ErrRegistrationSignature = errors.New("registration not signed by the stream's key")

// StreamRegistration is what the origin tells the tracker about its stream, signed with the
// stream's own key (the one in the watch link). The origin repeats it, freshly signed, at least
// every TrackerStreamTTL/3; the tracker takes a registration only when IssuedAtMs is newer than
// the last one it took for the same (Name, PublicKey) and close to its own clock.
type StreamRegistration struct {
	Name string `json:"name"`
	// PublicKey is the origin's Ed25519 public key as ParsePublicKey reads it (FormatPublicKey's
	// spelling, or standard base64).
	PublicKey string `json:"public_key"`
	// QUICAddr is the origin's QUIC host:port (the root of every stripe).
	QUICAddr string `json:"quic_addr"`
	// HTTPURL is the base URL of the origin's HLS/chunk endpoint (http or https).
	HTTPURL string `json:"http_url"`
	// Stripes is the stripe count, 1 to MaxStripes.
	Stripes           int   `json:"stripes"`
	SegmentDurationMs int64 `json:"segment_duration_ms"`
	BitrateBps        int64 `json:"bitrate_bps"`
	// IssuedAtMs is when the origin signed the registration, in Unix milliseconds.
	IssuedAtMs int64 `json:"issued_at_ms"`
	// Signature is the Ed25519 signature of AppendSigned's bytes, unpadded base64url.
	Signature string `json:"signature"`
}

// IssuedAt is IssuedAtMs as a time.
func (r *StreamRegistration) IssuedAt() time.Time { return time.UnixMilli(r.IssuedAtMs) }

// Sign stamps r with now and the key's public half, and signs it.
func (r *StreamRegistration) Sign(priv ed25519.PrivateKey, now time.Time) {
	pub := priv.Public().(ed25519.PublicKey)
	r.PublicKey = FormatPublicKey(pub)
	r.IssuedAtMs = now.UnixMilli()
	r.Signature = base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, r.appendSigned(nil, pub)))
}

// Verify checks that the key r names signed r, field for field.
func (r *StreamRegistration) Verify() error {
	pub, err := ParsePublicKey(r.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadRegistration, err)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(r.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature must be %d bytes in unpadded base64url", ErrRegistrationSignature, ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, r.appendSigned(nil, pub), sig) {
		return fmt.Errorf("stream %q: %w", r.Name, ErrRegistrationSignature)
	}
	return nil
}

// AppendSigned appends the bytes the signature covers. r's key must parse.
func (r *StreamRegistration) AppendSigned(b []byte) ([]byte, error) {
	pub, err := ParsePublicKey(r.PublicKey)
	if err != nil {
		return b, fmt.Errorf("%w: %w", ErrBadRegistration, err)
	}
	return r.appendSigned(b, pub), nil
}

func (r *StreamRegistration) appendSigned(b []byte, pub ed25519.PublicKey) []byte {
	b = append(b, registrationContext...)
	b = binary.AppendUvarint(b, uint64(len(r.Name)))
	b = append(b, r.Name...)
	b = append(b, pub...)
	b = binary.AppendUvarint(b, uint64(len(r.QUICAddr)))
	b = append(b, r.QUICAddr...)
	b = binary.AppendUvarint(b, uint64(len(r.HTTPURL)))
	b = append(b, r.HTTPURL...)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Stripes))
	b = binary.BigEndian.AppendUint64(b, uint64(r.SegmentDurationMs))
	b = binary.BigEndian.AppendUint64(b, uint64(r.BitrateBps))
	return binary.BigEndian.AppendUint64(b, uint64(r.IssuedAtMs))
}

// ParseStreamRegistration decodes, validates and verifies a registration: what it returns was
// signed by the key it names. Freshness (replays) is the tracker's question.
func ParseStreamRegistration(b []byte) (StreamRegistration, error) {
	if len(b) > MaxRegistrationBytes {
		return StreamRegistration{}, fmt.Errorf("%w: %w: %d bytes, at most %d", ErrBadRegistration, ErrTooLarge, len(b), MaxRegistrationBytes)
	}
	var r StreamRegistration
	if err := json.Unmarshal(b, &r); err != nil {
		return StreamRegistration{}, fmt.Errorf("%w: %w", ErrBadRegistration, err)
	}
	if err := r.Validate(); err != nil {
		return StreamRegistration{}, err
	}
	if err := r.Verify(); err != nil {
		return StreamRegistration{}, err
	}
	return r, nil
}

// Validate reports the first absurd field of r, wrapped in ErrBadRegistration. It does not check
// the signature (Verify does).
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
	if err := checkRegistrationAddr(r.QUICAddr); err != nil {
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
	if r.IssuedAtMs <= 0 {
		return bad("issued_at_ms %d must be a positive Unix time in milliseconds", r.IssuedAtMs)
	}
	if r.Signature == "" {
		return fmt.Errorf("%w: %w: unsigned", ErrBadRegistration, ErrRegistrationSignature)
	}
	return nil
}
