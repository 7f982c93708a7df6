package loadtest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPercentileInterpolatesBetweenRanks(t *testing.T) {
	v := []float64{10, 20, 30, 40, 50}
	require.Equal(t, 10.0, percentile(v, 0))
	require.Equal(t, 30.0, percentile(v, 0.5))
	require.Equal(t, 50.0, percentile(v, 1))
	require.InDelta(t, 48.0, percentile(v, 0.95), 1e-9)
	require.InDelta(t, 15.0, percentile(v, 0.125), 1e-9)
	require.Equal(t, 0.0, percentile(nil, 0.5))
	require.Equal(t, 7.0, percentile([]float64{7}, 0.99))
}

func TestPercentileOfManySamplesMatchesRank(t *testing.T) {
	v := make([]float64, 1001)
	for i := range v {
		v[i] = float64(1000 - i) // unsorted on purpose
	}
	s := sortedCopy(v)
	require.Equal(t, 1000.0, v[0], "sortedCopy leaves its input alone")
	require.InDelta(t, 500, percentile(s, 0.5), 1e-9)
	require.InDelta(t, 990, percentile(s, 0.99), 1e-9)
	require.InDelta(t, 1000, percentile(s, 1), 1e-9)
}

func TestCDFRisesToOneAtTheMaximum(t *testing.T) {
	s := sortedCopy([]float64{5, 1, 4, 2, 3})
	c := cdf(s, 5)
	require.Equal(t, []CDFPoint{{1, 0.2}, {2, 0.4}, {3, 0.6}, {4, 0.8}, {5, 1}}, c)
	c = cdf(sortedCopy([]float64{3, 1, 2}), 100)
	require.Len(t, c, 100)
	require.Equal(t, 3.0, c[len(c)-1].Ms)
	for i := 1; i < len(c); i++ {
		require.GreaterOrEqual(t, c[i].Ms, c[i-1].Ms)
		require.Greater(t, c[i].Fraction, c[i-1].Fraction)
	}
	require.Empty(t, cdf(nil, 100))
}
