package proto_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/stretchr/testify/require"
)

// testKey is a fixed key, so signatures are reproducible (Ed25519 signing is deterministic).
func testKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func otherKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// signedChunks are small frames of both shapes, so the bit-flip test stays quick and still covers
// the segment info that only a last chunk carries.
func signedChunks() map[string]*proto.Chunk {
	middle := &proto.Chunk{ID: proto.ChunkID{Stream: "cam", Seq: 41, Index: 3}, Data: []byte("data")}
	last := &proto.Chunk{
		ID:    proto.ChunkID{Stream: "cam", Seq: 41, Index: 4},
		Flags: proto.FlagLast | proto.FlagDiscontinuity,
		Info: proto.SegmentInfo{
			ChunkCount: 5, ByteLength: 65540, Duration: 2 * time.Second,
			ProgramDateTime: time.UnixMicro(1767225600000000).UTC(),
		},
		Data: []byte("tail"),
	}
	partEnd := &proto.Chunk{ID: proto.ChunkID{Stream: "cam", Seq: 41, Index: 2}, Flags: proto.FlagPartEnd, Data: []byte("part")}
	for _, c := range []*proto.Chunk{middle, last, partEnd} {
		c.Sign(testKey())
	}
	return map[string]*proto.Chunk{"middle chunk": middle, "last chunk": last, "chunk that ends a part": partEnd}
}

func TestSignedChunkVerifiesAfterTheWire(t *testing.T) {
	for name, c := range signedChunks() {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, c.Verify(pubOf(testKey())))
			got, n, err := proto.ParseChunk(c.Append(nil))
			require.NoError(t, err)
			require.Equal(t, c.Len(), n)
			require.NoError(t, got.Verify(pubOf(testKey())))
		})
	}
}

// Every single-bit corruption of a frame, wherever it lands, is caught before anyone trusts the
// chunk: the parser refuses it or Verify does, with the reason that fits the part that was hit.
func TestEveryBitFlipIsCaught(t *testing.T) {
	pub := pubOf(testKey())
	for name, c := range signedChunks() {
		t.Run(name, func(t *testing.T) {
			enc := c.Append(nil)
			dataStart := len(enc) - len(c.Data)
			sigStart := dataStart - 4 - proto.SignatureSize
			hashStart := sigStart - 32
			for bit := range len(enc) * 8 {
				bad := append([]byte(nil), enc...)
				bad[bit/8] ^= 1 << (bit % 8)
				got, n, err := proto.ParseChunk(bad)
				if err != nil {
					continue
				}
				err = got.Verify(pub)
				require.Error(t, err, "flipped bit %d (byte %d) went unnoticed", bit, bit/8)
				switch at := bit / 8; {
				case at >= dataStart, at >= hashStart && at < sigStart:
					require.ErrorIs(t, err, proto.ErrHashMismatch, "byte %d", at)
				case at >= sigStart+proto.SignatureSize:
					// The data length shrank: the frame parses shorter and its data no longer hashes right.
					require.Less(t, n, len(enc))
					require.ErrorIs(t, err, proto.ErrHashMismatch, "byte %d", at)
				default: // header or signature
					require.ErrorIs(t, err, proto.ErrBadSignature, "byte %d", at)
				}
			}
		})
	}
}

func TestChunkFromAnotherKeyFails(t *testing.T) {
	for name, c := range signedChunks() {
		t.Run(name, func(t *testing.T) {
			err := c.Verify(pubOf(otherKey()))
			require.ErrorIs(t, err, proto.ErrBadSignature)
			require.ErrorContains(t, err, c.ID.String(), "the error names the chunk")
		})
	}
}

// A neighbour cannot move a part boundary: dropping the flag breaks the signature like adding it.
func TestPartEndDroppedFails(t *testing.T) {
	c := signedChunks()["chunk that ends a part"]
	c.Flags &^= proto.FlagPartEnd
	require.ErrorIs(t, c.Verify(pubOf(testKey())), proto.ErrBadSignature)
}

func TestVerifyRejectsAKeyOfTheWrongSize(t *testing.T) {
	c := signedChunks()["middle chunk"]
	require.ErrorIs(t, c.Verify(nil), proto.ErrBadSignature)
	require.ErrorIs(t, c.Verify(pubOf(testKey())[:31]), proto.ErrBadSignature)
}

