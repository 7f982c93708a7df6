package segwindow

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// TestFFmpegPlaysServedPlaylist cuts real MPEG-TS segments (made by ffmpeg) into 16 KiB chunks,
// feeds them to a window out of order, serves it on loopback and has ffmpeg read the live
// playlist and every segment.
func TestFFmpegPlaysServedPlaylist(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	require.NoError(t, err, "ffmpeg is required for this test (make test installs it)")
	ffprobe, err := exec.LookPath("ffprobe")
	require.NoError(t, err, "ffprobe is required for this test (make test installs it)")

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	gen := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
		"-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-c:a", "aac",
		"-f", "hls", "-hls_time", "2", "-hls_list_size", "0",
		"-hls_segment_filename", filepath.Join(dir, "%d.ts"), filepath.Join(dir, "src.m3u8"))
	out, err := gen.CombinedOutput()
	require.NoError(t, err, string(out))

	w := New(Config{Stream: testStream, PlaylistLength: 6})
	const seqBase = 100
	total := 0
	for i := range 3 {
		data, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)+".ts"))
		require.NoError(t, err)
		cs := cutChunks(uint64(seqBase+i), data, 2*time.Second, testEpoch.Add(time.Duration(i)*2*time.Second))
		completions := 0
		for j := len(cs) - 1; j >= 0; j-- { // last chunk first: the worst order
			_, completed := w.AddChunk(cs[j])
			if completed {
				completions++
			}
		}
		require.Equal(t, 1, completions)
		got, _, ok := w.Segment(uint64(seqBase + i))
		require.True(t, ok)
		require.Equal(t, data, got)
		total += len(data)
	}

	var mu sync.Mutex
	fetched := map[string]int{}
	e := echo.New()
	NewServer(func(stream string) (*Window, bool) { return w, stream == testStream },
		ServerOptions{OnServe: func(_, kind string, n int) {
			mu.Lock()
			defer mu.Unlock()
			fetched[kind] += n
		}}).Register(e)
	srv := httptest.NewServer(e) // 127.0.0.1, port 0
	defer srv.Close()
	url := srv.URL + "/live/" + testStream + "/index.m3u8"

	probe := exec.CommandContext(ctx, ffprobe, "-v", "error", "-show_entries", "stream=codec_name", "-of", "json", url)
	out, err = probe.Output()
	require.NoError(t, err, string(out))
	var probed struct {
		Streams []struct {
			CodecName string `json:"codec_name"`
		} `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(out, &probed))
	var codecs []string
	for _, s := range probed.Streams {
		codecs = append(codecs, s.CodecName)
	}
	require.ElementsMatch(t, []string{"h264", "aac"}, codecs)

	mu.Lock()
	require.Positive(t, fetched[KindPlaylist])
	clear(fetched)
	mu.Unlock()

	// ffmpeg reads the live playlist from its start and demuxes all three segments; -t stops it
	// before it would wait for a fourth.
	read := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-live_start_index", "0",
		"-i", url, "-t", "5.5", "-map", "0", "-c", "copy", "-f", "null", "-")
	out, err = read.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Empty(t, string(out), "ffmpeg reported errors")
	mu.Lock()
	defer mu.Unlock()
	require.Positive(t, fetched[KindPlaylist])
	require.GreaterOrEqual(t, fetched[KindSegment], total, "ffmpeg fetched every segment")
}

// cutChunks splits a segment the way the origin does: 16 KiB chunks, info on the last one.
func cutChunks(seq uint64, data []byte, dur time.Duration, pdt time.Time) []*proto.Chunk {
	const size = 16 << 10
	var cs []*proto.Chunk
	for off := 0; off < len(data); off += size {
		end := min(off+size, len(data))
		cs = append(cs, &proto.Chunk{
			ID:   proto.ChunkID{Stream: testStream, Seq: seq, Index: uint32(len(cs))},
			Data: data[off:end],
		})
	}
	last := cs[len(cs)-1]
	last.Flags = proto.FlagLast
	last.Info = proto.SegmentInfo{ChunkCount: uint32(len(cs)), ByteLength: uint64(len(data)), Duration: dur, ProgramDateTime: pdt}
	return cs
}
