package proto

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The binding protocol runs on the mesh socket next to QUIC: a peer asks an observer which
// source address its packets arrive from (its server-reflexive address, as STUN calls it), and
// sends punch packets to open its NAT towards a candidate. One socket carries both protocols
// because every datagram starts with a type byte whose two top bits are clear: QUIC sets the
// fixed bit 0x40 in every long and short header, and quic-go hands a Transport's packets with
// both bits clear to ReadNonQUICPacket instead of a connection. The three magic bytes after the
// type keep stray traffic (STUN, scanners) from being taken for ours.
//
//	BINDING_REQUEST   31 63736e | txid (12) | zero padding (20)
//	BINDING_RESPONSE  32 63736e | txid (12) | family (1: 4 or 6) | port (2) | address (4 or 16)
//	PUNCH             33 63736e | attempt id (12)
//	PUNCH_REQUEST     34 63736e | attempt id (12) | delay ms (2) | family (1: 4 or 6) | port (2) | address (4 or 16)
//
// A request is padded to the size of the largest response, so an observer never sends more
// bytes than it received: it is useless as a reflection amplifier. A PUNCH_REQUEST is the
// tracker's "punch now": it goes from the observer, unasked, to the reflexive address a peer
// announced (and the tracker checked against the announce's source), through the mapping the
// peer's binding keepalives hold open; it names the other side's reflexive address and how many
// milliseconds after its arrival to start punching.

// BindingType is the first byte of a binding-protocol datagram.
type BindingType uint8

// Binding datagram types; all have bits 0x40 and 0x80 clear.
const (
	// TypeBindingRequest is a BindingRequest.
	TypeBindingRequest BindingType = 0x31
	// TypeBindingResponse is a BindingResponse.
	TypeBindingResponse BindingType = 0x32
	// TypePunch is a Punch.
	TypePunch BindingType = 0x33
	// TypePunchRequest is a PunchRequest.
	TypePunchRequest BindingType = 0x34
)

// String names the type as the protocol description does.
func (t BindingType) String() string {
	switch t {
	case TypeBindingRequest:
		return "BINDING_REQUEST"
	case TypeBindingResponse:
		return "BINDING_RESPONSE"
	case TypePunch:
		return "PUNCH"
	case TypePunchRequest:
		return "PUNCH_REQUEST"
	}
	return fmt.Sprintf("binding(%#x)", uint8(t))
}

// bindingMagic follows the type byte in every binding datagram ("csn").
var bindingMagic = [3]byte{0x63, 0x73, 0x6e}

const (
	bindingHeaderLen  = 1 + len(bindingMagic)
	bindingResponse6  = bindingHeaderLen + TxIDLen + 1 + 2 + 16 // 35, the largest response
	bindingPadding    = 20                                      // makes a request 36 bytes, at least bindingResponse6
	bindingRequestLen = bindingHeaderLen + TxIDLen + bindingPadding
	punchRequest6     = bindingHeaderLen + TxIDLen + 2 + 1 + 2 + 16 // 37
)

// MaxBindingSize is the largest binding datagram: a PUNCH_REQUEST with an IPv6 address (a
// binding request is padded to the size of an IPv6 response, one byte less). A receive buffer
// this big holds any of them.
const MaxBindingSize = max(bindingRequestLen, punchRequest6)

// MaxPunchDelay bounds a PUNCH_REQUEST's delay: a punch is worth starting within a few
// hundred milliseconds or not at all.
const MaxPunchDelay = 2000

// TxIDLen is the length of a transaction or punch attempt id.
const TxIDLen = 12

// TxID ties a response to its request, or a punch to its attempt. Requesters pick it at random,
// so an off-path sender cannot forge an answer it has not seen.
type TxID [TxIDLen]byte

// BindingMessage is one binding-protocol datagram.
type BindingMessage interface {
	// Type is the datagram's first byte.
	Type() BindingType
	// Append appends the whole datagram to b.
	Append(b []byte) []byte
}

// BindingRequest asks an observer for the source address it sees.
type BindingRequest struct {
	TxID TxID
}

