package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ALPN names the mesh protocol in the QUIC handshake; a peer that speaks another major version
// fails the handshake instead of misreading our frames. Minor versions are negotiated in HELLO.
const ALPN = "crowdsurf/1"

// Protocol versions this implementation speaks inside ALPN "crowdsurf/1".
const (
	// MinVersion is the oldest version this implementation speaks.
	MinVersion uint16 = 1
	// MaxVersion is the newest version this implementation speaks. Version 2 adds STATUS_SLOTS
	// (a Status with each stripe's free child slots); a version 1 neighbour gets plain STATUS.
	MaxVersion uint16 = 2
)

// DefaultStripes is how many stripes a stream is split into unless its origin says otherwise:
// the one home of that default for the origin, the peer, the tracker and the load test.
const DefaultStripes = 4

// NoDepth is the depth of a stripe a peer is not attached to.
const NoDepth uint8 = 0xff

// MaxStripes bounds the number of stripes a stream may be split into.
const MaxStripes = 16

// MaxMessageSize bounds a control message's payload. The length field is 16 bits, so a receiver
// never allocates more than this for one message.
const MaxMessageSize = 1<<16 - 1

const messageHeaderLen = 1 + 2 // type, payload length

// MessageType is the first byte of a control message frame.
type MessageType uint8

// Message types. A receiver rejects any other value with ErrMalformed.
const (
	// TypeHello is a Hello.
	TypeHello MessageType = 1
	// TypeStatus is a Status.
	TypeStatus MessageType = 2
	// TypeHave is a Have.
	TypeHave MessageType = 3
	// TypeSubscribe is a Subscribe.
	TypeSubscribe MessageType = 4
	// TypeSubscribeAck is a SubscribeAck.
	TypeSubscribeAck MessageType = 5
	// TypeUnsubscribe is an Unsubscribe.
	TypeUnsubscribe MessageType = 6
	// TypeRequest is a Request.
	TypeRequest MessageType = 7
	// TypeCancel is a Cancel.
	TypeCancel MessageType = 8
	// TypeGoodbye is a Goodbye.
	TypeGoodbye MessageType = 9
	// TypeStatusSlots is a Status with StripeSlots (protocol version 2).
	TypeStatusSlots MessageType = 10
)

// String names the type as the protocol description does (HELLO, SUBSCRIBE_ACK, ...).
func (t MessageType) String() string {
	switch t {
	case TypeHello:
		return "HELLO"
	case TypeStatus:
		return "STATUS"
	case TypeHave:
		return "HAVE"
	case TypeSubscribe:
		return "SUBSCRIBE"
	case TypeSubscribeAck:
		return "SUBSCRIBE_ACK"
	case TypeUnsubscribe:
		return "UNSUBSCRIBE"
	case TypeRequest:
		return "REQUEST"
	case TypeCancel:
		return "CANCEL"
	case TypeGoodbye:
		return "GOODBYE"
	case TypeStatusSlots:
		return "STATUS_SLOTS"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Message is a mesh control message. Append writes the whole frame: type, 16-bit payload length,
// payload.
type Message interface {
	// Type is the message's type byte.
	Type() MessageType
	// Append appends the whole frame to b. The message must be valid (as ParseMessage would
	// accept it): a field too long for its length prefix does not fit.
	Append(b []byte) []byte
}

// appendFrame writes the type and a length placeholder, lets payload append, then patches the length.
func appendFrame(b []byte, t MessageType, payload func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, byte(t), 0, 0)
	b = payload(b)
	binary.BigEndian.PutUint16(b[start+1:], uint16(len(b)-start-messageHeaderLen))
	return b
}

// ParseMessage decodes one control message frame from the start of b and returns it with the
// number of bytes used.
//
// Errors: io.ErrUnexpectedEOF when b holds only part of a frame, so a caller reading a stream
// reads more and tries again; the frame's length field is at most MaxMessageSize and the payload
// is never copied, so nothing is allocated for a length before the bytes are there. Once the whole
// frame is there, everything wrong inside it is ErrMalformed (or ErrBadStreamName): an unknown
// type, a payload shorter than its fields ("truncated payload"), trailing bytes, a count larger
// than its payload, out-of-range values. Every frame ParseMessage accepts re-encodes with Append
// to exactly the bytes it consumed.
func ParseMessage(b []byte) (Message, int, error) {
	r := reader{b: b}
	t := MessageType(r.u8())
	n := int(r.u16())
	payload := r.bytes(n)
	if r.err != nil {
		return nil, 0, r.err
	}
	p := reader{b: payload}
	var m Message
	switch t {
	case TypeHello:
		m = parseHello(&p)
	case TypeStatus:
		m = parseStatus(&p)
	case TypeStatusSlots:
		m = parseStatusSlots(&p)
	case TypeHave:
		m = parseHave(&p)
	case TypeSubscribe:
		m = &Subscribe{Stripe: p.u8(), FromSeq: p.u64()}
	case TypeSubscribeAck:
		m = parseSubscribeAck(&p)
	case TypeUnsubscribe:
		m = &Unsubscribe{Stripe: p.u8()}
	case TypeRequest:
		m = &Request{Seq: p.u64(), Index: p.u32()}
	case TypeCancel:
		m = &Cancel{Seq: p.u64(), Index: p.u32()}
	case TypeGoodbye:
		m = &Goodbye{Reason: string(p.bytes(int(p.u8())))}
	default:
		return nil, 0, fmt.Errorf("%w: unknown message type %d", ErrMalformed, uint8(t))
	}
	if errors.Is(p.err, io.ErrUnexpectedEOF) {
		return nil, 0, fmt.Errorf("%w: truncated %s payload", ErrMalformed, t)
	}
	if p.err != nil {
		return nil, 0, fmt.Errorf("%s: %w", t, p.err)
	}
	if p.off != len(payload) {
		return nil, 0, fmt.Errorf("%w: %d trailing bytes in %s", ErrMalformed, len(payload)-p.off, t)
	}
	if v, ok := m.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", t, err)
		}
	}
	return m, r.off, nil
}

