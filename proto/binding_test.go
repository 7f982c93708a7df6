package proto_test

import (
	"encoding/json"
	"io"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

var txid = proto.TxID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

// bindingCases drive TestBindingAppend, TestParseBinding, the truncation test and
// FuzzParseBinding. Every datagram is type (1) | magic "csn" (3) | body.
var bindingCases = []struct {
	name string
	enc  []byte
	msg  proto.BindingMessage
}{
	{
		name: "BINDING_REQUEST",
		enc:  unhex(`31 63736e | 000102030405060708090a0b | ` + rep("00", 20)),
		msg:  &proto.BindingRequest{TxID: txid},
	},
	{
		name: "BINDING_RESPONSE IPv4",
		enc:  unhex(`32 63736e | 000102030405060708090a0b | 04 | c350 | cb007107`),
		msg:  &proto.BindingResponse{TxID: txid, Observed: netip.MustParseAddrPort("203.0.113.7:50000")},
	},
	{
		name: "BINDING_RESPONSE IPv6",
		enc:  unhex(`32 63736e | 000102030405060708090a0b | 06 | 1151 | 20010db8000000000000000000000001`),
		msg:  &proto.BindingResponse{TxID: txid, Observed: netip.MustParseAddrPort("[2001:db8::1]:4433")},
	},
	{
		name: "BINDING_RESPONSE IPv4-mapped IPv6 stays IPv6",
		enc:  unhex(`32 63736e | 000102030405060708090a0b | 06 | 0001 | 00000000000000000000ffffc0000201`),
		msg:  &proto.BindingResponse{TxID: txid, Observed: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1")},
	},
	{
		name: "PUNCH",
		enc:  unhex(`33 63736e | 0b0a09080706050403020100`),
		msg:  &proto.Punch{ID: proto.TxID{11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
	},
	{
		name: "PUNCH_REQUEST IPv4",
		enc:  unhex(`34 63736e | 000102030405060708090a0b | 012c | 04 | c350 | cb007107`),
		msg:  &proto.PunchRequest{ID: txid, DelayMs: 300, Target: netip.MustParseAddrPort("203.0.113.7:50000")},
	},
	{
		name: "PUNCH_REQUEST IPv6, the largest datagram",
		enc:  unhex(`34 63736e | 000102030405060708090a0b | 07d0 | 06 | 1151 | 20010db8000000000000000000000001`),
		msg:  &proto.PunchRequest{ID: txid, DelayMs: proto.MaxPunchDelay, Target: netip.MustParseAddrPort("[2001:db8::1]:4433")},
	},
}

var badBindingCases = []struct {
	name string
	enc  []byte
	why  string
}{
	{"a QUIC long header", unhex(`c0 00000001 | 08 0001020304050607`), "not a binding datagram"},
	{"a STUN binding request", unhex(`0001 0000 2112a442 000102030405060708090a0b`), "not a binding datagram"},
	{"unknown type", unhex(`35 63736e | 000102030405060708090a0b`), "binding type 0x35"},
	{"PUNCH_REQUEST delay over the bound", unhex(`34 63736e | 000102030405060708090a0b | 07d1 | 04 | c350 | cb007107`), "delay 2001"},
	{"PUNCH_REQUEST unknown family", unhex(`34 63736e | 000102030405060708090a0b | 0001 | 05 | c350 | cb007107`), "family 5"},
	{"padding not zero", unhex(`31 63736e | 000102030405060708090a0b | ` + rep("00", 19) + `01`), "padding"},
	{"unknown address family", unhex(`32 63736e | 000102030405060708090a0b | 05 | 0001 | 00000000`), "family 5"},
}

func TestBindingAppend(t *testing.T) {
	for _, tc := range bindingCases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.enc, tc.msg.Append(nil))
			require.Equal(t, proto.BindingType(tc.enc[0]), tc.msg.Type())
			require.Equal(t, append([]byte{0xee}, tc.enc...), tc.msg.Append([]byte{0xee}), "Append must append, not overwrite")
			require.LessOrEqual(t, len(tc.enc), proto.MaxBindingSize)
			require.True(t, proto.IsBinding(tc.enc))
		})
	}
}

