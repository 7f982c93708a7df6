package proto

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

var validPeerA = "0123456789abcdef0123456789abcdef"

// announceResponseCases drive the parse test and seed the fuzzer.
var announceResponseCases = []struct {
	name string
	json string
	want AnnounceResponse // zero with err
	err  bool
}{
	{
		name: "plain answer",
		json: `{"neighbours":[{"peer_id":"` + validPeerA + `","addr":"10.0.0.1:4000","depths":[1,2,-1,1],"free_slots":3}],"stripes":4,"announce_interval_ms":3000}`,
		want: AnnounceResponse{Neighbours: []PeerInfo{{PeerID: validPeerA, Addr: "10.0.0.1:4000", Depths: []int{1, 2, -1, 1}, FreeSlots: 3}}, Stripes: 4, AnnounceIntervalMs: 3000},
	},
	{
		name: "host names, broadcast and absurd depths are dropped",
		json: `{"neighbours":[{"peer_id":"` + validPeerA + `","addr":"evil.example:80"},{"peer_id":"` + validPeerA + `","addr":"255.255.255.255:1"},{"peer_id":"` + validPeerA + `","addr":"10.0.0.2:1","depths":[900]},{"peer_id":"` + validPeerA + `","addr":"10.0.0.3:1","free_slots":-4},{"peer_id":"` + validPeerA + `","addr":":4000"}],"stripes":4,"announce_interval_ms":3000}`,
		want: AnnounceResponse{Neighbours: []PeerInfo{}, Stripes: 4, AnnounceIntervalMs: 3000},
	},
	{
		name: "an interval of 1 ms is raised, of a week lowered",
		json: `{"stripes":4,"announce_interval_ms":1}`,
		want: AnnounceResponse{Neighbours: []PeerInfo{}, Stripes: 4, AnnounceIntervalMs: MinAnnounceInterval.Milliseconds()},
	},
	{
		name: "a week",
		json: `{"stripes":4,"announce_interval_ms":604800000}`,
		want: AnnounceResponse{Neighbours: []PeerInfo{}, Stripes: 4, AnnounceIntervalMs: MaxAnnounceInterval.Milliseconds()},
	},
	{
		name: "observers and punches: bad ones dropped, good ones kept",
		json: `{"neighbours":[{"peer_id":"` + validPeerA + `","addr":"198.51.100.1:4000","nat_kind":"cone","punch":{"id":"000102030405060708090a0b","delay_ms":300}},{"peer_id":"` + validPeerA + `","addr":"198.51.100.2:4000","punch":{"id":"zz","delay_ms":300}}],"stripes":4,"announce_interval_ms":3000,` +
			`"observers":["192.0.2.1:3478","evil.example:3479"],"punches":[{"id":"000102030405060708090a0b","target":"198.51.100.3:5000","delay_ms":100},{"id":"000102030405060708090a0b","target":"198.51.100.3:5000","delay_ms":99999},{"id":"000102030405060708090a0b","target":"name:1","delay_ms":1}]}`,
		want: AnnounceResponse{
			Neighbours: []PeerInfo{
				{PeerID: validPeerA, Addr: "198.51.100.1:4000", NATKind: NATCone, Punch: &PunchInfo{ID: "000102030405060708090a0b", DelayMs: 300}},
				{PeerID: validPeerA, Addr: "198.51.100.2:4000"},
			},
			Stripes: 4, AnnounceIntervalMs: 3000,
			Observers: []string{"192.0.2.1:3478"},
			Punches:   []PunchOrder{{ID: "000102030405060708090a0b", Target: "198.51.100.3:5000", DelayMs: 100}},
		},
	},
	{name: "too many stripes", json: `{"stripes":99}`, err: true},
	{name: "not JSON", json: `<html>`, err: true},
}

func TestParseAnnounceResponse(t *testing.T) {
	for _, tc := range announceResponseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAnnounceResponse([]byte(tc.json))
			if tc.err {
				require.ErrorIs(t, err, ErrBadAnnounce)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseAnnounceResponseKeepsAtMostMaxNeighbours(t *testing.T) {
	var r AnnounceResponse
	for range 3 * MaxAnswerNeighbours {
		r.Neighbours = append(r.Neighbours, PeerInfo{PeerID: validPeerA, Addr: "10.0.0.1:4000"})
	}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	got, err := ParseAnnounceResponse(b)
	require.NoError(t, err)
	require.Len(t, got.Neighbours, MaxAnswerNeighbours)
}

// FuzzParseAnnounceResponse: whatever the parser keeps parses again to itself and within bounds.
func FuzzParseAnnounceResponse(f *testing.F) {
	for _, tc := range announceResponseCases {
		f.Add([]byte(tc.json))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseAnnounceResponse(b)
		if err != nil {
			return
		}
		require.LessOrEqual(t, len(r.Neighbours), MaxAnswerNeighbours)
		require.GreaterOrEqual(t, r.AnnounceIntervalMs, MinAnnounceInterval.Milliseconds())
		require.LessOrEqual(t, r.AnnounceIntervalMs, MaxAnnounceInterval.Milliseconds())
		enc, err := json.Marshal(r)
		require.NoError(t, err)
		again, err := ParseAnnounceResponse(enc)
		require.NoError(t, err)
		require.Equal(t, r, again)
	})
}