// Hello opens every control stream. Both sides send one; the connection uses the highest version
// both speak (Negotiate). PeerID is the sender's random identity, also used at the tracker.
type Hello struct {
	MinVersion uint16
	MaxVersion uint16
	PeerID     [16]byte
	Stream     string
	Depths     []uint8 // per stripe; NoDepth where not attached; the origin sends all zeros
	FreeSlots  uint16  // stripe children the sender can still accept
}

// Type returns TypeHello.
func (*Hello) Type() MessageType { return TypeHello }

// Append appends the frame to b.
func (m *Hello) Append(b []byte) []byte {
	return appendFrame(b, TypeHello, func(b []byte) []byte {
		b = binary.BigEndian.AppendUint16(b, m.MinVersion)
		b = binary.BigEndian.AppendUint16(b, m.MaxVersion)
		b = append(b, m.PeerID[:]...)
		b = append(b, byte(len(m.Stream)))
		b = append(b, m.Stream...)
		b = append(b, byte(len(m.Depths)))
		b = append(b, m.Depths...)
		return binary.BigEndian.AppendUint16(b, m.FreeSlots)
	})
}

func parseHello(r *reader) *Hello {
	m := &Hello{MinVersion: r.u16(), MaxVersion: r.u16()}
	copy(m.PeerID[:], r.bytes(16))
	m.Stream = string(r.bytes(int(r.u8())))
	m.Depths = append([]uint8(nil), r.bytes(int(r.u8()))...)
	m.FreeSlots = r.u16()
	return m
}

func (m *Hello) validate() error {
	if m.MinVersion > m.MaxVersion {
		return fmt.Errorf("%w: version range %d..%d", ErrMalformed, m.MinVersion, m.MaxVersion)
	}
	if err := ValidStreamName(m.Stream); err != nil {
		return err
	}
	if len(m.Depths) == 0 || len(m.Depths) > MaxStripes {
		return fmt.Errorf("%w: %d stripes", ErrMalformed, len(m.Depths))
	}
	return nil
}

// Negotiate returns the highest protocol version both Hellos accept.
func Negotiate(local, remote *Hello) (uint16, error) {
	lo, hi := max(local.MinVersion, remote.MinVersion), min(local.MaxVersion, remote.MaxVersion)
	if lo > hi {
		return 0, fmt.Errorf("%w: we speak %d..%d, peer speaks %d..%d",
			ErrUnsupportedVersion, local.MinVersion, local.MaxVersion, remote.MinVersion, remote.MaxVersion)
	}
	return hi, nil
}

