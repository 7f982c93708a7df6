package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/proto"
)

// partLog records when each part ended, as the origin's chunks say (FlagPartEnd or the last
// chunk), numbering parts within their segment as the LL playlist does.
type partLog struct {
	mu      sync.Mutex
	count   map[uint64]int          // parts ended so far per segment
	endedAt map[[2]uint64]time.Time // (seq, part) -> when its last chunk was emitted
	changed chan struct{}
}

func newPartLog() *partLog {
	return &partLog{count: map[uint64]int{}, endedAt: map[[2]uint64]time.Time{}, changed: make(chan struct{})}
}

func (l *partLog) chunk(c *proto.Chunk) {
	if !c.PartEnd() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Last() && len(c.Data) == 0 && c.Flags&proto.FlagPartEnd == 0 && l.count[c.ID.Seq] > 0 {
		// An empty last chunk after a part end adds no part (segwindow.partRanges); the
		// origin's segmenter does not make one, but stay exact.
		return
	}
	n := l.count[c.ID.Seq]
	l.count[c.ID.Seq] = n + 1
	l.endedAt[[2]uint64{c.ID.Seq, uint64(n)}] = time.Now()
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *partLog) ended(seq uint64, part int) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.endedAt[[2]uint64{seq, uint64(part)}]
	return at, ok
}

func decodeMedia(t *testing.T, body []byte) *m3u8.MediaPlaylist {
	t.Helper()
	p, kind, err := m3u8.DecodeFrom(bytes.NewReader(body), true)
	require.NoError(t, err, string(body))
	require.Equal(t, m3u8.MEDIA, kind)
	return p.(*m3u8.MediaPlaylist)
}

