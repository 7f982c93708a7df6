package peer

import (
	"bytes"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

func TestReadFrameStopsAtTheLimit(t *testing.T) {
	for _, size := range []int{0, 1, chunkFrameGuess - 1, chunkFrameGuess, chunkFrameGuess + 1, 3 * chunkFrameGuess} {
		data := bytes.Repeat([]byte{7}, size)
		got, err := readFrame(iotest.OneByteReader(bytes.NewReader(data)), 2*chunkFrameGuess)
		require.NoError(t, err)
		require.Equal(t, data[:min(size, 2*chunkFrameGuess)], got, "size %d", size)
	}
}
