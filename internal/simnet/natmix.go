package simnet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadNATMix means a NAT mix string could not be read; the message says which part.
var ErrBadNATMix = errors.New("bad NAT mix")

// NATShare is one part of a NATMix: Percent of the hosts behind a NAT of Kind.
type NATShare struct {
	Kind    NATKind
	Percent int
}

// NATMix says which share of a swarm sits behind which kind of NAT, as the load test's --nat
// flag gives it ("50%:cone,30%:symmetric,20%:public"). The zero value puts everyone in public.
type NATMix []NATShare

// ParseNATMix reads "P%:KIND,..." with KIND one of public, cone, symmetric. The percentages
// are whole numbers that add up to 100; a kind may appear once.
func ParseNATMix(s string) (NATMix, error) {
	var mix NATMix
	total := 0
	seen := map[NATKind]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		pct, name, ok := strings.Cut(part, ":")
		num, isPct := strings.CutSuffix(strings.TrimSpace(pct), "%")
		if !ok || !isPct {
			return nil, fmt.Errorf("%w: %q is not PERCENT%%:KIND (like 50%%:cone)", ErrBadNATMix, part)
		}
		p, err := strconv.Atoi(num)
		if err != nil || p < 0 || p > 100 {
			return nil, fmt.Errorf("%w: %q: percentage must be a whole number from 0 to 100", ErrBadNATMix, part)
		}
		kind, err := parseNATKind(strings.TrimSpace(name))
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrBadNATMix, part, err)
		}
		if seen[kind] {
			return nil, fmt.Errorf("%w: %s given twice", ErrBadNATMix, kind)
		}
		seen[kind] = true
		total += p
		mix = append(mix, NATShare{Kind: kind, Percent: p})
	}
	if total != 100 {
		return nil, fmt.Errorf("%w: %q adds up to %d%%, not 100%%", ErrBadNATMix, s, total)
	}
	return mix, nil
}

func parseNATKind(s string) (NATKind, error) {
	for _, k := range []NATKind{NATNone, NATCone, NATSymmetric} {
		if s == k.String() {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown NAT kind %q (public, cone or symmetric)", s)
}

// String writes the mix as ParseNATMix reads it.
func (m NATMix) String() string {
	if len(m) == 0 {
		return "100%:public"
	}
	parts := make([]string, len(m))
	for i, s := range m {
		parts[i] = fmt.Sprintf("%d%%:%s", s.Percent, s.Kind)
	}
	return strings.Join(parts, ",")
}

// Kinds assigns a NAT kind to each of n hosts, in joining order. Every prefix of the result is
// as close to the mix as whole hosts allow (host i takes the kind furthest behind its share),
// so a swarm that is still filling up already has the mix, and the whole has exactly
// round(n*percent/100) hosts of each kind, up to rounding between kinds.
func (m NATMix) Kinds(n int) []NATKind {
	kinds := make([]NATKind, n)
	if len(m) == 0 {
		return kinds
	}
	got := make([]int, len(m))
	for i := range kinds {
		best, bestLag := 0, 0
		for j, s := range m {
			// How far kind j is behind its share after i+1 hosts, in hundredths of a host.
			lag := s.Percent*(i+1) - 100*got[j]
			if j == 0 || lag > bestLag {
				best, bestLag = j, lag
			}
		}
		got[best]++
		kinds[i] = m[best].Kind
	}
	return kinds
}
