package proto_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/stretchr/testify/require"
)

// messageCases drive TestMessageAppend, TestParseMessage, the truncation test and FuzzParseMessage.
// Every frame is type (1 byte) | payload length (2 bytes) | payload.
var messageCases = []struct {
	name string
	enc  []byte
	msg  proto.Message
}{
	{
		name: "HELLO",
		enc:  unhex(`01 001f | 0001 | 0002 | 000102030405060708090a0b0c0d0e0f | 03 63616d | 04 0001ff02 | 012c`),
		msg: &proto.Hello{
			MinVersion: 1, MaxVersion: 2,
			PeerID:    [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
			Stream:    "cam",
			Depths:    []uint8{0, 1, proto.NoDepth, 2},
			FreeSlots: 300,
		},
	},
	{
		name: "STATUS",
		enc:  unhex(`02 0005 | 02 0304 | 0000`),
		msg:  &proto.Status{Depths: []uint8{3, 4}},
	},
	{
		name: "STATUS_SLOTS",
		enc:  unhex(`0a 0007 | 02 03ff | 0009 | 03 00`),
		msg:  &proto.Status{Depths: []uint8{3, proto.NoDepth}, FreeSlots: 9, StripeSlots: []uint8{3, 0}},
	},
	{
		name: "HAVE two ranges",
		enc: unhex(`03 0022 | 0002
			000000000000000a 00000000 00000008
			000000000000000b 00000003 00000001`),
		msg: &proto.Have{Ranges: []proto.ChunkRange{{Seq: 10, First: 0, Count: 8}, {Seq: 11, First: 3, Count: 1}}},
	},
	{
		name: "HAVE nothing",
		enc:  unhex(`03 0002 | 0000`),
		msg:  &proto.Have{Ranges: []proto.ChunkRange{}},
	},
	{
		name: "HAVE a whole segment of the largest size",
		enc:  unhex(`03 0012 | 0001 | 0000000000000001 00000000 00010000`),
		msg:  &proto.Have{Ranges: []proto.ChunkRange{{Seq: 1, First: 0, Count: proto.MaxChunksPerSegment}}},
	},
	{
		name: "SUBSCRIBE",
		enc:  unhex(`04 0009 | 03 | 0000000000001234`),
		msg:  &proto.Subscribe{Stripe: 3, FromSeq: 0x1234},
	},
	{
		name: "SUBSCRIBE_ACK accepted",
		enc:  unhex(`05 0003 | 02 | 01 | 01`),
		msg:  &proto.SubscribeAck{Stripe: 2, Accepted: true, Depth: 1},
	},
	{
		name: "SUBSCRIBE_ACK refused",
		enc:  unhex(`05 0003 | 0f | 00 | ff`),
		msg:  &proto.SubscribeAck{Stripe: 15, Depth: proto.NoDepth},
	},
	{
		name: "UNSUBSCRIBE",
		enc:  unhex(`06 0001 | 01`),
		msg:  &proto.Unsubscribe{Stripe: 1},
	},
	{
		name: "REQUEST",
		enc:  unhex(`07 000c | 0000000000000063 | 00000005`),
		msg:  &proto.Request{Seq: 99, Index: 5},
	},
	{
		name: "CANCEL",
		enc:  unhex(`08 000c | ffffffffffffffff | 0000ffff`),
		msg:  &proto.Cancel{Seq: 1<<64 - 1, Index: proto.MaxChunksPerSegment - 1},
	},
	{
		name: "GOODBYE with a reason",
		enc:  unhex(`09 0004 | 03 627965`),
		msg:  &proto.Goodbye{Reason: "bye"},
	},
	{
		name: "GOODBYE without a reason",
		enc:  unhex(`09 0001 | 00`),
		msg:  &proto.Goodbye{},
	},
}

// badMessageCases are complete frames that must be rejected with ErrMalformed (ErrBadStreamName
// for HELLO's stream); they also seed FuzzParseMessage.
// badMessageCases are complete frames that must be rejected with ErrMalformed (ErrBadStreamName
// for HELLO's stream); they also seed FuzzParseMessage. why is a piece of the error text, so a
// case cannot pass by failing for another reason (e.g. a miscounted length).
var badMessageCases = []struct {
	name string
	enc  []byte
	err  error
	why  string
}{
	{"type 0", unhex(`00 0000`), proto.ErrMalformed, "unknown message type 0"},
	{"type 11", unhex(`0b 0001 | 00`), proto.ErrMalformed, "unknown message type 11"},
	{"STATUS_SLOTS short of a stripe", unhex(`0a 0006 | 02 0304 | 0000 | 01`), proto.ErrMalformed, "truncated STATUS_SLOTS payload"},
	{"type 255", unhex(`ff 0000`), proto.ErrMalformed, "unknown message type 255"},
	{"HELLO min version above max", frame(0x01, `0002 | 0001 | `+rep("00", 16)+` | 01 78 | 01 00 | 0000`), proto.ErrMalformed, "version range 2..1"},
	{"HELLO without stripes", frame(0x01, `0001 | 0001 | `+rep("00", 16)+` | 01 78 | 00 | 0000`), proto.ErrMalformed, "0 stripes"},
	{"HELLO with 17 stripes", frame(0x01, `0001 | 0001 | `+rep("00", 16)+` | 01 78 | 11 `+rep("00", 17)+` | 0000`), proto.ErrMalformed, "17 stripes"},
	{"HELLO without a stream", frame(0x01, `0001 | 0001 | `+rep("00", 16)+` | 00 | 01 00 | 0000`), proto.ErrBadStreamName, "must be 1 to 64"},
	{"HELLO with a space in the stream", frame(0x01, `0001 | 0001 | `+rep("00", 16)+` | 02 6120 | 01 00 | 0000`), proto.ErrBadStreamName, "has character ' '"},
	{"STATUS without stripes", frame(0x02, `00 | 0000`), proto.ErrMalformed, "0 stripes"},
	{"HAVE counting more ranges than its payload holds", unhex(`03 0002 | 0001`), proto.ErrMalformed, "HAVE with 1 ranges"},
	{"HAVE counting 65535 ranges", unhex(`03 0002 | ffff`), proto.ErrMalformed, "HAVE with 65535 ranges"},
	{"HAVE with an empty range", frame(0x03, `0001 | 0000000000000001 00000000 00000000`), proto.ErrMalformed, "HAVE range 1/0+0"},
	{"HAVE with a range past the end of a segment", frame(0x03, `0001 | 0000000000000001 0000ffff 00000002`), proto.ErrMalformed, "HAVE range 1/65535+2"},
	{"HAVE with a range whose end overflows 32 bits", frame(0x03, `0001 | 0000000000000001 ffffffff 00000002`), proto.ErrMalformed, "HAVE range 1/4294967295+2"},
	{"SUBSCRIBE to stripe 16", frame(0x04, `10 | 0000000000000000`), proto.ErrMalformed, "stripe 16"},
	{"SUBSCRIBE_ACK accepted is neither 0 nor 1", frame(0x05, `00 | 02 | 00`), proto.ErrMalformed, "accepted must be 0 or 1"},
	{"SUBSCRIBE_ACK for stripe 200", frame(0x05, `c8 | 01 | 00`), proto.ErrMalformed, "stripe 200"},
	{"UNSUBSCRIBE from stripe 255", frame(0x06, `ff`), proto.ErrMalformed, "stripe 255"},
	{"UNSUBSCRIBE with a trailing byte", unhex(`06 0002 | 01 00`), proto.ErrMalformed, "1 trailing bytes"},
	{"UNSUBSCRIBE with an empty payload", unhex(`06 0000`), proto.ErrMalformed, "truncated UNSUBSCRIBE payload"},
	{"REQUEST beyond a segment", frame(0x07, `0000000000000001 | 00010000`), proto.ErrMalformed, "chunk index 65536"},
	{"REQUEST with a short payload", unhex(`07 0004 | 00000000`), proto.ErrMalformed, "truncated REQUEST payload"},
	{"CANCEL beyond a segment", frame(0x08, `0000000000000001 | ffffffff`), proto.ErrMalformed, "chunk index 4294967295"},
	{"GOODBYE reason longer than the payload", unhex(`09 0002 | 05 41`), proto.ErrMalformed, "truncated GOODBYE payload"},
}

// frame wraps a hex payload in a message frame with the right length, for cases about the payload.
func frame(typ byte, payloadHex string) []byte {
	p := unhex(payloadHex)
	return append([]byte{typ, byte(len(p) >> 8), byte(len(p))}, p...)
}

func TestMessageAppend(t *testing.T) {
	for _, tc := range messageCases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.enc, tc.msg.Append(nil))
			require.Equal(t, proto.MessageType(tc.enc[0]), tc.msg.Type())
			require.Equal(t, append([]byte{0xee}, tc.enc...), tc.msg.Append([]byte{0xee}), "Append must append, not overwrite")
		})
	}
}

