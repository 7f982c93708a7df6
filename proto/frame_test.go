package proto_test

import (
	"testing"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/stretchr/testify/require"
)

// sameMemory reports whether a and b start at the same byte: one buffer, not two equal ones.
func sameMemory(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}

// A parsed chunk's frame is the buffer it was parsed from: every push and HTTP response sends
// those bytes, with no encoding and no copy.
func TestFrameOfAParsedChunkIsItsBuffer(t *testing.T) {
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			enc := append([]byte(nil), tc.enc...)
			c, _, err := proto.ParseChunk(enc)
			require.NoError(t, err)
			require.True(t, sameMemory(enc, c.Frame()), "Frame must alias the parsed bytes")
			require.Zero(t, testing.AllocsPerRun(100, func() { _ = c.Frame() }))
		})
	}
}

// Sign encodes the frame once and points Data into it: the chunk's bytes exist once, and Frame
// costs nothing however many children it is pushed to.
func TestSignEncodesTheFrameOnce(t *testing.T) {
	key := testKey()
	c := &proto.Chunk{ID: proto.ChunkID{Stream: "cam", Seq: 3, Index: 1}, Data: []byte("some media bytes")}
	c.Sign(key)
	require.NoError(t, c.Verify(pubOf(key)))
	require.Equal(t, c.Append(nil), c.Frame())
	frame := c.Frame()
	require.True(t, sameMemory(c.Data, frame[len(frame)-len(c.Data):]), "Data must live in the frame")
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = c.Frame() }))
}

// A chunk changed after it was parsed (as the tests that forge chunks do) never sends its stale
// buffer: Frame is always the encoding of the fields as they are.
func TestFrameFollowsChangedFields(t *testing.T) {
	tc := chunkCases[0]
	parse := func() *proto.Chunk {
		c, _, err := proto.ParseChunk(append([]byte(nil), tc.enc...))
		require.NoError(t, err)
		return c
	}
	changes := map[string]func(c *proto.Chunk){
		"index":                 func(c *proto.Chunk) { c.ID.Index++ },
		"stream":                func(c *proto.Chunk) { c.ID.Stream = "cat" },
		"flags":                 func(c *proto.Chunk) { c.Flags |= proto.FlagDiscontinuity },
		"signature":             func(c *proto.Chunk) { c.Sig[0] ^= 1 },
		"hash":                  func(c *proto.Chunk) { c.Hash[31] ^= 1 },
		"data replaced":         func(c *proto.Chunk) { c.Data = []byte("abd") },
		"data shortened":        func(c *proto.Chunk) { c.Data = c.Data[:2] },
		"data changed in place": func(c *proto.Chunk) { c.Data[0] = 'x' },
		"last with info": func(c *proto.Chunk) {
			c.Flags |= proto.FlagLast
			c.Info.ChunkCount = c.ID.Index + 1
			c.Info.ByteLength = 3
		},
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			c := parse()
			change(c)
			require.Equal(t, c.Append(nil), c.Frame())
			require.NotEqual(t, tc.enc, c.Frame())
		})
	}
}
