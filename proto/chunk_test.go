package proto_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/stretchr/testify/require"
)

func filled(b byte) (a [32]byte) {
	for i := range a {
		a[i] = b
	}
	return a
}

func filledSig(b byte) (a [proto.SignatureSize]byte) {
	for i := range a {
		a[i] = b
	}
	return a
}

// chunkCases drive TestChunkAppend, TestParseChunk, the truncation test and FuzzParseChunk.
// Hash and signature are placeholders: these tests are about layout, sign_test.go about trust.
var chunkCases = []struct {
	name  string
	enc   []byte
	chunk proto.Chunk
}{
	{
		name: "middle chunk",
		enc: unhex(`
			01 | 00 | 03 | 63616d | 0000000000000007 | 00000002
			` + rep("11", 32) + rep("22", 64) + `
			00000003 | 616263`),
		chunk: proto.Chunk{
			ID:   proto.ChunkID{Stream: "cam", Seq: 7, Index: 2},
			Hash: filled(0x11), Sig: filledSig(0x22),
			Data: []byte("abc"),
		},
	},
	{
		name: "last chunk of a discontinuity segment carries segment info",
		enc: unhex(`
			01 | 03 | 09 | 6c6976652e6d61696e | 0102030405060708 | 00000004
			00000005 | 0000000000011170 | 00000000001e8c50 | 0006474846222240
			` + rep("aa", 32) + rep("bb", 64) + `
			00000000`),
		chunk: proto.Chunk{
			ID:    proto.ChunkID{Stream: "live.main", Seq: 0x0102030405060708, Index: 4},
			Flags: proto.FlagLast | proto.FlagDiscontinuity,
			Info: proto.SegmentInfo{
				ChunkCount:      5,
				ByteLength:      70000,
				Duration:        2002 * time.Millisecond,
				ProgramDateTime: time.UnixMicro(1767225600123456).UTC(),
			},
			Hash: filled(0xaa), Sig: filledSig(0xbb),
			Data: []byte{},
		},
	},
	{
		name: "last chunk of the last segment ends the stream",
		enc: unhex(`
			01 | 05 | 03 | 63616d | 0000000000000009 | 00000000
			00000001 | 0000000000000002 | 00000000000f4240 | 0006474846222240
			` + rep("cc", 32) + rep("dd", 64) + `
			00000002 | 6869`),
		chunk: proto.Chunk{
			ID:    proto.ChunkID{Stream: "cam", Seq: 9, Index: 0},
			Flags: proto.FlagLast | proto.FlagEnd,
			Info: proto.SegmentInfo{
				ChunkCount:      1,
				ByteLength:      2,
				Duration:        time.Second,
				ProgramDateTime: time.UnixMicro(1767225600123456).UTC(),
			},
			Hash: filled(0xcc), Sig: filledSig(0xdd),
			Data: []byte("hi"),
		},
	},
	{
		name: "chunk that ends a part",
		enc: unhex(`
			01 | 08 | 03 | 63616d | 0000000000000007 | 00000003
			` + rep("11", 32) + rep("22", 64) + `
			00000002 | 6465`),
		chunk: proto.Chunk{
			ID:    proto.ChunkID{Stream: "cam", Seq: 7, Index: 3},
			Flags: proto.FlagPartEnd,
			Hash:  filled(0x11), Sig: filledSig(0x22),
			Data: []byte("de"),
		},
	},
	{
		name: "last chunk that also ends its last part, in a discontinuity segment",
		enc: unhex(`
			01 | 0b | 03 | 63616d | 0000000000000008 | 00000001
			00000002 | 0000000000000003 | 00000000000f4240 | 0006474846222240
			` + rep("11", 32) + rep("22", 64) + `
			00000001 | 66`),
		chunk: proto.Chunk{
			ID:    proto.ChunkID{Stream: "cam", Seq: 8, Index: 1},
			Flags: proto.FlagLast | proto.FlagDiscontinuity | proto.FlagPartEnd,
			Info: proto.SegmentInfo{
				ChunkCount:      2,
				ByteLength:      3,
				Duration:        time.Second,
				ProgramDateTime: time.UnixMicro(1767225600123456).UTC(),
			},
			Hash: filled(0x11), Sig: filledSig(0x22),
			Data: []byte("f"),
		},
	},
	{
		name: "highest chunk index",
		enc: unhex(`
			01 | 02 | 01 | 78 | ffffffffffffffff | 0000ffff
			` + rep("00", 32) + rep("ff", 64) + `
			00000001 | 00`),
		chunk: proto.Chunk{
			ID:    proto.ChunkID{Stream: "x", Seq: 1<<64 - 1, Index: proto.MaxChunksPerSegment - 1},
			Flags: proto.FlagDiscontinuity,
			Sig:   filledSig(0xff),
			Data:  []byte{0},
		},
	},
}