// TestLLHLSFromAnFFmpegPublisher publishes H.264+AAC with ffmpeg into a real origin and checks
// the LL-HLS variant derived at the edge: a blocking playlist reload answers as soon as the part
// it asks for is signed, and init.mp4 with a segment's parts decodes cleanly with ffprobe, every
// INDEPENDENT part opening on a keyframe.
func TestLLHLSFromAnFFmpegPublisher(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)
	parts := newPartLog()
	defer o.Subscribe(parts.chunk)()

	published := make(chan error, 1)
	go func() {
		stderr, err := publish(context.Background(), o.rtsp+"/ll", publishOpts{video: true, audio: true, seconds: 5})
		if err != nil {
			err = fmt.Errorf("%w: %s", err, stderr)
		}
		published <- err
	}()

	// Live: ask for the part after the hinted one, which cannot exist yet, and check that
	// the answer comes once, and soon after, the origin signed that part's last chunk.
	var live *m3u8.MediaPlaylist
	require.Eventually(t, func() bool {
		code, body := httpGet(t, o.base+"/live/ll/ll.m3u8")
		if code != http.StatusOK {
			return false
		}
		live = decodeMedia(t, body)
		return live.PreloadHints != nil
	}, 20*time.Second, 20*time.Millisecond)
	hint := live.PreloadHints.URI
	msn, part := parsePartURI(t, hint)
	asked := time.Now()
	url := fmt.Sprintf("%s/live/ll/ll.m3u8?_HLS_msn=%d&_HLS_part=%d", o.base, msn, part+1)
	code, body := httpGet(t, url)
	answered := time.Now()
	require.Equal(t, http.StatusOK, code, string(body))
	blocked := decodeMedia(t, body)
	// The part it waited for (or its whole segment, if the segment ended first) is listed.
	want := fmt.Sprintf("%d.%d.mp4", msn, part+1)
	listed := false
	for _, p := range blocked.PartialSegments {
		listed = listed || p.URI == want
	}
	for _, s := range blocked.GetAllSegments() {
		listed = listed || s.URI == fmt.Sprintf("%d.mp4", msn)
	}
	require.True(t, listed, "asked for %s, got\n%s", want, body)
	endedAt, ok := parts.ended(msn, part+1)
	if !ok { // the segment ended with fewer parts: its last chunk answered the request
		endedAt, ok = parts.ended(msn, part)
	}
	require.True(t, ok)
	require.True(t, endedAt.After(asked), "the part did not exist yet when asked")
	require.False(t, answered.Before(endedAt), "answered before the part existed")
	require.Less(t, answered.Sub(endedAt), time.Second, "answered %v after the part's last chunk", answered.Sub(endedAt))

	require.NoError(t, <-published)
	o.waitIdle(t, "ll")

	code, body = httpGet(t, o.base+"/live/ll/ll.m3u8")
	require.Equal(t, http.StatusOK, code)
	final := decodeMedia(t, body)
	require.True(t, final.Closed, "the stream ended: EXT-X-ENDLIST")
	require.Nil(t, final.PreloadHints)
	require.Equal(t, 0.2, final.PartTargetDuration)

	// A segment with its parts listed, not the last (which the publisher cut short).
	segs := final.GetAllSegments()
	require.GreaterOrEqual(t, len(segs), 3)
	seg := segs[len(segs)-2]
	segSeq, _ := strconv.ParseUint(strings.TrimSuffix(seg.URI, ".mp4"), 10, 64)
	var segParts []*m3u8.PartialSegment
	for _, p := range final.PartialSegments {
		if s, _ := parsePartURI(t, p.URI); s == segSeq {
			segParts = append(segParts, p)
		}
	}
	// 1 s segments at 25 fps, keyframe every 25 frames: five parts of five frames.
	require.Len(t, segParts, 5, "%s", body)

	dir := t.TempDir()
	_, init := httpGetOK(t, o.base+"/live/ll/init.mp4")
	whole := append([]byte(nil), init...)
	for i, p := range segParts {
		require.Equal(t, fmt.Sprintf("%d.%d.mp4", segSeq, i), p.URI)
		require.InDelta(t, 0.2, p.Duration, 0.001)
		_, body := httpGetOK(t, o.base+"/live/ll/"+p.URI)
		whole = append(whole, body...)
		// Each part on its own after the init segment: an INDEPENDENT one decodes from its
		// first frame, a keyframe; the others start on a frame that is not one.
		file := filepath.Join(dir, p.URI)
		require.NoError(t, os.WriteFile(file, append(append([]byte(nil), init...), body...), 0o644))
		packets := probeVideo(t, file, "packet=flags")
		require.Len(t, packets, 5, p.URI)
		require.Equal(t, p.Independent, strings.HasPrefix(packets[0], "K"), "%s: INDEPENDENT=%v, first packet %s", p.URI, p.Independent, packets[0])
		if p.Independent {
			frames := probeVideo(t, file, "frame=key_frame")
			require.Equal(t, []string{"1", "0", "0", "0", "0"}, frames, p.URI)
		}
		require.Equal(t, i == 0, p.Independent)
	}
	_, segBody := httpGetOK(t, o.base+"/live/ll/"+seg.URI)
	require.Equal(t, whole[len(init):], segBody, "SEQ.mp4 is its parts back to back")

	file := filepath.Join(dir, "whole.mp4")
	require.NoError(t, os.WriteFile(file, whole, 0o644))
	streams := probeFile(t, file)
	require.Len(t, streams, 2)
	byType := map[string]probeStream{}
	for _, s := range streams {
		byType[s.CodecType] = s
	}
	require.Equal(t, "h264", byType["video"].CodecName)
	require.Equal(t, "25", byType["video"].Frames)
	require.Equal(t, "aac", byType["audio"].CodecName)
	audioFrames, err := strconv.Atoi(byType["audio"].Frames)
	require.NoError(t, err)
	require.InDelta(t, 1.0, float64(audioFrames)*1024/44100, 0.1, "about a second of audio")

	// Players without LL-HLS (ffmpeg here, VLC and ffplay alike) play ll.m3u8 as plain HLS.
	require.Empty(t, decodeHLS(t, o.base+"/live/ll/ll.m3u8", "error"))

	// The TS variant is untouched, and the multivariant playlist names both.
	code, _ = httpGet(t, o.base+"/live/ll/"+strconv.FormatUint(segSeq, 10)+".ts")
	require.Equal(t, http.StatusOK, code)
	_, master := httpGetOK(t, o.base+"/live/ll/master.m3u8")
	require.Contains(t, string(master), "index.m3u8")
	require.Contains(t, string(master), "ll.m3u8")
}

func parsePartURI(t *testing.T, uri string) (uint64, int) {
	t.Helper()
	fields := strings.Split(strings.TrimSuffix(uri, ".mp4"), ".")
	require.Len(t, fields, 2, uri)
	seq, err := strconv.ParseUint(fields[0], 10, 64)
	require.NoError(t, err)
	part, err := strconv.Atoi(fields[1])
	require.NoError(t, err)
	return seq, part
}

func httpGetOK(t *testing.T, url string) (int, []byte) {
	t.Helper()
	code, body := httpGet(t, url)
	require.Equal(t, http.StatusOK, code, "%s: %s", url, body)
	return code, body
}

// probeFile counts the frames of each stream of an fMP4 file with ffprobe, which must not
// complain.
func probeFile(t *testing.T, file string) []probeStream {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-count_packets",
		"-show_entries", "stream=codec_type,codec_name,sample_rate,nb_read_frames,nb_read_packets", "-of", "json", file)
	var out, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errBuf
	require.NoError(t, cmd.Run(), errBuf.String())
	require.Empty(t, errBuf.String(), "ffprobe complains")
	var res struct {
		Streams []probeStream `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &res))
	return res.Streams
}

// probeVideo returns one field of every video packet or decoded frame of an fMP4 file
// (entries "packet=flags" or "frame=key_frame").
func probeVideo(t *testing.T, file, entries string) []string {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", entries, "-of", "csv=p=0", file)
	var out, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errBuf
	require.NoError(t, cmd.Run(), errBuf.String())
	return strings.Fields(out.String())
}
