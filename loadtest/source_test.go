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
	bc, err := NewBroadcast(BroadcastConfig{Key: key, Segment: 400 * time.Millisecond}, BroadcastNet{OriginHTTP: ln})
	require.NoError(t, err)

	var mu sync.Mutex
	var chunks []*proto.Chunk
	bc.Origin.Subscribe(func(c *proto.Chunk) {
		mu.Lock()
		chunks = append(chunks, c)
		mu.Unlock()
	})
	src, err := newSyntheticSource(syntheticConfig{
		BitrateBps: 1_000_000, Segment: 400 * time.Millisecond,
		Produced: func() int64 { return int64(bc.Origin.Stats().BytesProduced) },
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bcDone := make(chan error, 1)
	go func() { bcDone <- bc.Run(ctx) }()
	<-bc.Started()
	feed, err := bc.Origin.Feed("synth", src.tracks())
	require.NoError(t, err)
	srcDone := make(chan error, 1)
	started := time.Now()
	go func() { srcDone <- src.run(ctx, feed) }()

	require.Eventually(t, func() bool {
		ss := bc.Origin.Streams()
		return len(ss) == 1 && ss[0].NewestSeq != nil
	}, 5*time.Second, 10*time.Millisecond, "a complete segment")
	p, err := player.New(player.Config{URL: bc.HTTPURL() + "/live/synth/index.m3u8", Duration: 3 * time.Second})
	require.NoError(t, err)
	require.NoError(t, p.Run(ctx))
	elapsed := time.Since(started)
	produced := bc.Origin.Stats().BytesProduced
	cancel()
	require.NoError(t, <-srcDone)
	require.NoError(t, <-bcDone)

	sum := p.Summary()
	require.True(t, sum.Started, "%+v", sum)
	require.Zero(t, sum.Errors, "player errors: %v", sum.ErrorMessages)
	require.GreaterOrEqual(t, sum.Segments, 3)
	require.Positive(t, bc.Origin.Stats().BytesHTTPSegment)

	// Every chunk verifies with the origin's key; the last chunk of a segment carries its info.
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, chunks)
	lasts := 0
	for _, c := range chunks {
		require.NoError(t, c.Verify(bc.Origin.PublicKey()))
		require.LessOrEqual(t, len(c.Data), origin.DefaultChunkSize)
		if c.Last() && c.Flags&proto.FlagEnd == 0 {
			lasts++
			require.InDelta(t, 400*time.Millisecond, c.Info.Duration, float64(time.Millisecond))
			require.WithinDuration(t, time.Now(), c.Info.ProgramDateTime, 10*time.Second)
		}
	}
	require.Positive(t, lasts)
	// The origin's segmenter cuts the LL-HLS parts (its default 200 ms part target): 400 ms at
	// 25 fps is 10 frames, two parts of 5, so every whole segment has exactly one part end
	// before its last chunk.
	partEnds := map[uint64]int{}
	complete := map[uint64]bool{}
	for _, c := range chunks {
		if c.Flags&proto.FlagPartEnd != 0 && !c.Last() {
			partEnds[c.ID.Seq]++
		}
		if c.Last() && c.Flags&proto.FlagEnd == 0 { // the last one ends where the feed closed
			complete[c.ID.Seq] = true
		}
	}
	require.NotEmpty(t, complete)
	for seq := range complete {
		require.Equal(t, 1, partEnds[seq], "segment %d", seq)
	}
	// The produced bytes match the bit rate within 15 % (the last frame may be mid-way).
	rate := float64(produced) * 8 / elapsed.Seconds()
	require.InDelta(t, 1_000_000, rate, 150_000, "produced %.0f bit/s", rate)
}