// BindingResponse tells a requester the source address its request came from.
type BindingResponse struct {
	TxID TxID
	// Observed is the request's source as the observer saw it. An IPv4 address is sent in 4
	// bytes, anything else (IPv4-mapped IPv6 included) in 16; a zone is not sent.
	Observed netip.AddrPort
}

// Punch is sent to a candidate's reflexive address to open our NAT towards it. Its receiver
// ignores it: it only has to leave.
type Punch struct {
	ID TxID
}

// PunchRequest asks a peer to punch towards Target, DelayMs milliseconds after it arrived:
// the tracker has told the peer at Target to dial it at that moment.
type PunchRequest struct {
	ID      TxID
	DelayMs uint16 // at most MaxPunchDelay
	Target  netip.AddrPort
}

// Type implements BindingMessage.
func (*PunchRequest) Type() BindingType { return TypePunchRequest }

// Append implements BindingMessage.
func (m *PunchRequest) Append(b []byte) []byte {
	b = appendBindingHeader(b, TypePunchRequest)
	b = append(b, m.ID[:]...)
	b = binary.BigEndian.AppendUint16(b, m.DelayMs)
	return appendFamilyAddr(b, m.Target)
}

// Type implements BindingMessage.
func (*BindingRequest) Type() BindingType { return TypeBindingRequest }

// Type implements BindingMessage.
func (*BindingResponse) Type() BindingType { return TypeBindingResponse }

// Type implements BindingMessage.
func (*Punch) Type() BindingType { return TypePunch }

func appendBindingHeader(b []byte, t BindingType) []byte {
	return append(append(b, byte(t)), bindingMagic[:]...)
}

// Append implements BindingMessage.
func (m *BindingRequest) Append(b []byte) []byte {
	b = appendBindingHeader(b, TypeBindingRequest)
	b = append(b, m.TxID[:]...)
	return append(b, make([]byte, bindingPadding)...)
}

// Append implements BindingMessage.
func (m *BindingResponse) Append(b []byte) []byte {
	b = appendBindingHeader(b, TypeBindingResponse)
	b = append(b, m.TxID[:]...)
	return appendFamilyAddr(b, m.Observed)
}

// appendFamilyAddr appends family (1) | port (2) | address (4 or 16).
func appendFamilyAddr(b []byte, ap netip.AddrPort) []byte {
	addr := ap.Addr()
	if addr.Is4() {
		b = append(b, 4)
		b = binary.BigEndian.AppendUint16(b, ap.Port())
		a := addr.As4()
		return append(b, a[:]...)
	}
	b = append(b, 6)
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	a := addr.As16()
	return append(b, a[:]...)
}

// readFamilyAddr reads what appendFamilyAddr wrote.
func readFamilyAddr(r *reader, what string) (netip.AddrPort, error) {
	family := r.u8()
	port := r.u16()
	if r.err != nil {
		return netip.AddrPort{}, r.err
	}
	var addr netip.Addr
	switch family {
	case 4:
		if a := r.bytes(4); a != nil {
			addr = netip.AddrFrom4([4]byte(a))
		}
	case 6:
		if a := r.bytes(16); a != nil {
			addr = netip.AddrFrom16([16]byte(a))
		}
	default:
		return netip.AddrPort{}, fmt.Errorf("%w: %s address family %d", ErrMalformed, what, family)
	}
	if r.err != nil {
		return netip.AddrPort{}, r.err
	}
	return netip.AddrPortFrom(addr, port), nil
}

// Append implements BindingMessage.
func (m *Punch) Append(b []byte) []byte {
	b = appendBindingHeader(b, TypePunch)
	return append(b, m.ID[:]...)
}

// IsBinding says whether a datagram starts like one of ours, without parsing it: a demultiplexer
// on a shared socket can pass everything else on.
func IsBinding(b []byte) bool {
	return len(b) >= bindingHeaderLen && b[0]&0xc0 == 0 && [3]byte(b[1:4]) == bindingMagic
}