// Status updates the sender's per-stripe depth and free child slots after they change, so
// neighbours choosing a parent see current figures.
//
// StripeSlots (protocol version 2, sent as STATUS_SLOTS) is how many children the sender would
// take on each stripe now: FreeSlots counts its whole upload, but a node takes only its share of
// children on any one stripe, so at a crowd's arrival most SUBSCRIBEs sent by FreeSlots alone
// went to a stripe already full there and were refused (802 of 978 refusals at 60 peers joining
// together in the scale lab). Nil: not told (STATUS, version 1).
type Status struct {
	Depths      []uint8
	FreeSlots   uint16
	StripeSlots []uint8
}

// Type returns TypeStatusSlots when the Status carries StripeSlots, TypeStatus otherwise.
func (m *Status) Type() MessageType {
	if m.StripeSlots != nil {
		return TypeStatusSlots
	}
	return TypeStatus
}

// Append appends the frame to b.
func (m *Status) Append(b []byte) []byte {
	return appendFrame(b, m.Type(), func(b []byte) []byte {
		b = append(b, byte(len(m.Depths)))
		b = append(b, m.Depths...)
		b = binary.BigEndian.AppendUint16(b, m.FreeSlots)
		if m.StripeSlots != nil {
			b = append(b, m.StripeSlots...) // one per stripe: len(Depths)
		}
		return b
	})
}

func parseStatus(r *reader) *Status {
	m := &Status{Depths: append([]uint8(nil), r.bytes(int(r.u8()))...)}
	m.FreeSlots = r.u16()
	return m
}

func parseStatusSlots(r *reader) *Status {
	m := parseStatus(r)
	m.StripeSlots = append([]uint8{}, r.bytes(len(m.Depths))...)
	return m
}

func (m *Status) validate() error {
	if len(m.Depths) == 0 || len(m.Depths) > MaxStripes {
		return fmt.Errorf("%w: %d stripes", ErrMalformed, len(m.Depths))
	}
	if m.StripeSlots != nil && len(m.StripeSlots) != len(m.Depths) {
		return fmt.Errorf("%w: %d stripe slots for %d stripes", ErrMalformed, len(m.StripeSlots), len(m.Depths))
	}
	return nil
}

// ChunkRange is Count consecutive chunks of segment Seq starting at index First.
type ChunkRange struct {
	Seq   uint64
	First uint32
	Count uint32
}

const chunkRangeLen = 8 + 4 + 4

// MaxHaveRanges is how many ranges fit in one HAVE message.
const MaxHaveRanges = (MaxMessageSize - 2) / chunkRangeLen

// Have tells a neighbour which chunks the sender now holds verified. Peers batch them: chunks mostly
// arrive in order, so a few ranges describe a whole segment.
type Have struct {
	Ranges []ChunkRange
}

// Type returns TypeHave.
func (*Have) Type() MessageType { return TypeHave }

// Append appends the frame to b. At most MaxHaveRanges ranges fit; send more in several messages.
func (m *Have) Append(b []byte) []byte {
	return appendFrame(b, TypeHave, func(b []byte) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.Ranges)))
		for _, rg := range m.Ranges {
			b = binary.BigEndian.AppendUint64(b, rg.Seq)
			b = binary.BigEndian.AppendUint32(b, rg.First)
			b = binary.BigEndian.AppendUint32(b, rg.Count)
		}
		return b
	})
}

func parseHave(r *reader) *Have {
	n := int(r.u16())
	if n > MaxHaveRanges || n*chunkRangeLen > len(r.b)-r.off {
		r.err = fmt.Errorf("%w: HAVE with %d ranges", ErrMalformed, n)
		return nil
	}
	m := &Have{Ranges: make([]ChunkRange, n)}
	for i := range m.Ranges {
		m.Ranges[i] = ChunkRange{Seq: r.u64(), First: r.u32(), Count: r.u32()}
	}
	return m
}

func (m *Have) validate() error {
	for _, rg := range m.Ranges {
		if rg.Count == 0 || uint64(rg.First)+uint64(rg.Count) > MaxChunksPerSegment {
			return fmt.Errorf("%w: HAVE range %d/%d+%d", ErrMalformed, rg.Seq, rg.First, rg.Count)
		}
	}
	return nil
}

// Subscribe asks the receiver to become the sender's parent for one stripe and push that stripe's
// chunks from segment FromSeq on, the moment it has verified them.
type Subscribe struct {
	Stripe  uint8
	FromSeq uint64
}

// Type returns TypeSubscribe.
func (*Subscribe) Type() MessageType { return TypeSubscribe }