func TestParseBinding(t *testing.T) {
	for _, tc := range bindingCases {
		t.Run(tc.name, func(t *testing.T) {
			m, n, err := proto.ParseBinding(tc.enc)
			require.NoError(t, err)
			require.Equal(t, len(tc.enc), n)
			require.Equal(t, tc.msg, m)

			m, n, err = proto.ParseBinding(append(append([]byte(nil), tc.enc...), 0xff, 0xff))
			require.NoError(t, err)
			require.Equal(t, len(tc.enc), n, "trailing bytes are the caller's")
			require.Equal(t, tc.msg, m)
		})
	}
}

func TestParseBindingTruncatedAtEveryLength(t *testing.T) {
	for _, tc := range bindingCases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(tc.enc) {
				_, _, err := proto.ParseBinding(tc.enc[:i])
				require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d of %d", i, len(tc.enc))
			}
		})
	}
}

func TestParseBindingRejects(t *testing.T) {
	for _, tc := range badBindingCases {
		t.Run(tc.name, func(t *testing.T) {
			m, n, err := proto.ParseBinding(tc.enc)
			require.ErrorIs(t, err, proto.ErrMalformed)
			require.ErrorContains(t, err, tc.why)
			require.Nil(t, m)
			require.Zero(t, n)
		})
	}
}

// quic-go passes a datagram to ReadNonQUICPacket only when both top bits of its first byte
// are clear; anything else it tries as QUIC.
func TestBindingDatagramsAreNeverQUIC(t *testing.T) {
	for _, typ := range []proto.BindingType{proto.TypeBindingRequest, proto.TypeBindingResponse, proto.TypePunch} {
		require.Zero(t, byte(typ)&0xc0, "%s", typ)
		require.NotContains(t, typ.String(), "binding(")
	}
	require.False(t, proto.IsBinding(unhex(`c0 63736e`)), "a QUIC first byte with our magic after it")
	require.False(t, proto.IsBinding(unhex(`31 6373`)))
}

// A request is never smaller than any response, so an observer cannot amplify a spoofed one.
func TestBindingResponseIsNoLargerThanRequest(t *testing.T) {
	req := (&proto.BindingRequest{}).Append(nil)
	resp := (&proto.BindingResponse{Observed: netip.MustParseAddrPort("[2001:db8::1]:1")}).Append(nil)
	require.LessOrEqual(t, len(resp), len(req))
	require.LessOrEqual(t, len(req), proto.MaxBindingSize)
}

func TestNATKindText(t *testing.T) {
	for _, k := range []proto.NATKind{proto.NATUnknown, proto.NATPublic, proto.NATCone, proto.NATSymmetric} {
		b, err := json.Marshal(k)
		require.NoError(t, err)
		var back proto.NATKind
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, k, back)
	}
	b, err := json.Marshal(proto.NATCone)
	require.NoError(t, err)
	require.JSONEq(t, `"cone"`, string(b))
	var k proto.NATKind
	require.ErrorIs(t, k.UnmarshalText([]byte("full-cone")), proto.ErrMalformed)
	_, err = proto.NATKind(9).MarshalText()
	require.Error(t, err)
}

func FuzzParseBinding(f *testing.F) {
	for _, tc := range bindingCases {
		f.Add(tc.enc)
	}
	for _, tc := range badBindingCases {
		f.Add(tc.enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := proto.ParseBinding(b)
		if err != nil {
			require.Nil(t, m)
			require.Zero(t, n)
			return
		}
		require.True(t, proto.IsBinding(b))
		require.LessOrEqual(t, n, min(len(b), proto.MaxBindingSize))
		require.Equal(t, b[:n], m.Append(nil), "a parsed datagram must re-encode to the bytes it came from")
	})
}
