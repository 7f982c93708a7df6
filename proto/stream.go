package proto

import "fmt"

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
