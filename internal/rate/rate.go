// Package rate parses bit rates as people write them on command lines: "4Mbit", "500kbit",
// "2M", "1.5Mbps", "800000".
package rate

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrBadRate means a string is not a bit rate.
var ErrBadRate = errors.New("bad bit rate")

// ParseBps returns the bits per second s names. A number may carry a decimal prefix (k, M, G;
// powers of 1000, either case) and a unit (bit, bps, bit/s, b/s), or neither: "2M" and "2Mbit"
// are 2,000,000 bits/s. Bytes ("4MB", "4MB/s") are refused rather than guessed at.
func ParseBps(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("%w: empty", ErrBadRate)
	}
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.TrimSpace(in[i:])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("%w: %q does not start with a number (e.g. 4Mbit)", ErrBadRate, s)
	}
	mult := 1.0
	if unit != "" {
		switch unit[0] {
		case 'k', 'K':
			mult, unit = 1e3, unit[1:]
		case 'm', 'M':
			mult, unit = 1e6, unit[1:]
		case 'g', 'G':
			mult, unit = 1e9, unit[1:]
		}
	}
	if strings.HasPrefix(unit, "B") {
		return 0, fmt.Errorf("%w: %q is in bytes; give bits, e.g. %gMbit", ErrBadRate, s, v*mult*8/1e6)
	}
	switch strings.ToLower(unit) {
	case "", "bit", "bits", "bps", "bit/s", "b/s", "b":
	default:
		return 0, fmt.Errorf("%w: %q has unknown unit %q; use e.g. 4Mbit, 500kbit or 2M", ErrBadRate, s, unit)
	}
	bps := v * mult
	if math.IsInf(bps, 0) || bps > math.MaxInt64/2 {
		return 0, fmt.Errorf("%w: %q is too large", ErrBadRate, s)
	}
	return int64(math.Round(bps)), nil
}
