package segwindow

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTSClockUnwrapsTheThirtyThreeBitTimestamps(t *testing.T) {
	const wrap = timestampMask + 1
	tests := []struct {
		name  string
		clock tsClock
		ts    int64
		want  uint64
	}{
		{"the origin itself", tsClock{origin: 900000, base: 900000}, 900000, 900000},
		{"later in the segment", tsClock{origin: 900000, base: 900000}, 990000, 990000},
		{"a little before the origin (audio ahead of video)", tsClock{origin: 900000, base: 900000}, 899000, 899000},
		{"past the wrap", tsClock{origin: wrap - 90000, base: wrap - 90000}, 45000, wrap + 45000},
		{"a segment after one wrap", tsClock{origin: 1000, base: wrap + 1000}, 181000, wrap + 181000},
		{"before the wrap, seen from after it", tsClock{origin: 1000, base: wrap + 1000}, wrap - 2000, wrap - 2000},
		{"the second wrap", tsClock{origin: wrap - 10, base: 2*wrap - 10}, 20, 2*wrap + 20},
		{"never below zero", tsClock{origin: 10, base: 10}, wrap - 100, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.clock.at(tc.ts))
		})
	}
	prev := &tsClock{origin: wrap - 90000, base: 5*wrap - 90000}
	require.Equal(t, tsClock{origin: 90000, base: 5*wrap + 90000}, clockHint{prev: prev}.resolve(90000),
		"a segment continues its predecessor's timeline across the wrap")
	require.Equal(t, tsClock{origin: 42, base: 42}, clockHint{}.resolve(42), "a timeline starts at its raw timestamps")
}

// wrapStream is a window of four 2 s segments whose timestamps pass 2^33 in segment 1.
func wrapStream(t *testing.T) *Window {
	w := testWindow(6, 10)
	const segTicks = 50 * 3600
	for seq := range uint64(4) {
		seg := muxTS(t, tsSpec{frames: 50, fps: 25, partFrames: 5, audio: true,
			firstPTS: timestampMask + 1 - 3*segTicks/2 + int64(seq)*segTicks})
		for _, c := range tsChunks(seq, seg, 1000, 2*time.Second) {
			w.AddChunk(c)
		}
	}
	return w
}

// TestDecodeTimesContinueAcrossTheTimestampWrap: a stream past 26.5 h wraps its MPEG-TS
// timestamps; the parts' decode times keep counting up, part after part, segment after segment,
// and a node that derives the newest part first (a player joining at the live edge) numbers it
// as one that derived every part in order.
func TestDecodeTimesContinueAcrossTheTimestampWrap(t *testing.T) {
	inOrder := wrapStream(t)
	type track struct{ base, dur uint64 }
	var prev map[int]track
	var bodies [][]byte // in order
	for seq := range uint64(4) {
		for n := range 10 {
			b, err := inOrder.Part(seq, n)
			require.NoError(t, err)
			bodies = append(bodies, b)
			parts, _ := parseFMP4Part(t, b)
			cur := map[int]track{}
			for _, p := range parts {
				for _, tr := range p.Tracks {
					var d uint64
					for _, s := range tr.Samples {
						d += uint64(s.Duration)
					}
					cur[tr.ID] = track{base: tr.BaseTime, dur: d}
				}
			}
			if prev != nil {
				// Video (1) continues exactly; audio (2) may stretch a frame to its next PES.
				require.Equal(t, prev[1].base+prev[1].dur, cur[1].base, "video of part %d.%d", seq, n)
				require.InDelta(t, float64(prev[2].base+prev[2].dur), float64(cur[2].base), 1024, "audio of part %d.%d", seq, n)
			}
			prev = cur
		}
	}
	require.Greater(t, prev[1].base, uint64(timestampMask), "the last part lies past the wrap")

	// The test stream's payloads are random, its timestamps the same: compare decode times.
	edgeFirst := wrapStream(t)
	last, err := edgeFirst.Part(3, 9)
	require.NoError(t, err)
	require.Equal(t, baseTimes(t, bodies[len(bodies)-1]), baseTimes(t, last),
		"derived first, the newest part continues the held timeline")
}

func baseTimes(t *testing.T, part []byte) map[int]uint64 {
	parts, _ := parseFMP4Part(t, part)
	out := map[int]uint64{}
	for _, p := range parts {
		for _, tr := range p.Tracks {
			out[tr.ID] = tr.BaseTime
		}
	}
	return out
}
