package loadtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/player"
	"github.com/crowdsurf/crowdsurf/proto"
)

func TestSyntheticSourceIsPlayableSignedTSAtTheBitrate(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	var mu sync.Mutex
	var chunks []*proto.Chunk
	src, err := newSyntheticSource(syntheticConfig{
		Stream: "synth", BitrateBps: 1_000_000, Segment: 400 * time.Millisecond, Key: key, HTTPListener: ln,
		OnChunk: func(c *proto.Chunk, _ time.Time) {
			mu.Lock()
			chunks = append(chunks, c)
			mu.Unlock()
		},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- src.Run(ctx) }()

	require.Eventually(t, func() bool { _, ok := src.window.NewestComplete(); return ok }, 5*time.Second, 10*time.Millisecond)
	p, err := player.New(player.Config{URL: src.HTTPURL() + "/live/synth/index.m3u8", Duration: 3 * time.Second})
	require.NoError(t, err)
	require.NoError(t, p.Run(ctx))
	elapsed := time.Since(started)
	cancel()
	require.NoError(t, <-done)

	sum := p.Summary()
	require.True(t, sum.Started, "%+v", sum)
	require.Zero(t, sum.Errors, "player errors: %v", sum.ErrorMessages)
	require.GreaterOrEqual(t, sum.Segments, 3)
	require.Positive(t, src.HTTPBytes())

	// Every chunk verifies with the source's key; the last chunk of a segment carries its info.
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, chunks)
	lasts := 0
	for _, c := range chunks {
		require.NoError(t, c.Verify(src.PublicKey()))
		require.LessOrEqual(t, len(c.Data), origin.DefaultChunkSize)
		if c.Last() {
			lasts++
			require.Equal(t, 400*time.Millisecond, c.Info.Duration)
			require.WithinDuration(t, time.Now(), c.Info.ProgramDateTime, 10*time.Second)
		}
	}
	require.Positive(t, lasts)
	// Parts end between frames like the origin's: 400 ms at 25 fps is 10 frames, two parts of 5,
	// so every whole segment has exactly one part end before its last chunk.
	partEnds := map[uint64]int{}
	complete := map[uint64]bool{}
	for _, c := range chunks {
		if c.Flags&proto.FlagPartEnd != 0 && !c.Last() {
			partEnds[c.ID.Seq]++
		}
		if c.Last() {
			complete[c.ID.Seq] = true
		}
	}
	require.NotEmpty(t, complete)
	for seq := range complete {
		require.Equal(t, 1, partEnds[seq], "segment %d", seq)
	}
	// The produced bytes match the bit rate within 15 % (the last frame may be mid-way).
	rate := float64(src.StreamBytes()) * 8 / elapsed.Seconds()
	require.InDelta(t, 1_000_000, rate, 150_000, "produced %.0f bit/s", rate)
}