// A forger who edits the decoded struct instead of the bytes gets no further.
func TestEditedChunkFails(t *testing.T) {
	pub := pubOf(testKey())
	edits := []struct {
		name string
		edit func(c *proto.Chunk)
		err  error
	}{
		{"other stream", func(c *proto.Chunk) { c.ID.Stream = "cab" }, proto.ErrBadSignature},
		{"other segment", func(c *proto.Chunk) { c.ID.Seq++ }, proto.ErrBadSignature},
		{"other index", func(c *proto.Chunk) { c.ID.Index--; c.Info.ChunkCount-- }, proto.ErrBadSignature},
		{"discontinuity dropped", func(c *proto.Chunk) { c.Flags &^= proto.FlagDiscontinuity }, proto.ErrBadSignature},
		{"longer segment", func(c *proto.Chunk) { c.Info.Duration += time.Millisecond }, proto.ErrBadSignature},
		{"other date-time", func(c *proto.Chunk) { c.Info.ProgramDateTime = c.Info.ProgramDateTime.Add(time.Second) }, proto.ErrBadSignature},
		{"other byte length", func(c *proto.Chunk) { c.Info.ByteLength-- }, proto.ErrBadSignature},
		{"other data", func(c *proto.Chunk) { c.Data = []byte("DATA") }, proto.ErrHashMismatch},
		{"other data with its hash", func(c *proto.Chunk) { c.Data = []byte("DATA"); c.Hash = sha(c.Data) }, proto.ErrBadSignature},
		{"no longer last", func(c *proto.Chunk) { c.Flags &^= proto.FlagLast }, proto.ErrBadSignature},
		{"end of stream forged", func(c *proto.Chunk) { c.Flags |= proto.FlagEnd }, proto.ErrBadSignature},
		{"part end forged", func(c *proto.Chunk) { c.Flags |= proto.FlagPartEnd }, proto.ErrBadSignature},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			c := signedChunks()["last chunk"]
			e.edit(c)
			require.ErrorIs(t, c.Verify(pub), e.err)
		})
	}
}

// The end of a stream is a signed fact: nobody but the origin can end a stream (a forged end
// would make every player stop) or hide its end (players would poll a dead stream forever).
func TestEndOfStreamCannotBeForgedOrHidden(t *testing.T) {
	pub := pubOf(testKey())
	ended := &proto.Chunk{
		ID:    proto.ChunkID{Stream: "cam", Seq: 41, Index: 0},
		Flags: proto.FlagLast | proto.FlagEnd,
		Info:  proto.SegmentInfo{ChunkCount: 1, ByteLength: 4, Duration: time.Second},
		Data:  []byte("tail"),
	}
	ended.Sign(testKey())
	require.NoError(t, ended.Verify(pub))
	require.True(t, ended.End())

	hidden := *ended
	hidden.Flags &^= proto.FlagEnd
	require.ErrorIs(t, hidden.Verify(pub), proto.ErrBadSignature)

	forged := signedChunks()["last chunk"]
	require.False(t, forged.End())
	forged.Flags |= proto.FlagEnd
	// The forged flag survives the wire, and is caught there too.
	got, _, err := proto.ParseChunk(forged.Append(nil))
	require.NoError(t, err)
	require.ErrorIs(t, got.Verify(pub), proto.ErrBadSignature)
}

func TestVerifyRefusesASignedButImpossibleChunk(t *testing.T) {
	c := &proto.Chunk{ID: proto.ChunkID{Stream: "cam", Index: 2}, Flags: proto.FlagLast, Info: proto.SegmentInfo{ChunkCount: 9}}
	c.Sign(testKey())
	err := c.Verify(pubOf(testKey()))
	require.ErrorIs(t, err, proto.ErrMalformed)
}

// goldenSignedFrame pins the signed bytes (including the context string) so that a change to
// what the signature covers cannot slip in unnoticed, and another implementation can check
// itself against ours. Key: seed 00 01 02 .. 1f.
const goldenSignedFrame = `
	01 00 03 63616d 0000000000000029 00000003
	3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7
	%s
	00000004 64617461`

func TestGoldenSignature(t *testing.T) {
	c := signedChunks()["middle chunk"]
	want := unhex(sprintf(goldenSignedFrame, goldenSig))
	require.Equal(t, want, c.Append(nil), "got signature %s", hex.EncodeToString(c.Sig[:]))
	got, _, err := proto.ParseChunk(want)
	require.NoError(t, err)
	require.NoError(t, got.Verify(pubOf(testKey())))
}

func TestVerifyErrorsAreDistinct(t *testing.T) {
	require.False(t, errors.Is(proto.ErrBadSignature, proto.ErrHashMismatch))
}

// goldenSig was computed outside Go (Python's cryptography package) over
// "crowdsurf chunk v1\x00" + header + SHA-256("data"), so it checks the layout, not just itself.
const goldenSig = "cd129c9e3f4938e3d68ba9de2c69bd8511699cbe1afe737cf9b79a2b423e1a29" +
	"d4178e75ce7c3b15bd3054462243777f299056102a67c58d44be482882cd3503"

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// The frame carries whole microseconds; a chunk signed with finer times still verifies after the
// wire, because the signature covers the encoded values.
func TestSubMicrosecondTimesAreSignedAsSent(t *testing.T) {
	c := &proto.Chunk{
		ID:    proto.ChunkID{Stream: "cam", Seq: 1},
		Flags: proto.FlagLast,
		Info: proto.SegmentInfo{
			ChunkCount: 1, ByteLength: 3,
			Duration:        2*time.Second + 999,
			ProgramDateTime: time.Date(2026, 11, 21, 23, 40, 0, 123456789, time.UTC),
		},
		Data: []byte("abc"),
	}
	c.Sign(testKey())
	got, _, err := proto.ParseChunk(c.Append(nil))
	require.NoError(t, err)
	require.NoError(t, got.Verify(pubOf(testKey())))
	require.Equal(t, 2*time.Second, got.Info.Duration)
	require.Equal(t, time.Date(2026, 11, 21, 23, 40, 0, 123456000, time.UTC), got.Info.ProgramDateTime)
}
