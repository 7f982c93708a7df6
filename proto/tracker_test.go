package proto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Fixed keys and secrets, so the tables below are the same bytes in every run (Ed25519 signatures
// are deterministic).
var (
	trackerTestPriv   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	trackerTestKey    = FormatPublicKey(trackerTestPriv.Public().(ed25519.PublicKey))
	trackerTestSecret = [PeerSecretLen]byte{1, 2, 3}
	trackerTestID     = PeerIDFromSecret(trackerTestSecret)
	testPeerID        = hex.EncodeToString(trackerTestID[:])
	testPeerSecret    = hex.EncodeToString(trackerTestSecret[:])
	trackerTestTime   = time.UnixMilli(1_790_000_000_000)
)

// announceJSON is a valid announce with fields replaced or added by extra ("key":value pairs).
func announceJSON(addr string, extra ...string) string {
	fields := map[string]string{
		"peer_id": `"` + testPeerID + `"`, "peer_secret": `"` + testPeerSecret + `"`, "stream": `"live"`,
		"stream_key": `"` + trackerTestKey + `"`, "addr": `"` + addr + `"`,
	}
	for _, e := range extra {
		k, v, _ := strings.Cut(e, "=")
		if v == "" {
			delete(fields, k)
			continue
		}
		fields[k] = v
	}
	var b strings.Builder
	b.WriteString("{")
	first := true
	for _, k := range []string{"peer_id", "peer_secret", "stream", "stream_key", "addr", "upload_bps", "depths", "parents", "free_slots", "quality"} {
		if v, ok := fields[k]; ok {
			if !first {
				b.WriteString(",")
			}
			first = false
			b.WriteString(`"` + k + `":` + v)
		}
	}
	b.WriteString("}")
	return b.String()
}

// announceCases drives the validation test and seeds the fuzz target.
var announceCases = []struct {
	name   string
	json   string
	wantOK bool
}{
	{"good", announceJSON("127.0.0.1:4242", `upload_bps=5000000`, `depths=[1,2,-1,3]`, `parents=["`+testPeerID+`","","",""]`, `free_slots=2`, `quality={"buffer_ms":4000,"stalls":1,"fallback_share":0.25}`), true},
	{"empty host is filled in by the tracker", announceJSON(":4242"), true},
	{"unspecified host is filled in by the tracker", announceJSON("0.0.0.0:4242"), true},
	{"ipv6", announceJSON("[::1]:4242"), true},
	{"host name", announceJSON("peer.example.org:4242"), false},
	{"broadcast", announceJSON("255.255.255.255:4242"), false},
	{"multicast", announceJSON("224.0.0.1:4242"), false},
	{"ipv6 multicast", announceJSON("[ff02::1]:4242"), false},
	{"not json", `{"peer_id":`, false},
	{"missing peer id", announceJSON("127.0.0.1:4242", "peer_id="), false},
	{"missing secret", announceJSON("127.0.0.1:4242", "peer_secret="), false},
	{"secret not hex", announceJSON("127.0.0.1:4242", `peer_secret="`+strings.Repeat("z", 64)+`"`), false},
	{"missing stream key", announceJSON("127.0.0.1:4242", "stream_key="), false},
	{"peer id too long", announceJSON("127.0.0.1:4242", `peer_id="`+strings.Repeat("a", MaxPeerIDLen+1)+`"`), false},
	{"peer id with dot", announceJSON("127.0.0.1:4242", `peer_id="a.b"`), false},
	{"parent with dot", announceJSON("127.0.0.1:4242", `parents=["a.b"]`), false},
	{"bad stream", announceJSON("127.0.0.1:4242", `stream="a b"`), false},
	{"addr without port", announceJSON("127.0.0.1"), false},
	{"addr port zero", announceJSON("127.0.0.1:0"), false},
	{"addr bad host", announceJSON("bad_host!:42"), false},
	{"negative budget", announceJSON("127.0.0.1:4242", `upload_bps=-1`), false},
	{"too many stripes", announceJSON("127.0.0.1:4242", `depths=[`+strings.Repeat("1,", TrackerMaxStripes)+`1]`), false},
	{"depth below -1", announceJSON("127.0.0.1:4242", `depths=[-2]`), false},
	{"negative free slots", announceJSON("127.0.0.1:4242", `free_slots=-1`), false},
	{"fallback share above 1", announceJSON("127.0.0.1:4242", `quality={"fallback_share":1.5}`), false},
}

func TestAnnounceRequestValidation(t *testing.T) {
	for _, tc := range announceCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseAnnounceRequest([]byte(tc.json))
			if tc.wantOK {
				require.NoError(t, err)
				require.NoError(t, CheckPeerSecret(r.PeerID, r.PeerSecret))
				return
			}
			require.ErrorIs(t, err, ErrBadAnnounce)
			require.Equal(t, AnnounceRequest{}, r)
		})
	}
}

