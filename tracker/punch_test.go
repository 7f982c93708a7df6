package tracker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestConnectPath(t *testing.T) {
	const (
		unknown   = proto.NATUnknown
		public    = proto.NATPublic
		cone      = proto.NATCone
		symmetric = proto.NATSymmetric
	)
	for _, tc := range []struct {
		a, b proto.NATKind
		want Path
	}{
		{public, public, ADials},
		{cone, public, ADials},
		{symmetric, public, ADials},
		{unknown, public, ADials},
		{public, cone, BDials},
		{public, symmetric, BDials},
		{cone, cone, PunchADials},
		{cone, symmetric, NoPath},
		{symmetric, cone, NoPath},
		{symmetric, symmetric, NoPath},
		{unknown, cone, NoPath},
		{cone, unknown, NoPath},
	} {
		require.Equal(t, tc.want, ConnectPath(tc.a, tc.b), "%s and %s", tc.a, tc.b)
	}
	require.Equal(t, "punch", PunchADials.String())
	require.Equal(t, "none", NoPath.String())
}
