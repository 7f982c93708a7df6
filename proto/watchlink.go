package proto

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrBadWatchLink means a string is not a crowdsurf watch link. Errors about the key inside a
// link wrap ErrBadKey too, and errors about its stream name wrap ErrBadStreamName.
var ErrBadWatchLink = errors.New("bad watch link")

// Watch link schemes.
const (
	// WatchLinkScheme names a link whose tracker is reached over plain http.
	WatchLinkScheme = "crowdsurf"
	// WatchLinkSchemeHTTPS names a link whose tracker is reached over https.
	WatchLinkSchemeHTTPS = "crowdsurf+https"
)

// maxWatchLinkHost bounds the host:port part of a watch link (a DNS name is at most 253 bytes).
const maxWatchLinkHost = 253 + len("[]:65535")

// WatchLink is what a viewer is given to watch a stream: which tracker to ask, which stream, and
// the origin's public key. The key travels in the link itself, so neither a peer nor the tracker
// can swap it: a viewer verifies every chunk against the key the broadcaster published.
//
// Its text form is crowdsurf://HOST[:PORT]/STREAM?key=KEY for a tracker reached over http and
// crowdsurf+https://HOST[:PORT]/STREAM?key=KEY for one reached over https, with KEY spelled by
// FormatPublicKey. There is exactly one spelling per link: ParseWatchLink accepts only what String
// writes, so a link can be compared, logged and signed as text.
type WatchLink struct {
	// Tracker is the tracker's base URL without a trailing slash, e.g. "http://host:7070".
	Tracker string
	// Stream is the stream's name (see ValidStreamName).
	Stream string
	// OriginKey is the origin's Ed25519 public key; every chunk must verify against it.
	OriginKey ed25519.PublicKey
}

// String writes the link's text form. Tracker should be an http:// or https:// base URL; a
// Tracker with no scheme is taken as http. Use Validate to check a hand-built link.
func (l WatchLink) String() string {
	scheme, host := WatchLinkScheme, l.Tracker
	if h, ok := strings.CutPrefix(host, "https://"); ok {
		scheme, host = WatchLinkSchemeHTTPS, h
	} else if h, ok := strings.CutPrefix(host, "http://"); ok {
		host = h
	}
	host = strings.TrimSuffix(host, "/")
	return scheme + "://" + host + "/" + l.Stream + "?key=" + FormatPublicKey(l.OriginKey)
}

// Validate reports whether l can be written as a watch link and read back unchanged.
func (l WatchLink) Validate() error {
	if len(l.OriginKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: %w: origin key has %d bytes, want %d", ErrBadWatchLink, ErrBadKey, len(l.OriginKey), ed25519.PublicKeySize)
	}
	back, err := ParseWatchLink(l.String())
	if err != nil {
		return err
	}
	if back.Tracker != l.Tracker {
		return fmt.Errorf("%w: tracker %q must be http:// or https:// followed by host[:port] and nothing else", ErrBadWatchLink, clipText(l.Tracker))
	}
	return nil
}

