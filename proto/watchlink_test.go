package proto_test

import (
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/crowdsurf/crowdsurf/proto"
	"github.com/stretchr/testify/require"
)

const linkKey = "--__--__--__--__--__--__--__--__--__--__--8" // FormatPublicKey(plusSlashKey())

// watchLinkCases drive the format test, the parse test and FuzzParseWatchLink.
var watchLinkCases = []struct {
	name string
	enc  string
	link proto.WatchLink
}{
	{
		name: "tracker over http on loopback",
		enc:  "crowdsurf://127.0.0.1:7070/cam?key=" + linkKey,
		link: proto.WatchLink{Tracker: "http://127.0.0.1:7070", Stream: "cam", OriginKey: plusSlashKey()},
	},
	{
		name: "tracker over https on the default port",
		enc:  "crowdsurf+https://tracker.example.com/live.main?key=" + linkKey,
		link: proto.WatchLink{Tracker: "https://tracker.example.com", Stream: "live.main", OriginKey: plusSlashKey()},
	},
	{
		name: "IPv6 tracker",
		enc:  "crowdsurf://[::1]:7070/a_b-C.9?key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		link: proto.WatchLink{Tracker: "http://[::1]:7070", Stream: "a_b-C.9", OriginKey: make(ed25519.PublicKey, 32)},
	},
	{
		name: "host name with a port over https",
		enc:  "crowdsurf+https://Tracker-1.example:443/x?key=" + linkKey,
		link: proto.WatchLink{Tracker: "https://Tracker-1.example:443", Stream: "x", OriginKey: plusSlashKey()},
	},
}

// badWatchLinkCases must be refused; each error wraps ErrBadWatchLink and, where it applies, the
// more specific sentinel, and says what is wrong.
var badWatchLinkCases = []struct {
	name string
	enc  string
	err  error
	why  string
}{
	{"http URL", "http://127.0.0.1:7070/cam?key=" + linkKey, proto.ErrBadWatchLink, "does not start with crowdsurf://"},
	{"scheme in capitals", "CROWDSURF://127.0.0.1:7070/cam?key=" + linkKey, proto.ErrBadWatchLink, "does not start with"},
	{"empty", "", proto.ErrBadWatchLink, "does not start with"},
	{"no stream", "crowdsurf://127.0.0.1:7070", proto.ErrBadWatchLink, "names no stream"},
	{"empty stream", "crowdsurf://127.0.0.1:7070/?key=" + linkKey, proto.ErrBadStreamName, "must be 1 to 64"},
	{"stream with a slash", "crowdsurf://127.0.0.1:7070/live/cam?key=" + linkKey, proto.ErrBadStreamName, "has character '/'"},
	{"stream escaped", "crowdsurf://127.0.0.1:7070/c%61m?key=" + linkKey, proto.ErrBadStreamName, "has character '%'"},
	{"stream starting with a dot", "crowdsurf://127.0.0.1:7070/.cam?key=" + linkKey, proto.ErrBadStreamName, "must not start with a dot"},
	{"no key", "crowdsurf://127.0.0.1:7070/cam", proto.ErrBadWatchLink, "has no key"},
	{"empty key", "crowdsurf://127.0.0.1:7070/cam?key=", proto.ErrBadWatchLink, "empty key"},
	{"empty query", "crowdsurf://127.0.0.1:7070/cam?", proto.ErrBadWatchLink, "unknown parameter \"\""},
	{"short key", "crowdsurf://127.0.0.1:7070/cam?key=AAAA", proto.ErrBadKey, "must be 43 characters"},
	{"standard alphabet key", "crowdsurf://127.0.0.1:7070/cam?key=++//++//++//++//++//++//++//++//++//++//++8", proto.ErrBadKey, "unpadded URL-safe base64"},
	{"padded key", "crowdsurf://127.0.0.1:7070/cam?key=" + linkKey + "=", proto.ErrBadKey, "must be 43 characters"},
	{"key with unused bits set", "crowdsurf://127.0.0.1:7070/cam?key=" + linkKey[:42] + "9", proto.ErrBadKey, "must be 43"},
	{"two keys", "crowdsurf://127.0.0.1:7070/cam?key=" + linkKey + "&key=" + linkKey, proto.ErrBadWatchLink, "more than one key"},
	{"second key swapped in", "crowdsurf://127.0.0.1:7070/cam?key=" + linkKey + "&key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", proto.ErrBadWatchLink, "more than one key"},
	{"unknown parameter", "crowdsurf://127.0.0.1:7070/cam?key=" + linkKey + "&tracker=evil", proto.ErrBadWatchLink, "unknown parameter \"tracker\""},
	{"fragment", "crowdsurf://127.0.0.1:7070/cam?key=" + linkKey + "#t=10", proto.ErrBadKey, "must be 43"},
	{"empty host", "crowdsurf:///cam?key=" + linkKey, proto.ErrBadWatchLink, "empty host"},
	{"user info", "crowdsurf://me@127.0.0.1:7070/cam?key=" + linkKey, proto.ErrBadWatchLink, "host must be a DNS name"},
	{"port 0", "crowdsurf://127.0.0.1:0/cam?key=" + linkKey, proto.ErrBadWatchLink, "port must be 1 to 65535"},
	{"port 65536", "crowdsurf://127.0.0.1:65536/cam?key=" + linkKey, proto.ErrBadWatchLink, "port must be 1 to 65535"},
	{"port with a leading zero", "crowdsurf://127.0.0.1:07070/cam?key=" + linkKey, proto.ErrBadWatchLink, "port must be 1 to 65535"},
	{"empty port", "crowdsurf://127.0.0.1:/cam?key=" + linkKey, proto.ErrBadWatchLink, "port must be 1 to 65535"},
	{"IPv6 without brackets", "crowdsurf://::1:7070/cam?key=" + linkKey, proto.ErrBadWatchLink, "port must be"},
	{"IPv6 with a zone", "crowdsurf://[fe80::1%25eth0]:7070/cam?key=" + linkKey, proto.ErrBadWatchLink, "not an IPv6 address"},
	{"IPv4 in brackets", "crowdsurf://[127.0.0.1]:7070/cam?key=" + linkKey, proto.ErrBadWatchLink, "not an IPv6 address"},
	{"unclosed bracket", "crowdsurf://[::1:7070/cam?key=" + linkKey, proto.ErrBadWatchLink, "without closing"},
	{"junk after the bracket", "crowdsurf://[::1]x/cam?key=" + linkKey, proto.ErrBadWatchLink, "junk after"},
	{"host label starting with a hyphen", "crowdsurf://-a.example/cam?key=" + linkKey, proto.ErrBadWatchLink, "host must be a DNS name"},
	{"empty host label", "crowdsurf://a..example/cam?key=" + linkKey, proto.ErrBadWatchLink, "host must be a DNS name"},
	{"host too long", "crowdsurf://" + strings.Repeat("a", 300) + "/cam?key=" + linkKey, proto.ErrBadWatchLink, "longer than"},
}

