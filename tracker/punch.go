package tracker

import "github.com/crowdsurf/crowdsurf/proto"

// Path is how two peers can get a QUIC connection between them, given the NAT kinds their
// observers reported.
type Path uint8

const (
	// NoPath means neither can reach the other: do not hand them to each other.
	NoPath Path = iota
	// ADials means A dials B's reflexive address directly; B need not punch (B is public).
	ADials
	// BDials is ADials the other way round.
	BDials
	// PunchADials means both punch at an agreed moment, then A dials: both are behind cone NATs.
	PunchADials
)

// String names the path for logs and metrics.
func (p Path) String() string {
	switch p {
	case ADials:
		return "a_dials"
	case BDials:
		return "b_dials"
	case PunchADials:
		return "punch"
	}
	return "none"
}

// ConnectPath chooses the direction that works between peers a and b. Home routers filter
// inbound packets per remote addr:port, so a peer behind a NAT receives only from an address
// it has sent to, at the port its NAT used for that address. A public peer can be dialled by
// anyone; two cone peers meet by punching (each NAT then expects the other's one mapping); a
// symmetric peer's mapping towards the other is a port nobody has seen, so it can only dial a
// public peer. An unknown kind is treated as symmetric. peer.TestPunchOutcomeByNATPair checks
// this against the simulated NATs.
func ConnectPath(a, b proto.NATKind) Path {
	switch {
	case b == proto.NATPublic:
		return ADials
	case a == proto.NATPublic:
		return BDials
	case a == proto.NATCone && b == proto.NATCone:
		return PunchADials
	}
	return NoPath
}
