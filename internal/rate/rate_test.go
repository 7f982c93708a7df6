package rate

import (
	"testing"

	"github.com/stretchr/testify/require"
)

var parseTests = []struct {
	in   string
	want int64
	err  bool
}{
	{in: "4Mbit", want: 4_000_000},
	{in: "500kbit", want: 500_000},
	{in: "2M", want: 2_000_000},
	{in: "1.5Mbps", want: 1_500_000},
	{in: "800000", want: 800_000},
	{in: "3 Gbit/s", want: 3_000_000_000},
	{in: "64k", want: 64_000},
	{in: "0", want: 0},
	{in: "4MB", err: true},
	{in: "4MB/s", err: true},
	{in: "", err: true},
	{in: "Mbit", err: true},
	{in: "4Tbit", err: true},
	{in: "1.2.3M", err: true},
	{in: "-4M", err: true},
	{in: "1e400", err: true},
}

func TestParseBps(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBps(tt.in)
			if tt.err {
				require.ErrorIs(t, err, ErrBadRate)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseBps(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := ParseBps(s); err == nil {
			require.GreaterOrEqual(t, v, int64(0))
		}
	})
}