// Append appends the frame to b.
func (m *Subscribe) Append(b []byte) []byte {
	return appendFrame(b, TypeSubscribe, func(b []byte) []byte {
		return binary.BigEndian.AppendUint64(append(b, m.Stripe), m.FromSeq)
	})
}

func (m *Subscribe) validate() error { return validStripe(m.Stripe) }

// SubscribeAck answers a Subscribe. A parent refuses when its upload budget has no room or when
// it is not attached to the stripe; Depth is the parent's own depth on that stripe.
type SubscribeAck struct {
	Stripe   uint8
	Accepted bool
	Depth    uint8
}

// Type returns TypeSubscribeAck.
func (*SubscribeAck) Type() MessageType { return TypeSubscribeAck }

// Append appends the frame to b.
func (m *SubscribeAck) Append(b []byte) []byte {
	return appendFrame(b, TypeSubscribeAck, func(b []byte) []byte {
		acc := byte(0)
		if m.Accepted {
			acc = 1
		}
		return append(b, m.Stripe, acc, m.Depth)
	})
}

func parseSubscribeAck(r *reader) *SubscribeAck {
	m := &SubscribeAck{Stripe: r.u8()}
	switch r.u8() {
	case 0:
	case 1:
		m.Accepted = true
	default:
		if r.err == nil {
			r.err = fmt.Errorf("%w: accepted must be 0 or 1", ErrMalformed)
		}
	}
	m.Depth = r.u8()
	return m
}

func (m *SubscribeAck) validate() error { return validStripe(m.Stripe) }

// Unsubscribe ends a stripe subscription; the parent stops pushing that stripe.
type Unsubscribe struct {
	Stripe uint8
}

// Type returns TypeUnsubscribe.
func (*Unsubscribe) Type() MessageType { return TypeUnsubscribe }

// Append appends the frame to b.
func (m *Unsubscribe) Append(b []byte) []byte {
	return appendFrame(b, TypeUnsubscribe, func(b []byte) []byte { return append(b, m.Stripe) })
}

func (m *Unsubscribe) validate() error { return validStripe(m.Stripe) }

// Request pulls one chunk that a neighbour advertised in HAVE (repair).
type Request struct {
	Seq   uint64
	Index uint32
}

// Type returns TypeRequest.
func (*Request) Type() MessageType { return TypeRequest }

// Append appends the frame to b.
func (m *Request) Append(b []byte) []byte {
	return appendFrame(b, TypeRequest, func(b []byte) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(b, m.Seq), m.Index)
	})
}

func (m *Request) validate() error { return validChunkIndex(m.Index) }

// Cancel withdraws a Request whose chunk arrived from elsewhere or is past its deadline (or a
// push its receiver no longer wants). Since protocol version 2 the asked holder also answers a
// Request it will not serve (its repair budget is spent) with a Cancel, so the asker goes to
// another holder at once.
type Cancel struct {
	Seq   uint64
	Index uint32
}

// Type returns TypeCancel.
func (*Cancel) Type() MessageType { return TypeCancel }

// Append appends the frame to b.
func (m *Cancel) Append(b []byte) []byte {
	return appendFrame(b, TypeCancel, func(b []byte) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(b, m.Seq), m.Index)
	})
}

func (m *Cancel) validate() error { return validChunkIndex(m.Index) }

// MaxGoodbyeReason bounds the human-readable reason in a Goodbye.
const MaxGoodbyeReason = 255

// Goodbye announces that the sender is leaving, so children re-parent at once instead of waiting
// for a timeout.
type Goodbye struct {
	Reason string
}

// Type returns TypeGoodbye.
func (*Goodbye) Type() MessageType { return TypeGoodbye }

// Append appends the frame to b; a reason longer than MaxGoodbyeReason bytes is cut.
func (m *Goodbye) Append(b []byte) []byte {
	reason := m.Reason
	if len(reason) > MaxGoodbyeReason {
		reason = reason[:MaxGoodbyeReason]
	}
	return appendFrame(b, TypeGoodbye, func(b []byte) []byte {
		return append(append(b, byte(len(reason))), reason...)
	})
}

func validChunkIndex(i uint32) error {
	if i >= MaxChunksPerSegment {
		return fmt.Errorf("%w: chunk index %d", ErrMalformed, i)
	}
	return nil
}

func validStripe(s uint8) error {
	if s >= MaxStripes {
		return fmt.Errorf("%w: stripe %d", ErrMalformed, s)
	}
	return nil
}