func TestParseMessage(t *testing.T) {
	for _, tc := range messageCases {
		t.Run(tc.name, func(t *testing.T) {
			m, n, err := proto.ParseMessage(tc.enc)
			require.NoError(t, err)
			require.Equal(t, len(tc.enc), n)
			require.Equal(t, tc.msg, m)

			// The next frame on the stream is not ours to touch.
			m, n, err = proto.ParseMessage(append(append([]byte(nil), tc.enc...), tc.enc...))
			require.NoError(t, err)
			require.Equal(t, len(tc.enc), n)
			require.Equal(t, tc.msg, m)
		})
	}
}

// A frame cut anywhere is end of input (the caller reads more); ErrMalformed is kept for frames
// that are complete but wrong, such as a length field too short for the payload.
func TestParseMessageTruncatedAtEveryLength(t *testing.T) {
	for _, tc := range messageCases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(tc.enc) {
				_, _, err := proto.ParseMessage(tc.enc[:i])
				require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d of %d", i, len(tc.enc))
			}
		})
	}
}

func TestParseMessageRejects(t *testing.T) {
	for _, tc := range badMessageCases {
		t.Run(tc.name, func(t *testing.T) {
			m, n, err := proto.ParseMessage(tc.enc)
			require.ErrorIs(t, err, tc.err)
			require.ErrorContains(t, err, tc.why)
			require.NotErrorIs(t, err, io.ErrUnexpectedEOF, "a complete frame is never end of input")
			require.Nil(t, m)
			require.Zero(t, n)
		})
	}
}