func TestWatchLinkString(t *testing.T) {
	for _, tc := range watchLinkCases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.enc, tc.link.String())
			require.NoError(t, tc.link.Validate())
		})
	}
}

func TestParseWatchLink(t *testing.T) {
	for _, tc := range watchLinkCases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := proto.ParseWatchLink(tc.enc)
			require.NoError(t, err)
			require.Equal(t, tc.link, l)
		})
	}
}

func TestParseWatchLinkRejects(t *testing.T) {
	for _, tc := range badWatchLinkCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proto.ParseWatchLink(tc.enc)
			require.ErrorIs(t, err, proto.ErrBadWatchLink)
			require.ErrorIs(t, err, tc.err)
			require.ErrorContains(t, err, tc.why)
		})
	}
}

func TestWatchLinkValidateRefusesATrackerItCannotWrite(t *testing.T) {
	for _, tracker := range []string{"http://host:7070/", "http://host:7070/prefix", "ftp://host", "host:7070", ""} {
		l := proto.WatchLink{Tracker: tracker, Stream: "cam", OriginKey: plusSlashKey()}
		require.ErrorIs(t, l.Validate(), proto.ErrBadWatchLink, tracker)
	}
	require.ErrorIs(t, proto.WatchLink{Tracker: "http://h:1", Stream: "cam"}.Validate(), proto.ErrBadKey)
	require.ErrorIs(t, proto.WatchLink{Tracker: "http://h:1", Stream: "a b", OriginKey: plusSlashKey()}.Validate(), proto.ErrBadStreamName)
}

func FuzzParseWatchLink(f *testing.F) {
	for _, tc := range watchLinkCases {
		f.Add(tc.enc)
	}
	for _, tc := range badWatchLinkCases {
		f.Add(tc.enc)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := proto.ParseWatchLink(s)
		if err != nil {
			require.ErrorIs(t, err, proto.ErrBadWatchLink)
			return
		}
		require.Equal(t, s, l.String(), "a link has one spelling")
		require.Len(t, l.OriginKey, ed25519.PublicKeySize)
		require.NoError(t, proto.ValidStreamName(l.Stream))
		require.True(t, strings.HasPrefix(l.Tracker, "http://") || strings.HasPrefix(l.Tracker, "https://"), l.Tracker)
		require.NoError(t, l.Validate())
	})
}
