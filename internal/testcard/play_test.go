package testcard

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type recordingSink struct {
	mu           sync.Mutex
	video, audio []time.Duration
	fail         error
}

func (s *recordingSink) WriteH264(pts time.Duration, _ [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.video = append(s.video, pts)
	return s.fail
}

func (s *recordingSink) WriteAAC(pts time.Duration, _ [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audio = append(s.audio, pts)
	return s.fail
}

func TestPlayWritesTheClipInRealTimeAcrossLoops(t *testing.T) {
	clip := loadClip(t).Cut(300 * time.Millisecond) // loops every 0.3 s
	sink := &recordingSink{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	started := time.Now()
	require.NoError(t, Play(ctx, clip, sink, 0))
	elapsed := time.Since(started)

	sink.mu.Lock()
	defer sink.mu.Unlock()
	require.NotEmpty(t, sink.video)
	require.NotEmpty(t, sink.audio)
	require.Zero(t, sink.video[0], "the first access unit is the clip's first frame")
	for i := 1; i < len(sink.video); i++ {
		require.Greater(t, sink.video[i], sink.video[i-1], "video timestamps increase across loops")
	}
	last := sink.video[len(sink.video)-1]
	require.Greater(t, last, clip.Duration, "the clip looped")
	require.LessOrEqual(t, last, elapsed, "nothing is written before it is due")
}

func TestPlayStopsOnASinkError(t *testing.T) {
	boom := errors.New("boom")
	err := Play(context.Background(), loadClip(t), &recordingSink{fail: boom}, 0)
	require.ErrorIs(t, err, boom)
}
