package loadtest

import (
	"math"
	"slices"
)

// percentile returns the q-quantile (0..1) of sorted values by linear interpolation between
// closest ranks; 0 for no values.
func percentile(sorted []float64, q float64) float64 {
	switch n := len(sorted); {
	case n == 0:
		return 0
	case q <= 0:
		return sorted[0]
	case q >= 1:
		return sorted[n-1]
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(sorted)-1)
	frac := pos - float64(lo)
	return sorted[lo] + (sorted[hi]-sorted[lo])*frac
}

// sortedCopy returns the values sorted, leaving the input alone.
func sortedCopy(values []float64) []float64 {
	s := slices.Clone(values)
	slices.Sort(s)
	return s
}

// CDFPoint says that a Fraction of the samples were at most Ms.
type CDFPoint struct {
	Ms       float64 `json:"ms"`
	Fraction float64 `json:"fraction"`
}

// cdf summarises sorted values as at most points points: the value at every 1/points step of
// rank, plus the maximum.
func cdf(sorted []float64, points int) []CDFPoint {
	if len(sorted) == 0 || points < 1 {
		return []CDFPoint{}
	}
	out := make([]CDFPoint, 0, points+1)
	for i := 1; i <= points; i++ {
		f := float64(i) / float64(points)
		idx := max(int(math.Ceil(f*float64(len(sorted))))-1, 0)
		out = append(out, CDFPoint{Ms: sorted[idx], Fraction: f})
	}
	return out
}

// quantilesOf summarises sorted latencies.
func quantilesOf(sorted []float64) LatencyQuantiles {
	return LatencyQuantiles{
		P50: percentile(sorted, 0.50), P95: percentile(sorted, 0.95), P99: percentile(sorted, 0.99),
		Max: percentile(sorted, 1), Samples: len(sorted),
	}
}