func TestAnnounceRequestRoundTrip(t *testing.T) {
	in := AnnounceRequest{
		PeerState: PeerState{
			PeerID: testPeerID, Stream: "live", StreamKey: trackerTestKey, Addr: "127.0.0.1:4242", UploadBps: 5_000_000,
			Depths: []int{1, 2, -1, 3}, Parents: []string{testPeerID, "", "", ""}, FreeSlots: 2,
			Quality: PeerQuality{BufferMs: 4000, Stalls: 1, FallbackShare: 0.25},
		},
		PeerSecret: testPeerSecret,
	}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.JSONEq(t, announceCases[0].json, string(b))
	out, err := ParseAnnounceRequest(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
}

func TestPeerIDWithoutItsSecretIsRefused(t *testing.T) {
	other := [PeerSecretLen]byte{9}
	require.NoError(t, CheckPeerSecret(testPeerID, testPeerSecret))
	require.ErrorIs(t, CheckPeerSecret(testPeerID, hex.EncodeToString(other[:])), ErrPeerSecret)
	require.ErrorIs(t, CheckPeerSecret(testPeerID, "00"), ErrPeerSecret)
	require.ErrorIs(t, CheckPeerSecret(strings.ToUpper(testPeerID), testPeerSecret), ErrPeerSecret, "one spelling per id")
}

func TestPeerRecordNeverCarriesTheSecret(t *testing.T) {
	r, err := ParseAnnounceRequest([]byte(announceCases[0].json))
	require.NoError(t, err)
	b, err := json.Marshal(PeerRecord{PeerState: r.PeerState, SourceIP: "127.0.0.1"})
	require.NoError(t, err)
	require.NotContains(t, string(b), testPeerSecret)
	require.NotContains(t, string(b), "secret")
}

func signedRegistration(edit func(r *StreamRegistration)) StreamRegistration {
	r := StreamRegistration{
		Name: "live", QUICAddr: "127.0.0.1:9000", HTTPURL: "http://127.0.0.1:8080",
		Stripes: 4, SegmentDurationMs: 2000, BitrateBps: 3_000_000,
	}
	if edit != nil {
		edit(&r)
	}
	r.Sign(trackerTestPriv, trackerTestTime)
	return r
}

func registrationJSON(r StreamRegistration) string {
	b, _ := json.Marshal(r)
	return string(b)
}

// registrationCases drive the marshal test, the parse test and the fuzz seeds.
var registrationCases = func() []struct {
	name   string
	reg    StreamRegistration
	json   string
	wantOK bool
} {
	type tc = struct {
		name   string
		reg    StreamRegistration
		json   string
		wantOK bool
	}
	good := signedRegistration(nil)
	cases := []tc{
		{name: "good", reg: good, json: `{"name":"live","public_key":"` + trackerTestKey + `","quic_addr":"127.0.0.1:9000","http_url":"http://127.0.0.1:8080","stripes":4,"segment_duration_ms":2000,"bitrate_bps":3000000,"issued_at_ms":1790000000000,"signature":"` + good.Signature + `"}`, wantOK: true},
		{name: "host name and https", reg: signedRegistration(func(r *StreamRegistration) {
			r.QUICAddr, r.HTTPURL = "origin.example.org:4433", "https://cdn.example.org/x"
		}), wantOK: true},
		{name: "one stripe", reg: signedRegistration(func(r *StreamRegistration) { r.Stripes = 1 }), wantOK: true},
		{name: "no stripes", reg: signedRegistration(func(r *StreamRegistration) { r.Stripes = 0 })},
		{name: "too many stripes", reg: signedRegistration(func(r *StreamRegistration) { r.Stripes = MaxStripes + 1 })},
		{name: "no quic host", reg: signedRegistration(func(r *StreamRegistration) { r.QUICAddr = ":9000" })},
		{name: "unspecified quic host", reg: signedRegistration(func(r *StreamRegistration) { r.QUICAddr = "0.0.0.0:9000" })},
		{name: "broadcast quic host", reg: signedRegistration(func(r *StreamRegistration) { r.QUICAddr = "255.255.255.255:9000" })},
		{name: "ftp url", reg: signedRegistration(func(r *StreamRegistration) { r.HTTPURL = "ftp://o" })},
		{name: "negative bitrate", reg: signedRegistration(func(r *StreamRegistration) { r.BitrateBps = -5 })},
		{name: "bad name", reg: signedRegistration(func(r *StreamRegistration) { r.Name = "" })},
		{name: "attacker's address under the real key, unsigned", reg: func() StreamRegistration {
			r := good
			r.QUICAddr, r.Signature = "203.0.113.66:4433", ""
			return r
		}()},
		{name: "attacker's address under the real key, old signature", reg: func() StreamRegistration {
			r := good
			r.QUICAddr = "203.0.113.66:4433"
			return r
		}()},
		{name: "newer time with the old signature", reg: func() StreamRegistration {
			r := good
			r.IssuedAtMs++
			return r
		}()},
	}
	for i := range cases {
		if cases[i].json == "" {
			cases[i].json = registrationJSON(cases[i].reg)
		}
	}
	return cases
}()

func TestStreamRegistrationMarshal(t *testing.T) {
	for _, tc := range registrationCases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.reg)
			require.NoError(t, err)
			require.JSONEq(t, tc.json, string(b))
		})
	}
}

