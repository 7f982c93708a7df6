package segwindow

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

func TestOutOfOrderChunksCompleteExactlyOnce(t *testing.T) {
	for trial := range 20 {
		w := testWindow(3, 5)
		s := spec(7, 16384, 16384, 100, 16384, 3)
		cs := s.chunks()
		rng := rand.New(rand.NewPCG(uint64(trial), 1))
		rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
		completions := 0
		for i, c := range cs {
			added, completed := w.AddChunk(c)
			require.True(t, added)
			if completed {
				completions++
				require.Equal(t, len(cs)-1, i, "completes on the last missing chunk, whatever its index")
			}
		}
		require.Equal(t, 1, completions)
		for _, c := range cs {
			added, completed := w.AddChunk(c)
			require.False(t, added, "duplicate")
			require.False(t, completed)
		}
		data, meta, ok := w.Segment(7)
		require.True(t, ok)
		require.Equal(t, s.bytes(), data)
		require.Equal(t, SegmentMeta{
			Seq: 7, Duration: 2 * time.Second, ProgramDateTime: testEpoch.Add(14 * time.Second),
			ByteLength: len(s.bytes()), ChunkCount: 5,
		}, meta)
		// Served chunks still carry their own bytes after the segment was concatenated.
		for i, want := range s.chunks() {
			got, ok := w.Chunk(7, uint32(i))
			require.True(t, ok)
			require.Equal(t, want.Data, got.Data)
			require.Equal(t, want.Info, got.Info)
		}
	}
}

func TestDuplicateBeforeCompletionIgnored(t *testing.T) {
	w := testWindow(3, 5)
	cs := spec(1).chunks()
	added, _ := w.AddChunk(cs[0])
	require.True(t, added)
	added, completed := w.AddChunk(cs[0])
	require.False(t, added)
	require.False(t, completed)
	st, ok := w.State(1)
	require.True(t, ok)
	require.Equal(t, []bool{true}, st.Have)
	require.Equal(t, -1, st.ChunkCount)
	require.False(t, st.FirstSeen.IsZero())

	w.AddChunk(cs[2])
	st, _ = w.State(1)
	require.Equal(t, []bool{true, false, true}, st.Have)
	require.Equal(t, 3, st.ChunkCount)
	require.False(t, st.Complete)
	require.True(t, w.Has(1, 2))
	require.False(t, w.Has(1, 1))
	_, _, ok = w.Segment(1)
	require.False(t, ok, "incomplete segment is not served")
}

// State's Have is cached per segment between additions (the peer asks for it every 100 ms): a
// chunk added since must show, and a caller writing into the slice it got must not change what
// the next caller sees.
func TestStateShowsEveryAdditionAndHandsOutItsOwnCopy(t *testing.T) {
	w := testWindow(3, 5)
	cs := spec(1, 100, 100, 100, 100).chunks()
	w.AddChunk(cs[1])
	st, _ := w.State(1)
	require.Equal(t, []bool{false, true}, st.Have)
	st.Have[0] = true // the caller's copy
	st, _ = w.State(1)
	require.Equal(t, []bool{false, true}, st.Have, "the cached state is not the caller's slice")

	w.AddChunk(cs[0])
	st, _ = w.State(1)
	require.Equal(t, []bool{true, true}, st.Have, "an added chunk shows at once")
	w.AddChunk(cs[3])
	st, _ = w.State(1)
	require.Equal(t, []bool{true, true, false, true}, st.Have, "the last chunk fixes the count")
	w.AddChunk(cs[2])
	st, _ = w.State(1)
	require.True(t, st.Complete)
	require.Equal(t, []bool{true, true, true, true}, st.Have)
}

func TestByteLengthMismatchNeverCompletes(t *testing.T) {
	w := testWindow(3, 5)
	cs := spec(1).chunks()
	cs[2].Info.ByteLength++ // claims one byte more than the chunks hold
	for _, c := range cs {
		added, completed := w.AddChunk(c)
		require.True(t, added)
		require.False(t, completed)
	}
	st, _ := w.State(1)
	require.False(t, st.Complete)
	require.True(t, st.Broken)
	_, ok := w.Playlist()
	require.False(t, ok)

	// A last chunk claiming fewer bytes than already held is rejected outright.
	w2 := testWindow(3, 5)
	cs = spec(1).chunks()
	cs[2].Info.ByteLength = 120
	w2.AddChunk(cs[0])
	w2.AddChunk(cs[1])
	added, completed := w2.AddChunk(cs[2])
	require.False(t, added)
	require.False(t, completed)
}

