package tracker

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// The answer spliced around the stream's encoded constant part (and around neighbours encoded
// beforehand) is byte for byte what encoding/json writes for the whole answer.
func TestSplicedAnnounceAnswerIsTheJSONEncoding(t *testing.T) {
	reg := signNow(unsignedRegistration("cam <1> & \"more\""), testPriv)
	base := proto.AnnounceResponse{
		Origin:       proto.OriginInfo{QUICAddr: reg.QUICAddr, HTTPURL: reg.HTTPURL + "/?a=<b>&c", PublicKey: testKey},
		Registration: &reg, Stripes: reg.Stripes, AnnounceIntervalMs: 3000,
	}
	middle := encodeAnswerMiddle(base)
	require.NotNil(t, middle)
	for _, tc := range []struct {
		name       string
		neighbours []proto.PeerInfo
		listed     bool
	}{
		{"alone, listed", []proto.PeerInfo{}, true},
		{"nil neighbours, not listed", nil, false},
		{"three neighbours", []proto.PeerInfo{
			{PeerID: "a", Addr: "10.0.0.1:4433", Depths: []int{1, -1}, FreeSlots: 2},
			{PeerID: "b", Addr: "[2001:db8::1]:4433"},
			{PeerID: "c", Addr: "10.0.0.3:4433", Depths: []int{}, FreeSlots: 0},
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := base
			answer.Neighbours, answer.Listed = tc.neighbours, tc.listed
			got, err := appendAnswer(nil, answer, middle, nil)
			require.NoError(t, err)
			if answer.Neighbours == nil {
				answer.Neighbours = []proto.PeerInfo{} // the handler answers [] for none
			}
			want, err := json.Marshal(answer)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))

			// The same with the neighbours encoded beforehand, as a reused choice has them.
			encoded, err := json.Marshal(answer.Neighbours)
			require.NoError(t, err)
			got, err = appendAnswer(nil, answer, middle, encoded)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
		})
	}
}
