package proto_test

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/stretchr/testify/require"
)

func TestReadMessageReadsFramesInOrderFromOneStream(t *testing.T) {
	var stream []byte
	for _, tc := range messageCases {
		stream = append(stream, tc.enc...)
	}
	// One byte per Read, as a slow QUIC stream may deliver them.
	r := iotest.OneByteReader(bytes.NewReader(stream))
	for _, tc := range messageCases {
		m, err := proto.ReadMessage(r)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.msg, m, tc.name)
	}
	_, err := proto.ReadMessage(r)
	require.ErrorIs(t, err, io.EOF, "a stream that ends between frames ends cleanly")
}

func TestReadMessageCutShort(t *testing.T) {
	for _, tc := range messageCases {
		for i := 1; i < len(tc.enc); i++ {
			_, err := proto.ReadMessage(bytes.NewReader(tc.enc[:i]))
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "%s cut at %d", tc.name, i)
		}
	}
}

func TestReadMessageRejects(t *testing.T) {
	for _, tc := range badMessageCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proto.ReadMessage(bytes.NewReader(tc.enc))
			require.ErrorIs(t, err, tc.err)
			require.ErrorContains(t, err, tc.why)
		})
	}
}

func TestReadChunkLeavesTheRestOfTheStream(t *testing.T) {
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(append(append([]byte(nil), tc.enc...), "next"...))
			c, err := proto.ReadChunk(iotest.OneByteReader(r))
			require.NoError(t, err)
			require.Equal(t, tc.chunk, c.Fields())
			require.Equal(t, tc.enc, c.Frame())
			rest, _ := io.ReadAll(r)
			require.Equal(t, "next", string(rest))
		})
	}
}

func TestReadChunkCutShort(t *testing.T) {
	for _, tc := range chunkCases {
		_, err := proto.ReadChunk(bytes.NewReader(nil))
		require.ErrorIs(t, err, io.EOF)
		for i := 1; i < len(tc.enc); i++ {
			_, err := proto.ReadChunk(bytes.NewReader(tc.enc[:i]))
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "%s cut at %d", tc.name, i)
		}
	}
}

func TestReadChunkRejects(t *testing.T) {
	for _, tc := range badChunkCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proto.ReadChunk(bytes.NewReader(tc.enc))
			require.ErrorIs(t, err, tc.err)
		})
	}
}

// A sender claiming a 4 GiB chunk is refused after the header: nothing more is read or allocated.
func TestReadChunkRefusesAHugeChunkBeforeItsData(t *testing.T) {
	head := unhex(chunkHeader(1, 0, "cam") + "ffffffff")
	r := bytes.NewReader(append(append([]byte(nil), head...), make([]byte, 100)...))
	_, err := proto.ReadChunk(r)
	require.ErrorIs(t, err, proto.ErrTooLarge)
	require.Equal(t, 100, r.Len(), "only the header was read")
}

func TestReadChunkVerifies(t *testing.T) {
	c := signedChunks()["last chunk"]
	got, err := proto.ReadChunk(bytes.NewReader(c.Append(nil)))
	require.NoError(t, err)
	require.NoError(t, got.Verify(pubOf(testKey())))
}