func TestInconsistentChunksRejected(t *testing.T) {
	t.Run("discontinuity flag: first writer wins", func(t *testing.T) {
		w := testWindow(3, 5)
		s := spec(1)
		s.disc = true
		cs := s.chunks()
		w.AddChunk(cs[0])
		plain := spec(1).chunks()
		added, _ := w.AddChunk(plain[1])
		require.False(t, added)
		added, _ = w.AddChunk(cs[1])
		require.True(t, added)
		_, completed := w.AddChunk(cs[2])
		require.True(t, completed)
		_, meta, _ := w.Segment(1)
		require.True(t, meta.Discontinuity)
	})
	t.Run("index beyond the known chunk count", func(t *testing.T) {
		w := testWindow(3, 5)
		cs := spec(1).chunks()
		w.AddChunk(cs[2])
		beyond := *cs[0]
		beyond.ID.Index = 3
		added, _ := w.AddChunk(&beyond)
		require.False(t, added)
	})
	t.Run("last chunk below an index already held", func(t *testing.T) {
		w := testWindow(3, 5)
		cs := spec(1, 10, 10, 10, 10).chunks()
		w.AddChunk(cs[3])
		early := spec(1, 10, 10).chunks()[1]
		added, _ := w.AddChunk(early)
		require.False(t, added)
	})
	t.Run("other stream", func(t *testing.T) {
		w := testWindow(3, 5)
		c := spec(1).chunks()[0]
		c.ID.Stream = "other"
		added, _ := w.AddChunk(c)
		require.False(t, added)
		require.Empty(t, w.Seqs())
	})
}

func TestEvictionKeepsNewestSeqsAndIgnoresOldChunks(t *testing.T) {
	w := testWindow(2, 3)
	for seq := uint64(0); seq < 10; seq++ {
		addAll(t, w, spec(seq))
	}
	require.Equal(t, []uint64{7, 8, 9}, w.Seqs())
	added, _ := w.AddChunk(spec(6).chunks()[0])
	require.False(t, added, "older than the window")
	_, ok := w.State(6)
	require.False(t, ok)
	newest, ok := w.Newest()
	require.True(t, ok)
	require.Equal(t, uint64(9), newest)
	nc, ok := w.NewestComplete()
	require.True(t, ok)
	require.Equal(t, uint64(9), nc)

	// A partial newer segment advances Newest but not NewestComplete.
	w.AddChunk(spec(10).chunks()[0])
	newest, _ = w.Newest()
	require.Equal(t, uint64(10), newest)
	nc, _ = w.NewestComplete()
	require.Equal(t, uint64(9), nc)
	require.Equal(t, []uint64{8, 9, 10}, w.Seqs())
}

