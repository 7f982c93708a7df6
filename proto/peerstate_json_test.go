package proto

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func samplePeerRecord() PeerRecord {
	return PeerRecord{
		PeerState: PeerState{
			PeerID: testPeerID, Stream: "concert", StreamKey: "k3y-_=", Addr: "[2001:db8::1]:4433",
			UploadBps: 3_000_000, Depths: []int{1, -1, 0, 1024}, Parents: []string{"a", "", "b", "c"},
			FreeSlots: 3, Quality: PeerQuality{BufferMs: 4000, Stalls: 2, FallbackShare: 0.0125},
			ReflexiveAddr: "198.51.100.7:61000", NATKind: NATCone,
		},
		SourceIP: "198.51.100.7",
	}
}

// What encoding/json writes for a record or an announce is read without it, to the same value.
func TestPlainPeerStateJSONIsReadDirectly(t *testing.T) {
	rec := samplePeerRecord()
	empty := PeerRecord{PeerState: PeerState{Depths: []int{}, Parents: []string{}}}
	for _, r := range []PeerRecord{rec, empty, {}} {
		b, err := json.Marshal(r)
		require.NoError(t, err)
		var got PeerRecord
		require.True(t, decodePeerStateJSON(b, &got.PeerState, "source_ip", &got.SourceIP), "%s", b)
		require.Equal(t, r, got)
		parsed, err := ParsePeerRecord(b)
		require.NoError(t, err)
		require.Equal(t, r, parsed)
	}
	req := AnnounceRequest{PeerState: rec.PeerState, PeerSecret: "00ff"}
	b, err := json.Marshal(req)
	require.NoError(t, err)
	var got AnnounceRequest
	require.True(t, decodePeerStateJSON(b, &got.PeerState, "peer_secret", &got.PeerSecret))
	require.Equal(t, req, got)
}

// Whatever the direct reader does not take, encoding/json decodes: the result is the same.
func TestUnusualPeerStateJSONFallsBackToEncodingJSON(t *testing.T) {
	for _, tc := range []struct{ name, json string }{
		{"key in another case", `{"PEER_ID":"abc","stream":"s"}`},
		{"unknown key", `{"peer_id":"abc","future":{"x":[1,2]}}`},
		{"escaped string", `{"peer_id":"a\u0062c","stream":"s\"t"}`},
		{"non-ASCII string", `{"peer_id":"abc","stream":"Konzert-Saal-ü"}`},
		{"repeated key", `{"peer_id":"abc","peer_id":"def"}`},
		{"null quality", `{"peer_id":"abc","quality":null}`},
		{"whitespace everywhere", " {\n\t\"peer_id\" : \"abc\" ,\r\n \"depths\" : [ 1 , 2 ] , \"quality\" : { \"stalls\" : 3 } } \n"},
		{"float free slots", `{"free_slots":1.5}`},
		{"exponent upload", `{"upload_bps":3e6}`},
		{"huge number", `{"upload_bps":123456789012345678901234567890}`},
		{"fallback share exponent", `{"quality":{"fallback_share":2.5e-3}}`},
		{"bad NAT kind", `{"nat_kind":"weird"}`},
		{"trailing garbage", `{"peer_id":"abc"} x`},
		{"unterminated", `{"peer_id":"abc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want PeerRecord
			wantErr := json.Unmarshal([]byte(tc.json), &want)
			got, err := ParsePeerRecord([]byte(tc.json))
			if wantErr != nil {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

// FuzzDecodePeerStateJSON checks that the direct reader, whenever it takes an input, decodes
// it exactly as encoding/json does, for an announce and for a record.
func FuzzDecodePeerStateJSON(f *testing.F) {
	rec := samplePeerRecord()
	b, _ := json.Marshal(rec)
	f.Add(b)
	b, _ = json.Marshal(AnnounceRequest{PeerState: rec.PeerState, PeerSecret: "00ff"})
	f.Add(b)
	for _, tc := range announceCases {
		f.Add([]byte(tc.json))
	}
	f.Add([]byte(`{"depths":[],"parents":[],"quality":{}}`))
	f.Add([]byte(`{"upload_bps":-0,"free_slots":01}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec PeerRecord
		if decodePeerStateJSON(b, &rec.PeerState, "source_ip", &rec.SourceIP) {
			var want PeerRecord
			require.NoError(t, json.Unmarshal(b, &want), "the direct reader took what encoding/json refuses")
			require.Equal(t, want, rec)
		}
		var req AnnounceRequest
		if decodePeerStateJSON(b, &req.PeerState, "peer_secret", &req.PeerSecret) {
			var want AnnounceRequest
			require.NoError(t, json.Unmarshal(b, &want), "the direct reader took what encoding/json refuses")
			require.Equal(t, want, req)
		}
	})
}