// ParseWatchLink reads a link written by WatchLink.String. Errors wrap ErrBadWatchLink and say
// which part is wrong.
func ParseWatchLink(s string) (WatchLink, error) {
	var l WatchLink
	trackerScheme := ""
	rest, ok := strings.CutPrefix(s, WatchLinkScheme+"://")
	if ok {
		trackerScheme = "http://"
	} else if rest, ok = strings.CutPrefix(s, WatchLinkSchemeHTTPS+"://"); ok {
		trackerScheme = "https://"
	} else {
		return l, fmt.Errorf("%w: %q does not start with %s:// or %s://; ask the broadcaster for the link their origin printed",
			ErrBadWatchLink, clipText(s), WatchLinkScheme, WatchLinkSchemeHTTPS)
	}

	host, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return l, fmt.Errorf("%w: %q names no stream (want %s://HOST:PORT/STREAM?key=KEY)", ErrBadWatchLink, clipText(s), WatchLinkScheme)
	}
	if err := checkWatchLinkHost(host); err != nil {
		return l, fmt.Errorf("%w: tracker %q: %s", ErrBadWatchLink, clipText(host), err)
	}

	stream, query, ok := strings.Cut(rest, "?")
	if err := ValidStreamName(stream); err != nil {
		return l, fmt.Errorf("%w: %w", ErrBadWatchLink, err)
	}
	if !ok {
		return l, fmt.Errorf("%w: %q has no key (want ...?key=KEY): without the origin's key the stream cannot be verified", ErrBadWatchLink, clipText(s))
	}
	key, err := watchLinkKey(query)
	if err != nil {
		return l, err
	}
	l.Tracker = trackerScheme + host
	l.Stream = stream
	l.OriginKey = key
	return l, nil
}

// watchLinkKey reads the query of a watch link, which is exactly key=KEY.
func watchLinkKey(query string) (ed25519.PublicKey, error) {
	var key string
	found := false
	for param := range strings.SplitSeq(query, "&") {
		name, value, _ := strings.Cut(param, "=")
		if name != "key" {
			return nil, fmt.Errorf("%w: unknown parameter %q; a watch link has only key=", ErrBadWatchLink, clipText(name))
		}
		if found {
			return nil, fmt.Errorf("%w: more than one key", ErrBadWatchLink)
		}
		key, found = value, true
	}
	if !found || key == "" {
		return nil, fmt.Errorf("%w: %w: empty key", ErrBadWatchLink, ErrBadKey)
	}
	// Only the canonical spelling, so the link has one text form; ParsePublicKey, for flags,
	// is more forgiving.
	b, err := base64.RawURLEncoding.Strict().DecodeString(key)
	if err != nil || len(key) != PublicKeyTextLen || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %w: key %q must be %d characters of unpadded URL-safe base64",
			ErrBadWatchLink, ErrBadKey, clipText(key), PublicKeyTextLen)
	}
	return ed25519.PublicKey(b), nil
}

// checkWatchLinkHost accepts a host name, an IPv4 address or a bracketed IPv6 address, with an
// optional port. The error text is fit to follow "tracker %q: ".
func checkWatchLinkHost(hostport string) error {
	if hostport == "" {
		return errors.New("empty host")
	}
	if len(hostport) > maxWatchLinkHost {
		return fmt.Errorf("longer than %d characters", maxWatchLinkHost)
	}
	host, port := hostport, ""
	if inner, ok := strings.CutPrefix(hostport, "["); ok {
		addr, after, ok := strings.Cut(inner, "]")
		if !ok {
			return errors.New("IPv6 address without closing ']'")
		}
		ip, err := netip.ParseAddr(addr)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return errors.New("not an IPv6 address in brackets")
		}
		if after != "" {
			p, ok := strings.CutPrefix(after, ":")
			if !ok {
				return errors.New("junk after ']'")
			}
			port = p
			if err := checkWatchLinkPort(port); err != nil {
				return err
			}
		}
		return nil
	}
	if h, p, ok := strings.Cut(hostport, ":"); ok {
		host, port = h, p
		if err := checkWatchLinkPort(port); err != nil {
			return err
		}
	}
	if !validHostname(host) {
		return errors.New("host must be a DNS name or an IP address (IPv6 in brackets)")
	}
	return nil
}

// checkWatchLinkPort accepts 1 to 65535 in decimal without leading zeros (one spelling per port).
func checkWatchLinkPort(p string) error {
	if p == "" || len(p) > 5 || p[0] == '0' {
		return errors.New("port must be 1 to 65535")
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return errors.New("port must be 1 to 65535")
		}
		n = n*10 + int(p[i]-'0')
	}
	if n > 65535 {
		return errors.New("port must be 1 to 65535")
	}
	return nil
}