// The largest length a frame can claim allocates nothing while the caller waits for the bytes.
func TestParseMessageMaxLengthAllocatesNothingUntilItArrives(t *testing.T) {
	enc := unhex(`03 ffff | 0fff`)
	allocs := testing.AllocsPerRun(100, func() {
		_, _, err := proto.ParseMessage(enc)
		if err != io.ErrUnexpectedEOF {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func TestHaveWithMostRangesFitsOneMessage(t *testing.T) {
	have := &proto.Have{Ranges: make([]proto.ChunkRange, proto.MaxHaveRanges)}
	for i := range have.Ranges {
		have.Ranges[i] = proto.ChunkRange{Seq: uint64(i), Count: 1}
	}
	enc := have.Append(nil)
	require.LessOrEqual(t, len(enc)-3, proto.MaxMessageSize)
	m, n, err := proto.ParseMessage(enc)
	require.NoError(t, err)
	require.Equal(t, len(enc), n)
	require.Equal(t, have, m)
}

func TestGoodbyeReasonIsCutToFit(t *testing.T) {
	long := string(make65('r')) + string(make([]byte, 300))
	m, _, err := proto.ParseMessage((&proto.Goodbye{Reason: long}).Append(nil))
	require.NoError(t, err)
	require.Equal(t, long[:proto.MaxGoodbyeReason], m.(*proto.Goodbye).Reason)
}

func TestNegotiatePicksHighestCommonVersion(t *testing.T) {
	v, err := proto.Negotiate(&proto.Hello{MinVersion: 1, MaxVersion: 3}, &proto.Hello{MinVersion: 2, MaxVersion: 5})
	require.NoError(t, err)
	require.Equal(t, uint16(3), v)

	_, err = proto.Negotiate(&proto.Hello{MinVersion: 1, MaxVersion: 1}, &proto.Hello{MinVersion: 2, MaxVersion: 2})
	require.ErrorIs(t, err, proto.ErrUnsupportedVersion)
}

func TestMessageTypeNames(t *testing.T) {
	require.Equal(t, "SUBSCRIBE_ACK", proto.TypeSubscribeAck.String())
	require.Equal(t, "type(42)", proto.MessageType(42).String())
	for _, tc := range messageCases {
		require.NotContains(t, tc.msg.Type().String(), "type(", tc.name)
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, tc := range messageCases {
		f.Add(tc.enc)
	}
	for _, tc := range badMessageCases {
		f.Add(tc.enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := proto.ParseMessage(b)
		read, readErr := proto.ReadMessage(bytes.NewReader(b))
		if err != nil {
			require.Nil(t, m)
			require.Zero(t, n)
			require.Error(t, readErr, "ReadMessage accepted what ParseMessage refused: %v", err)
			return
		}
		require.NoError(t, readErr, "ReadMessage refused what ParseMessage accepted")
		require.Equal(t, m, read)
		require.LessOrEqual(t, n, len(b))
		require.Equal(t, b[:n], m.Append(nil), "a parsed message must re-encode to the bytes it came from")
	})
}