func TestStreamRegistrationParse(t *testing.T) {
	for _, tc := range registrationCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseStreamRegistration([]byte(tc.json))
			if tc.wantOK {
				require.NoError(t, err)
				require.Equal(t, tc.reg, r)
				return
			}
			require.Error(t, err)
			require.True(t, errorsIsAny(err, ErrBadRegistration, ErrRegistrationSignature), "%v", err)
			require.Equal(t, StreamRegistration{}, r)
		})
	}
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

func TestForgedRegistrationsFailTheSignature(t *testing.T) {
	for _, tc := range registrationCases[len(registrationCases)-3:] {
		_, err := ParseStreamRegistration([]byte(tc.json))
		require.ErrorIs(t, err, ErrRegistrationSignature, tc.name)
	}
}

func TestRegistrationSignatureIgnoresTheKeysSpelling(t *testing.T) {
	r := signedRegistration(nil)
	pub, err := ParsePublicKey(r.PublicKey)
	require.NoError(t, err)
	r.PublicKey = base64.StdEncoding.EncodeToString(pub)
	require.NoError(t, r.Verify())
}

func TestOversizedRegistrationIsRefusedBeforeDecoding(t *testing.T) {
	b := []byte(`{"name":"` + strings.Repeat("a", MaxRegistrationBytes) + `"}`)
	_, err := ParseStreamRegistration(b)
	require.ErrorIs(t, err, ErrTooLarge)
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
		_ = CheckPeerSecret(r.PeerID, r.PeerSecret)
		enc, err := json.Marshal(r)
		require.NoError(t, err)
		again, err := ParseAnnounceRequest(enc)
		require.NoError(t, err)
		require.Equal(t, r, again)
	})
}

// FuzzParseStreamRegistration checks that parsing never panics, that whatever it accepts is signed
// and survives a round trip, and that its signed bytes are the same after it.
func FuzzParseStreamRegistration(f *testing.F) {
	for _, tc := range registrationCases {
		f.Add([]byte(tc.json))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseStreamRegistration(b)
		if err != nil {
			return
		}
		require.NoError(t, r.Verify())
		enc, err := json.Marshal(r)
		require.NoError(t, err)
		again, err := ParseStreamRegistration(enc)
		require.NoError(t, err)
		require.Equal(t, r, again)
		s1, err := r.AppendSigned(nil)
		require.NoError(t, err)
		s2, err := again.AppendSigned(nil)
		require.NoError(t, err)
		require.Equal(t, s1, s2)
	})
}