func TestFarAheadSeqNeedsConfirmationAndAllocatesNothingPerGap(t *testing.T) {
	w := testWindow(3, 5) // MaxJump = 20
	addAll(t, w, spec(10))

	bogus := spec(1 << 50).chunks()[0]
	added, _ := w.AddChunk(bogus)
	require.False(t, added, "one far-ahead chunk must not throw the window away")
	require.Equal(t, []uint64{10}, w.Seqs())
	addAll(t, w, spec(11)) // the real stream goes on
	p, ok := w.Playlist()
	require.True(t, ok)
	require.Contains(t, string(p), "11.ts")

	// A far but modest move within MaxJump is taken at once.
	addAll(t, w, spec(30))
	require.Equal(t, []uint64{30}, w.Seqs())

	// A stream that really moved far on shows a second seq near the first: then the window jumps.
	far := uint64(1 << 40)
	added, _ = w.AddChunk(spec(far).chunks()[0])
	require.False(t, added)
	added, _ = w.AddChunk(spec(far + 1).chunks()[0])
	require.True(t, added)
	newest, _ := w.Newest()
	require.Equal(t, far+1, newest)
	require.Equal(t, []uint64{far + 1}, w.Seqs())
	addAll(t, w, spec(far))
	require.Equal(t, []uint64{far, far + 1}, w.Seqs())

	// Memory: thousands of confirmed huge jumps, each with a chunk claiming the largest index,
	// keep at most Keep segments and allocate a bounded amount per chunk.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	seq := far
	const jumps = 2000
	for range jumps {
		seq += 1 << 30
		for _, s := range []uint64{seq, seq + 1} {
			c := &proto.Chunk{
				ID:    proto.ChunkID{Stream: testStream, Seq: s, Index: proto.MaxChunksPerSegment - 1},
				Flags: proto.FlagLast,
				Info:  proto.SegmentInfo{ChunkCount: proto.MaxChunksPerSegment, ByteLength: 1 << 20},
				Data:  []byte{1},
			}
			w.AddChunk(c)
		}
		require.LessOrEqual(t, len(w.Seqs()), 5)
	}
	runtime.ReadMemStats(&after)
	perJump := (after.TotalAlloc - before.TotalAlloc) / jumps
	require.Less(t, perJump, uint64(16<<10), "allocation per jump must not grow with the seq gap or the chunk count")
	st, _ := w.State(seq + 1)
	require.Equal(t, proto.MaxChunksPerSegment, st.ChunkCount)
}

func TestSegmentBytesBoundedBeforeLengthKnown(t *testing.T) {
	w := New(Config{Stream: testStream, MaxSegmentBytes: 250})
	cs := spec(1, 100, 100, 100).chunks()
	added, _ := w.AddChunk(cs[0])
	require.True(t, added)
	added, _ = w.AddChunk(cs[1])
	require.True(t, added)
	added, _ = w.AddChunk(cs[2])
	require.False(t, added, "would exceed MaxSegmentBytes")
}

func TestAbandon(t *testing.T) {
	w := testWindow(6, 10)
	addAll(t, w, spec(1))
	addAll(t, w, spec(3))
	w.Abandon(2) // never seen
	st, ok := w.State(2)
	require.True(t, ok)
	require.True(t, st.Abandoned)
	require.True(t, st.FirstSeen.IsZero())
	added, _ := w.AddChunk(spec(2).chunks()[0])
	require.False(t, added, "an abandoned segment takes no more chunks")

	w.Abandon(1) // complete: left alone
	st, _ = w.State(1)
	require.False(t, st.Abandoned)
	w.Abandon(99) // beyond the newest: ignored
	_, ok = w.State(99)
	require.False(t, ok)

	p, ok := w.Playlist()
	require.True(t, ok)
	require.Contains(t, string(p), "#EXT-X-MEDIA-SEQUENCE:3\n")
	require.Contains(t, string(p), "#EXT-X-DISCONTINUITY\n")
}

func TestChangedFiresOnEveryChange(t *testing.T) {
	w := testWindow(3, 5)
	ch := w.Changed()
	w.AddChunk(spec(1).chunks()[0])
	requireClosed(t, ch)

	ch = w.Changed()
	added, _ := w.AddChunk(spec(1).chunks()[0])
	require.False(t, added)
	select {
	case <-ch:
		t.Fatal("a duplicate is no change")
	default:
	}

	var wg sync.WaitGroup
	wg.Go(func() { <-ch })
	w.AddChunk(spec(1).chunks()[1])
	wg.Wait()

	ch = w.Changed()
	w.Abandon(1)
	requireClosed(t, ch)
}

func requireClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatal("Changed channel not closed")
	}
}

func TestConcurrentUse(t *testing.T) {
	w := testWindow(3, 6)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for seq := uint64(0); seq < 40; seq++ {
				cs := spec(seq).chunks()
				for i := range cs {
					w.AddChunk(cs[(i+g)%len(cs)])
				}
				w.Playlist()
				w.Seqs()
				w.State(seq)
			}
		})
	}
	wg.Wait()
	p, ok := w.Playlist()
	require.True(t, ok)
	require.Contains(t, string(p), "39.ts")
}