// chunkHeader is a valid middle-chunk prefix up to the data length, for malformed cases.
func chunkHeader(version, flags byte, stream string) string {
	return hexByte(version) + hexByte(flags) + hexByte(byte(len(stream))) + hexString(stream) +
		"0000000000000001 00000000" + rep("11", 32) + rep("22", 64)
}

func hexByte(b byte) string {
	return string("0123456789abcdef"[b>>4]) + string("0123456789abcdef"[b&15])
}

func hexString(s string) string {
	out := ""
	for i := 0; i < len(s); i++ {
		out += hexByte(s[i])
	}
	return out
}

// lastChunkHeader is a last chunk at index 0 with the given segment info fields, up to the hash.
func lastChunkHeader(count, byteLen, durationMicros string) string {
	return "01 01 03 63616d 0000000000000001 00000000" + count + byteLen + durationMicros + "0000000000000000"
}

// badChunkCases are complete frames that must be rejected; they also seed FuzzParseChunk.
var badChunkCases = []struct {
	name string
	enc  []byte
	err  error
	why  string // a piece of the error text, so a case cannot pass by failing for another reason
}{
	{"version 0", unhex(chunkHeader(0, 0, "cam") + "00000000"), proto.ErrUnsupportedVersion, "chunk frame version 0"},
	{"version 2", unhex(chunkHeader(2, 0, "cam") + "00000000"), proto.ErrUnsupportedVersion, "chunk frame version 2"},
	{"unknown flag", unhex(chunkHeader(1, 0x10, "cam") + "00000000"), proto.ErrMalformed, "unknown chunk flags 0x10"},
	{"every unknown flag", unhex(chunkHeader(1, 0xf0, "cam") + "00000000"), proto.ErrMalformed, "unknown chunk flags 0xf0"},
	{"end of stream on a chunk that is not the last", unhex(chunkHeader(1, 0x04, "cam") + "00000000"), proto.ErrMalformed, "end of stream on chunk 0"},
	{"data length over the maximum, before any data", unhex(chunkHeader(1, 0, "cam") + "00010001"), proto.ErrTooLarge, "chunk data of 65537 bytes"},
	{"data length of 4 GiB", unhex(chunkHeader(1, 0, "cam") + "ffffffff"), proto.ErrTooLarge, "chunk data of 4294967295 bytes"},
	{"empty stream name", unhex(chunkHeader(1, 0, "") + "00000000"), proto.ErrBadStreamName, "must be 1 to 64"},
	{"slash in stream name", unhex(chunkHeader(1, 0, "a/b") + "00000000"), proto.ErrBadStreamName, "has character '/'"},
	{"stream name over 64 bytes", unhex(chunkHeader(1, 0, string(make65('a'))) + "00000000"), proto.ErrBadStreamName, "must be 1 to 64"},
	{"chunk index beyond a segment", unhex("01 00 03 63616d 0000000000000001 00010000" + rep("11", 32) + rep("22", 64) + "00000000"), proto.ErrMalformed, "chunk index 65536"},
	{"last chunk whose count disagrees with its index",
		unhex(lastChunkHeader("00000002", "0000000000000000", "0000000000000000") + rep("11", 32) + rep("22", 64) + "00000000"), proto.ErrMalformed, "last chunk 0 but segment has 2 chunks"},
	{"segment longer than its chunks can hold",
		unhex(lastChunkHeader("00000001", "0000000000010001", "0000000000000000") + rep("11", 32) + rep("22", 64) + "00000000"), proto.ErrMalformed, "segment length 65537 too large for 1 chunks"},
	{"segment duration over an hour",
		unhex(lastChunkHeader("00000001", "0000000000000000", "00000000d693a401") + rep("11", 32) + rep("22", 64) + "00000000"), proto.ErrMalformed, "segment duration of 3600000001 µs"},
	// Was accepted before: µs × 1000 wrapped around to 384 ns, which re-encoded as 0 µs.
	{"segment duration that wraps when converted to nanoseconds",
		unhex(lastChunkHeader("00000001", "0000000000000000", "00418937 4bc6a7f0") + rep("11", 32) + rep("22", 64) + "00000000"), proto.ErrMalformed, "segment duration of 18446744073709552 µs"},
}

