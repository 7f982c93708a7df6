package simnet_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/simnet"
)

func TestParseNATMix(t *testing.T) {
	mix, err := simnet.ParseNATMix("50%:cone, 30%:symmetric,20%:public")
	require.NoError(t, err)
	require.Equal(t, simnet.NATMix{{simnet.NATCone, 50}, {simnet.NATSymmetric, 30}, {simnet.NATNone, 20}}, mix)
	require.Equal(t, "50%:cone,30%:symmetric,20%:public", mix.String())
	back, err := simnet.ParseNATMix(mix.String())
	require.NoError(t, err)
	require.Equal(t, mix, back)
	require.Equal(t, "100%:public", simnet.NATMix(nil).String())

	for _, bad := range []string{"", "50%:cone", "50:cone,50:public", "60%:cone,40%:fullcone",
		"50%:cone,50%:cone", "150%:cone,-50%:public", "x%:cone,100%:public"} {
		_, err := simnet.ParseNATMix(bad)
		require.ErrorIs(t, err, simnet.ErrBadNATMix, "%q", bad)
	}
}

func TestNATMixKindsFollowTheMixAtEveryPrefix(t *testing.T) {
	mix, err := simnet.ParseNATMix("50%:cone,30%:symmetric,20%:public")
	require.NoError(t, err)

	kinds := mix.Kinds(100)
	count := map[simnet.NATKind]int{}
	for i, k := range kinds {
		count[k]++
		for _, s := range mix {
			want := float64(s.Percent*(i+1)) / 100
			require.InDelta(t, want, count[s.Kind], 1, "%s after %d hosts", s.Kind, i+1)
		}
	}
	require.Equal(t, map[simnet.NATKind]int{simnet.NATCone: 50, simnet.NATSymmetric: 30, simnet.NATNone: 20}, count)
	require.Equal(t, make([]simnet.NATKind, 3), simnet.NATMix(nil).Kinds(3), "no mix: everyone public")

	allCone, err := simnet.ParseNATMix("0%:public,100%:cone")
	require.NoError(t, err)
	for _, k := range allCone.Kinds(7) {
		require.Equal(t, simnet.NATCone, k)
	}
}
