package loadtest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// rateCases drive the parse test and seed the fuzz target.
var rateCases = []struct {
	in   string
	want int64
}{
	{"1Mbit", 1_000_000},
	{"500kbit", 500_000},
	{"2.5Mbit", 2_500_000},
	{"3M", 3_000_000},
	{"800k", 800_000},
	{"1Gbit", 1_000_000_000},
	{"1000000", 1_000_000},
	{"1mbps", 1_000_000},
	{"64kbit/s", 64_000},
	{" 2Mbit ", 2_000_000},
	{"0", 0},
}

func TestParseRateReadsUnitsAndPlainNumbers(t *testing.T) {
	for _, tc := range rateCases {
		got, err := ParseRate(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
		// What FormatRate writes, ParseRate reads back.
		back, err := ParseRate(FormatRate(got))
		require.NoError(t, err)
		require.Equal(t, got, back)
	}
}

func TestParseRateRejectsNonsense(t *testing.T) {
	for _, in := range []string{"", "fast", "-1Mbit", "1Xbit", "NaN", "Inf", "5Tbit", "1.2.3M"} {
		_, err := ParseRate(in)
		require.ErrorIs(t, err, ErrBadRate, in)
	}
}

// uplinkSeeds seed the uplink fuzz target: the forms the tests use, good and bad.
var uplinkSeeds = []string{
	"3Mbit", "50%:3Mbit,30%:1Mbit,20%:0", "100%:1Mbit", "33.5%:1M,66.5%:2M",
	"50%:3Mbit,30%:1Mbit", "50%:3Mbit,50%", "x%:3Mbit,100%:1Mbit", "",
}

func FuzzParseRate(f *testing.F) {
	for _, tc := range rateCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		bps, err := ParseRate(in)
		if err != nil {
			require.ErrorIs(t, err, ErrBadRate)
			return
		}
		require.GreaterOrEqual(t, bps, int64(0))
		back, err := ParseRate(FormatRate(bps))
		require.NoError(t, err)
		require.Equal(t, bps, back)
	})
}

func FuzzParseUplink(f *testing.F) {
	for _, s := range uplinkSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, err := ParseUplink(in)
		if err != nil {
			require.ErrorIs(t, err, ErrBadUplink)
			return
		}
		total := 0.0
		for _, c := range d {
			require.Positive(t, c.Share)
			require.GreaterOrEqual(t, c.Bps, int64(0))
			total += c.Share
		}
		require.InDelta(t, 1, total, 1e-3)
		// What String writes, ParseUplink reads back to the same classes.
		again, err := ParseUplink(d.String())
		require.NoError(t, err)
		require.Len(t, again, len(d))
		for i := range d {
			require.InDelta(t, d[i].Share, again[i].Share, 1e-9)
			require.Equal(t, d[i].Bps, again[i].Bps)
		}
		for i := range 10 {
			require.Contains(t, classRates(d), d.Assign(i))
		}
	})
}

func classRates(d UplinkDist) []int64 {
	var out []int64
	for _, c := range d {
		out = append(out, c.Bps)
	}
	return out
}

func TestParseUplinkReadsOneRateOrADistribution(t *testing.T) {
	d, err := ParseUplink("3Mbit")
	require.NoError(t, err)
	require.Equal(t, UplinkDist{{Share: 1, Bps: 3_000_000}}, d)

	d, err = ParseUplink("50%:3Mbit,30%:1Mbit,20%:0")
	require.NoError(t, err)
	require.Len(t, d, 3)
	require.InDelta(t, 0.5, d[0].Share, 1e-9)
	require.Equal(t, int64(3_000_000), d[0].Bps)
	require.InDelta(t, 0.3, d[1].Share, 1e-9)
	require.Equal(t, int64(1_000_000), d[1].Bps)
	require.InDelta(t, 0.2, d[2].Share, 1e-9)
	require.Equal(t, int64(0), d[2].Bps)
	require.Equal(t, "50%:3Mbit,30%:1Mbit,20%:0", d.String())

	again, err := ParseUplink(d.String())
	require.NoError(t, err)
	require.Equal(t, d, again)
}

func TestParseUplinkRejectsBadDistributions(t *testing.T) {
	for _, in := range []string{
		"50%:3Mbit,30%:1Mbit", // adds up to 80 %
		"60%:3Mbit,60%:1Mbit", // 120 %
		"50%:3Mbit,50%",       // a part without a rate
		"x%:3Mbit,100%:1Mbit", // not a number
		"0%:3Mbit,100%:1Mbit", // empty class
		"50%:fast,50%:1Mbit",  // bad rate
		"",                    // nothing
	} {
		_, err := ParseUplink(in)
		require.ErrorIs(t, err, ErrBadUplink, in)
	}
}

func TestUplinkAssignGivesEachClassItsShare(t *testing.T) {
	d, err := ParseUplink("50%:3Mbit,30%:1Mbit,20%:0")
	require.NoError(t, err)
	for _, n := range []int{20, 200, 1000} {
		counts := map[int64]int{}
		for i := range n {
			counts[d.Assign(i)]++
		}
		require.InDelta(t, 0.5*float64(n), counts[3_000_000], 2, "n=%d", n)
		require.InDelta(t, 0.3*float64(n), counts[1_000_000], 2, "n=%d", n)
		require.InDelta(t, 0.2*float64(n), counts[0], 2, "n=%d", n)
	}
	single := UplinkDist{{Share: 1, Bps: 42}}
	require.Equal(t, int64(42), single.Assign(7))
}
