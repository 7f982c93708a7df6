package proto

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var trackerTestKey = base64.StdEncoding.EncodeToString(make([]byte, 32))

func goodAnnounce() AnnounceRequest {
	return AnnounceRequest{
		PeerID: "peer-1", Stream: "live", Addr: "127.0.0.1:4242", UploadBps: 5_000_000,
		Depths: []int{1, 2, -1, 3}, FreeSlots: 2,
		Quality: PeerQuality{BufferMs: 4000, Stalls: 1, FallbackShare: 0.25},
	}
}

// announceCases drives the validation test and seeds the fuzz target.
var announceCases = []struct {
	name   string
	json   string
	wantOK bool
}{
	{"good", `{"peer_id":"peer-1","stream":"live","addr":"127.0.0.1:4242","upload_bps":5000000,"depths":[1,2,-1,3],"free_slots":2,"quality":{"buffer_ms":4000,"stalls":1,"fallback_share":0.25}}`, true},
	{"empty host is filled in by the tracker", `{"peer_id":"p","stream":"live","addr":":4242"}`, true},
	{"host name", `{"peer_id":"p","stream":"live","addr":"peer.example.org:4242"}`, true},
	{"ipv6", `{"peer_id":"p","stream":"live","addr":"[::1]:4242"}`, true},
	{"not json", `{"peer_id":`, false},
	{"missing peer id", `{"stream":"live","addr":"127.0.0.1:4242"}`, false},
	{"peer id too long", `{"peer_id":"` + strings.Repeat("a", MaxPeerIDLen+1) + `","stream":"live","addr":"127.0.0.1:4242"}`, false},
	{"peer id with dot", `{"peer_id":"a.b","stream":"live","addr":"127.0.0.1:4242"}`, false},
	{"bad stream", `{"peer_id":"p","stream":"a b","addr":"127.0.0.1:4242"}`, false},
	{"addr without port", `{"peer_id":"p","stream":"live","addr":"127.0.0.1"}`, false},
	{"addr port zero", `{"peer_id":"p","stream":"live","addr":"127.0.0.1:0"}`, false},
	{"addr bad host", `{"peer_id":"p","stream":"live","addr":"bad_host!:42"}`, false},
	{"negative budget", `{"peer_id":"p","stream":"live","addr":"127.0.0.1:4242","upload_bps":-1}`, false},
	{"too many stripes", `{"peer_id":"p","stream":"live","addr":"127.0.0.1:4242","depths":[` + strings.Repeat("1,", TrackerMaxStripes) + `1]}`, false},
	{"depth below -1", `{"peer_id":"p","stream":"live","addr":"127.0.0.1:4242","depths":[-2]}`, false},
	{"negative free slots", `{"peer_id":"p","stream":"live","addr":"127.0.0.1:4242","free_slots":-1}`, false},
	{"fallback share above 1", `{"peer_id":"p","stream":"live","addr":"127.0.0.1:4242","quality":{"fallback_share":1.5}}`, false},
}

func TestAnnounceRequestValidation(t *testing.T) {
	for _, tc := range announceCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseAnnounceRequest([]byte(tc.json))
			if tc.wantOK {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrBadAnnounce)
			require.Equal(t, AnnounceRequest{}, r)
		})
	}
}

func TestAnnounceRequestRoundTrip(t *testing.T) {
	in := goodAnnounce()
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.JSONEq(t, announceCases[0].json, string(b))
	out, err := ParseAnnounceRequest(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
}

var registrationCases = []struct {
	name   string
	json   string
	wantOK bool
}{
	{"good", `{"name":"live","public_key":"` + trackerTestKey + `","quic_addr":"127.0.0.1:9000","http_url":"http://127.0.0.1:8080","stripes":4,"segment_duration_ms":2000,"bitrate_bps":3000000}`, true},
	{"stripes default", `{"name":"live","public_key":"` + trackerTestKey + `","quic_addr":"127.0.0.1:9000","http_url":"https://cdn.example.org/x"}`, true},
	{"raw url base64 key", `{"name":"live","public_key":"` + base64.RawURLEncoding.EncodeToString(make([]byte, 32)) + `","quic_addr":"127.0.0.1:9000","http_url":"http://o"}`, true},
	{"short key", `{"name":"live","public_key":"AAAA","quic_addr":"127.0.0.1:9000","http_url":"http://o"}`, false},
	{"key not base64", `{"name":"live","public_key":"%%%","quic_addr":"127.0.0.1:9000","http_url":"http://o"}`, false},
	{"no quic host", `{"name":"live","public_key":"` + trackerTestKey + `","quic_addr":":9000","http_url":"http://o"}`, false},
	{"ftp url", `{"name":"live","public_key":"` + trackerTestKey + `","quic_addr":"127.0.0.1:9000","http_url":"ftp://o"}`, false},
	{"too many stripes", `{"name":"live","public_key":"` + trackerTestKey + `","quic_addr":"127.0.0.1:9000","http_url":"http://o","stripes":65}`, false},
	{"negative bitrate", `{"name":"live","public_key":"` + trackerTestKey + `","quic_addr":"127.0.0.1:9000","http_url":"http://o","bitrate_bps":-5}`, false},
	{"bad name", `{"name":"","public_key":"` + trackerTestKey + `","quic_addr":"127.0.0.1:9000","http_url":"http://o"}`, false},
}

func TestStreamRegistrationValidation(t *testing.T) {
	for _, tc := range registrationCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseStreamRegistration([]byte(tc.json))
			if tc.wantOK {
				require.NoError(t, err)
				require.GreaterOrEqual(t, r.Stripes, 1)
				return
			}
			require.ErrorIs(t, err, ErrBadRegistration)
		})
	}
}

func TestStreamRegistrationDefaultsStripes(t *testing.T) {
	r, err := ParseStreamRegistration([]byte(registrationCases[1].json))
	require.NoError(t, err)
	require.Equal(t, TrackerDefaultStripes, r.Stripes)
}

func TestTrackerKeysAreDistinctAndDotFree(t *testing.T) {
	require.Equal(t, "a=b", TrackerStreamKey("a.b"))
	require.Equal(t, "a=b.p1", TrackerPeerKey("a.b", "p1"))
	// "a.b" and "a" with peer "b..." must never share a key.
	require.NotEqual(t, TrackerPeerKey("a.b", "c"), TrackerPeerKey("a", "b.c"))
}

func TestErrorsWrapSentinels(t *testing.T) {
	_, err := ParseAnnounceRequest([]byte(`[]`))
	require.True(t, errors.Is(err, ErrBadAnnounce))
}

// FuzzParseAnnounceRequest checks that parsing never panics and that whatever it accepts
// survives a marshal/parse round trip unchanged.
func FuzzParseAnnounceRequest(f *testing.F) {
	for _, tc := range announceCases {
		f.Add([]byte(tc.json))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseAnnounceRequest(b)
		if err != nil {
			return
		}
		enc, err := json.Marshal(r)
		require.NoError(t, err)
		again, err := ParseAnnounceRequest(enc)
		require.NoError(t, err)
		require.Equal(t, r, again)
	})
}

// FuzzParseStreamRegistration does the same for registrations.
func FuzzParseStreamRegistration(f *testing.F) {
	for _, tc := range registrationCases {
		f.Add([]byte(tc.json))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseStreamRegistration(b)
		if err != nil {
			return
		}
		enc, err := json.Marshal(r)
		require.NoError(t, err)
		again, err := ParseStreamRegistration(enc)
		require.NoError(t, err)
		require.Equal(t, r, again)
	})
}
