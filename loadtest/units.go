package loadtest

import (
	"github.com/crowdsurf/crowdsurf/internal/rate"

	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrBadRate means a bit rate could not be read. It is internal/rate's, so the loadtest's rate
// flags and the peer's --max-upload read rates the same way and fail the same way.
var ErrBadRate = rate.ErrBadRate

// ErrBadUplink means an uplink distribution could not be read.
var ErrBadUplink = errors.New("bad uplink distribution")

// ParseRate reads a bit rate such as "1Mbit", "500kbit", "2.5Mbps", "3M", "800k" or "1000000"
// (bits per second) with rate.ParseBps, and refuses more than 1 Tbit/s, which no simulated
// link here could carry.
func ParseRate(s string) (int64, error) {
	bps, err := rate.ParseBps(s)
	if err != nil {
		return 0, err
	}
	if bps > 1e12 {
		return 0, fmt.Errorf("%w: %q is over 1 Tbit/s", ErrBadRate, s)
	}
	return bps, nil
}

// UplinkClass is one part of an uplink distribution: Share of the peers get Bps of upload.
// Bps 0 is a free rider that uploads nothing (it accepts no stripe children).
type UplinkClass struct {
	Share float64 `json:"share"`
	Bps   int64   `json:"bps"`
}

// UplinkDist is a distribution of peer uplinks; the shares add up to 1.
type UplinkDist []UplinkClass

// ParseUplink reads either one rate ("3Mbit": every peer gets it) or a distribution
// "50%:3Mbit,30%:1Mbit,20%:0". The percentages must add up to 100.
func ParseUplink(s string) (UplinkDist, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, ":") {
		bps, err := ParseRate(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadUplink, err)
		}
		return UplinkDist{{Share: 1, Bps: bps}}, nil
	}
	var dist UplinkDist
	total := 0.0
	for part := range strings.SplitSeq(s, ",") {
		share, rate, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("%w: %q: each part is PERCENT%%:RATE, e.g. 50%%:3Mbit", ErrBadUplink, part)
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(share), "%"), 64)
		if err != nil || pct <= 0 || pct > 100 || math.IsNaN(pct) {
			return nil, fmt.Errorf("%w: share %q must be a percentage above 0 and at most 100", ErrBadUplink, share)
		}
		bps, err := ParseRate(rate)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadUplink, err)
		}
		dist = append(dist, UplinkClass{Share: pct / 100, Bps: bps})
		total += pct
	}
	if math.Abs(total-100) > 0.01 {
		return nil, fmt.Errorf("%w: %q: shares add up to %g%%, not 100%%", ErrBadUplink, s, total)
	}
	return dist, nil
}

// Assign gives peer i its uplink. Peers are placed on a golden-ratio sequence, which is
// equidistributed, so each class gets close to its share of any run of peers (within a couple of
// peers), spread over the join order rather than in blocks.
func (d UplinkDist) Assign(i int) int64 {
	if len(d) == 0 {
		return 0
	}
	if len(d) == 1 {
		return d[0].Bps
	}
	pos := math.Mod(float64(i)*0.6180339887498949, 1)
	acc := 0.0
	for _, c := range d {
		acc += c.Share
		if pos < acc {
			return c.Bps
		}
	}
	return d[len(d)-1].Bps
}

// String writes the distribution back in the form ParseUplink reads.
func (d UplinkDist) String() string {
	parts := make([]string, len(d))
	for i, c := range d {
		parts[i] = fmt.Sprintf("%g%%:%s", c.Share*100, FormatRate(c.Bps))
	}
	if len(d) == 1 {
		return FormatRate(d[0].Bps)
	}
	return strings.Join(parts, ",")
}

// FormatRate writes a bit rate the way ParseRate reads it.
func FormatRate(bps int64) string {
	switch {
	case bps == 0:
		return "0"
	case bps%1_000_000 == 0:
		return fmt.Sprintf("%dMbit", bps/1_000_000)
	case bps%1000 == 0:
		return fmt.Sprintf("%dkbit", bps/1000)
	}
	return fmt.Sprintf("%dbit", bps)
}

func durationNs(ns float64) time.Duration { return time.Duration(math.Round(ns)) }
