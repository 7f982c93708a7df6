package segwindow

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// A complete segment is served as its chunks' own buffers back to back: completing it copies
// nothing, and neither do SegmentBuffers and BundleBuffers.
func TestCompleteSegmentBuffersAreItsChunksBuffers(t *testing.T) {
	w := testWindow(6, 10)
	// As they arrive from the mesh or the CDN: decoded from their frames.
	var chunks []*proto.Chunk
	for _, c := range spec(7, 3000, 4000, 100).chunks() {
		pc, _, err := proto.ParseChunk(c.Append(nil))
		require.NoError(t, err)
		chunks = append(chunks, pc)
	}
	for _, c := range chunks {
		added, _ := w.AddChunk(c)
		require.True(t, added)
	}

	parts, meta, ok := w.SegmentBuffers(7)
	require.True(t, ok)
	require.Equal(t, len(chunks), meta.ChunkCount)
	require.Len(t, parts, len(chunks))
	for i, p := range parts {
		held, ok := w.Chunk(7, uint32(i))
		require.True(t, ok)
		require.Same(t, &held.Data[0], &p[0], "part %d must be chunk %d's own data", i, i)
	}
	whole, _, ok := w.Segment(7)
	require.True(t, ok)
	require.Equal(t, bytes.Join(parts, nil), whole)
	require.Equal(t, meta.ByteLength, len(whole))

	frames, ok := w.BundleBuffers(7)
	require.True(t, ok)
	for i, f := range frames {
		held, _ := w.Chunk(7, uint32(i))
		require.Equal(t, held.Append(nil), f)
		require.Same(t, &held.Data[0], &f[len(f)-len(held.Data)], "frame %d must hold chunk %d's data, not a copy", i, i)
	}
	bundle, ok := w.ChunkFrames(7)
	require.True(t, ok)
	require.Equal(t, bytes.Join(frames, nil), bundle)

	m, ok := w.Meta(7)
	require.True(t, ok)
	require.Equal(t, meta, m)
}

func TestIncompleteSegmentHasNoBuffers(t *testing.T) {
	w := testWindow(6, 10)
	cs := spec(3, 100, 200).chunks()
	added, _ := w.AddChunk(cs[0])
	require.True(t, added)
	_, _, ok := w.SegmentBuffers(3)
	require.False(t, ok)
	_, ok = w.BundleBuffers(3)
	require.False(t, ok)
	_, ok = w.Meta(3)
	require.False(t, ok)
}

// Changed keeps one channel while nobody waits on it, and still fires for a waiter at the next
// change.
func TestChangedFiresAfterChangesNobodyWatched(t *testing.T) {
	w := testWindow(6, 10)
	cs := spec(1, 100, 200, 300).chunks()
	w.AddChunk(cs[0])
	ch := w.Changed()
	select {
	case <-ch:
		t.Fatal("fired before a change")
	default:
	}
	w.AddChunk(cs[1])
	select {
	case <-ch:
	default:
		t.Fatal("a change after Changed must close its channel")
	}
	next := w.Changed()
	require.NotEqual(t, ch, next)
	w.AddChunk(cs[2])
	<-next
}
