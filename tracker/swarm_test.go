package tracker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestVouchersCountOtherHostsNamingAPeerWhateverTheOrder(t *testing.T) {
	s := newSwarm()
	put := func(id string, host int, parents ...string) {
		s.put(proto.PeerInfo{PeerID: id}, peerMeta{host: testHost(host), parents: distinctParents(id, parents)})
	}
	vouchers := func(id string) int { return s.vouchers(s.index[id]) }

	put("c1", 1, "p", "p", "") // a child announces before its parent
	put("p", 0)
	require.Equal(t, 1, vouchers("p"))
	put("c2", 2, "p")
	put("c3", 2, "p") // same host as c2: still one more host, not two
	require.Equal(t, 2, vouchers("p"))
	put("self", 0, "p") // the parent's own host vouches for nothing
	require.Equal(t, 2, vouchers("p"))
	require.Equal(t, 2, s.perHost[testHost(2)])

	s.remove("c2")
	require.Equal(t, 2, vouchers("p"), "c3 still vouches from host 2")
	s.remove("c3")
	require.Equal(t, 1, vouchers("p"))
	put("c1", 1) // c1 leaves p for the origin
	require.Equal(t, 0, vouchers("p"))
	put("p", 1) // p moves to host 1: "self" on host 0 is another host now
	require.Equal(t, 1, vouchers("p"))
	put("c1", 1, "p") // c1 shares p's host: it adds nothing
	require.Equal(t, 1, vouchers("p"))
	put("c4", 3, "p")
	require.Equal(t, 2, vouchers("p"))

	for _, id := range []string{"c1", "c4", "p", "self"} {
		s.remove(id)
	}
	require.Empty(t, s.vouch, "nothing is left behind")
	require.Empty(t, s.perHost)
	require.Empty(t, s.index)
}
