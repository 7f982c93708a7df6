package peer

// banList remembers the peer ids and addresses the loop banned. It is bounded: a stream of
// hostile ids and ports must not grow it for ever. When full, an arbitrary old entry makes room;
// the IP ban in the guard (bounded too, and timed) is what keeps a banned host out meanwhile.
type banList struct {
	peers map[[16]byte]struct{}
	addrs map[string]struct{}
}

// maxBans bounds each of the ban list's maps.
const maxBans = 4096

func newBanList() banList {
	return banList{peers: make(map[[16]byte]struct{}), addrs: make(map[string]struct{})}
}

func (b banList) banPeer(id [16]byte) { addBounded(b.peers, id) }
func (b banList) banAddr(addr string) {
	if addr != "" {
		addBounded(b.addrs, addr)
	}
}
func (b banList) peer(id [16]byte) bool { _, ok := b.peers[id]; return ok }
func (b banList) addr(addr string) bool { _, ok := b.addrs[addr]; return ok }

func addBounded[K comparable](m map[K]struct{}, k K) {
	if _, ok := m[k]; ok {
		return
	}
	if len(m) >= maxBans {
		for old := range m {
			delete(m, old)
			break
		}
	}
	m[k] = struct{}{}
}