func make65(c byte) []byte {
	b := make([]byte, 65)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestChunkAppend(t *testing.T) {
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.enc, tc.chunk.Append(nil))
			require.Equal(t, len(tc.enc), tc.chunk.Len())
			prefix := []byte("prefix")
			require.Equal(t, append([]byte("prefix"), tc.enc...), tc.chunk.Append(prefix), "Append must append, not overwrite")
		})
	}
}

func TestParseChunk(t *testing.T) {
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			c, n, err := proto.ParseChunk(tc.enc)
			require.NoError(t, err)
			require.Equal(t, len(tc.enc), n)
			require.Equal(t, tc.chunk, c.Fields())
			require.Equal(t, tc.enc, c.Frame())

			// Bytes after the frame belong to whatever follows it.
			c, n, err = proto.ParseChunk(append(append([]byte(nil), tc.enc...), 0xde, 0xad))
			require.NoError(t, err)
			require.Equal(t, len(tc.enc), n)
			require.Equal(t, tc.chunk, c.Fields())
			require.Equal(t, tc.enc, c.Frame(), "the frame ends where the chunk does")
		})
	}
}

// A chunk frame has no outer length, so a cut anywhere is end of input, never a parse error:
// the reader of a stream waits for more bytes.
func TestParseChunkTruncatedAtEveryLength(t *testing.T) {
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(tc.enc) {
				_, _, err := proto.ParseChunk(tc.enc[:i])
				require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d of %d", i, len(tc.enc))
			}
		})
	}
}

func TestParseChunkRejects(t *testing.T) {
	for _, tc := range badChunkCases {
		t.Run(tc.name, func(t *testing.T) {
			c, n, err := proto.ParseChunk(tc.enc)
			require.ErrorIs(t, err, tc.err)
			require.ErrorContains(t, err, tc.why)
			require.Nil(t, c)
			require.Zero(t, n)
		})
	}
}

// A peer can claim a huge chunk in a few bytes; the parser must refuse before it reads or
// allocates anything for the data.
func TestParseChunkOversizedLengthAllocatesNothingForData(t *testing.T) {
	enc := unhex(chunkHeader(1, 0, "cam") + "ffffffff")
	allocs := testing.AllocsPerRun(100, func() {
		_, _, err := proto.ParseChunk(enc)
		if !errors.Is(err, proto.ErrTooLarge) {
			panic(err)
		}
	})
	// The Chunk, its stream name and the error; nothing sized by the length field.
	require.LessOrEqual(t, allocs, 6.0)
}

func TestChunkPartEnd(t *testing.T) {
	for _, tc := range []struct {
		flags proto.Flags
		want  bool
	}{
		{0, false},
		{proto.FlagDiscontinuity, false},
		{proto.FlagPartEnd, true},
		{proto.FlagLast, true}, // the last chunk always ends the segment's last part
		{proto.FlagLast | proto.FlagPartEnd, true},
		{proto.FlagLast | proto.FlagEnd, true},
	} {
		c := proto.Chunk{Flags: tc.flags}
		require.Equal(t, tc.want, c.PartEnd(), "flags %#x", uint8(tc.flags))
	}
}

func TestChunkIDString(t *testing.T) {
	require.Equal(t, "cam/7/2", proto.ChunkID{Stream: "cam", Seq: 7, Index: 2}.String())
}

func FuzzParseChunk(f *testing.F) {
	for _, tc := range chunkCases {
		f.Add(tc.enc)
	}
	for _, tc := range badChunkCases {
		f.Add(tc.enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, n, err := proto.ParseChunk(b)
		read, readErr := proto.ReadChunk(bytes.NewReader(b))
		if err != nil {
			require.Nil(t, c)
			require.Zero(t, n)
			require.Error(t, readErr, "ReadChunk accepted what ParseChunk refused: %v", err)
			return
		}
		require.NoError(t, readErr, "ReadChunk refused what ParseChunk accepted")
		require.Equal(t, c.Fields(), read.Fields())
		require.LessOrEqual(t, n, len(b))
		require.LessOrEqual(t, n, proto.MaxChunkFrame)
		require.Equal(t, n, c.Len())
		require.Equal(t, b[:n], c.Append(nil), "a parsed frame must re-encode to the bytes it came from")
		require.Equal(t, b[:n], c.Frame())
		require.Equal(t, b[:n], read.Frame())
	})
}
