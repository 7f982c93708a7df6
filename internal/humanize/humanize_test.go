package humanize

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBytesPicksTheUnit(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 7549747: "7.2 MiB",
		1 << 30: "1.00 GiB", 1428076544: "1.33 GiB",
	} {
		require.Equal(t, want, Bytes(n), "%d", n)
	}
}
