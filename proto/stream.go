package proto

import (
	"fmt"
	"strings"
)

// ValidStreamName reports whether s can name a stream: 1 to MaxStreamNameLen characters from
// [A-Za-z0-9._-], not starting with a dot. Stream names appear in URLs, NATS keys and file names,
// so the set is kept small.
func ValidStreamName(s string) error {
	if len(s) == 0 || len(s) > MaxStreamNameLen {
		return fmt.Errorf("%w: %q must be 1 to %d characters", ErrBadStreamName, s, MaxStreamNameLen)
	}
	if s[0] == '.' {
		return fmt.Errorf("%w: %q must not start with a dot", ErrBadStreamName, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: %q has character %q; use letters, digits, '.', '_' or '-'", ErrBadStreamName, s, c)
		}
	}
	return nil
}

// validHostname accepts DNS names (letters, digits, hyphens; dot-separated labels of 1 to 63)
// and so dotted IPv4 addresses too. Watch links and tracker registrations share it.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