// ParseBinding decodes the binding datagram at the start of b and returns it with the number of
// bytes used; bytes after it are the caller's to judge.
//
// Errors: io.ErrUnexpectedEOF when b stops inside the datagram; ErrMalformed for a datagram that
// is not ours (wrong magic), an unknown type, an unknown address family, or non-zero padding.
// Nothing is allocated before the whole datagram is there (it is at most MaxBindingSize bytes),
// and every datagram ParseBinding accepts re-encodes with Append to exactly the bytes it used.
func ParseBinding(b []byte) (BindingMessage, int, error) {
	r := reader{b: b}
	t := BindingType(r.u8())
	magic := r.bytes(len(bindingMagic))
	if r.err != nil {
		return nil, 0, r.err
	}
	if [3]byte(magic) != bindingMagic {
		return nil, 0, fmt.Errorf("%w: not a binding datagram (magic %x)", ErrMalformed, magic)
	}
	var m BindingMessage
	switch t {
	case TypeBindingRequest:
		req := &BindingRequest{}
		copy(req.TxID[:], r.bytes(TxIDLen))
		pad := r.bytes(bindingPadding)
		if r.err != nil {
			return nil, 0, r.err
		}
		for _, c := range pad {
			if c != 0 {
				return nil, 0, fmt.Errorf("%w: BINDING_REQUEST padding is not zero", ErrMalformed)
			}
		}
		m = req
	case TypeBindingResponse:
		resp := &BindingResponse{}
		copy(resp.TxID[:], r.bytes(TxIDLen))
		ap, err := readFamilyAddr(&r, "BINDING_RESPONSE")
		if err != nil {
			return nil, 0, err
		}
		resp.Observed = ap
		m = resp
	case TypePunchRequest:
		req := &PunchRequest{}
		copy(req.ID[:], r.bytes(TxIDLen))
		req.DelayMs = r.u16()
		if r.err == nil && req.DelayMs > MaxPunchDelay {
			return nil, 0, fmt.Errorf("%w: PUNCH_REQUEST delay %d ms over %d", ErrMalformed, req.DelayMs, MaxPunchDelay)
		}
		ap, err := readFamilyAddr(&r, "PUNCH_REQUEST")
		if err != nil {
			return nil, 0, err
		}
		req.Target = ap
		m = req
	case TypePunch:
		p := &Punch{}
		copy(p.ID[:], r.bytes(TxIDLen))
		m = p
	default:
		return nil, 0, fmt.Errorf("%w: binding type %#x", ErrMalformed, uint8(t))
	}
	if r.err != nil {
		return nil, 0, r.err
	}
	return m, r.off, nil
}

// NATKind is what a peer found out about the NAT in front of its mesh socket.
type NATKind uint8

const (
	// NATUnknown means no observer answered (or only one did, and not with our own address).
	NATUnknown NATKind = iota
	// NATPublic means observers saw the socket's own address: nothing translates it.
	NATPublic
	// NATCone means one mapping for every destination (endpoint-independent mapping): a
	// punch towards the reflexive address can work.
	NATCone
	// NATSymmetric means a new mapping per destination: the reflexive address is useless to
	// anyone but the observer, so such a peer only dials out.
	NATSymmetric
)

var natKindNames = [...]string{"unknown", "public", "cone", "symmetric"}

// String names the kind ("unknown", "public", "cone", "symmetric").
func (k NATKind) String() string {
	if int(k) < len(natKindNames) {
		return natKindNames[k]
	}
	return fmt.Sprintf("natkind(%d)", uint8(k))
}

// MarshalText writes the kind's name, for JSON.
func (k NATKind) MarshalText() ([]byte, error) {
	if int(k) >= len(natKindNames) {
		return nil, fmt.Errorf("%w: NAT kind %d", ErrMalformed, uint8(k))
	}
	return []byte(natKindNames[k]), nil
}

// UnmarshalText reads a kind's name.
func (k *NATKind) UnmarshalText(b []byte) error {
	for i, name := range natKindNames {
		if string(b) == name {
			*k = NATKind(i)
			return nil
		}
	}
	return fmt.Errorf("%w: NAT kind %q", ErrMalformed, b)
}
