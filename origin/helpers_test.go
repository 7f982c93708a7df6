package origin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crowdsurf/crowdsurf/internal/testrun"
	"github.com/crowdsurf/crowdsurf/proto"
)

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// udpPair binds an even RTP port and the RTCP port after it on loopback.
func udpPair(t *testing.T) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	for range 100 {
		rtp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		port := rtp.LocalAddr().(*net.UDPAddr).Port
		if port%2 != 0 || port >= 65535 {
			rtp.Close()
			continue
		}
		rtcp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
		if err != nil {
			rtp.Close()
			continue
		}
		return rtp, rtcp
	}
	t.Fatal("no free even/odd UDP port pair on loopback")
	return nil, nil
}

// testConfig gives an origin on loopback with port 0 everywhere, a fresh key, 1 s segments (so
// a few seconds of media make several) and logs collected in the returned buffer.
func testConfig(t *testing.T) (Config, *syncBuffer) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	rtspLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rtp, rtcp := udpPair(t)
	// Run closes these; the cleanup covers tests whose origin never runs.
	t.Cleanup(func() {
		rtspLn.Close()
		httpLn.Close()
		rtp.Close()
		rtcp.Close()
	})
	logs := &syncBuffer{}
	return Config{
		RTSPListener:    rtspLn,
		UDPRTPConn:      rtp,
		UDPRTCPConn:     rtcp,
		HTTPListener:    httpLn,
		MeshAddr:        "127.0.0.1:0",
		Key:             key,
		SegmentDuration: time.Second,
		Window:          12,
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

type testOrigin struct {
	*Origin
	base string // http://127.0.0.1:PORT
	rtsp string // rtsp://127.0.0.1:PORT
}

// startOrigin runs an origin until the test ends and checks that Run returns cleanly.
func startOrigin(t *testing.T, cfg Config) *testOrigin {
	t.Helper()
	o, err := New(cfg)
	require.NoError(t, err)
	testrun.Background(t, "origin", 15*time.Second, o.Run)
	to := &testOrigin{Origin: o, base: "http://" + o.HTTPAddr().String()}
	if a := o.RTSPAddr(); a != nil {
		to.rtsp = "rtsp://" + a.String()
	}
	return to
}

func requireFFmpeg(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is required for this test (make test installs it)", tool)
	}
}

// publishOpts describe a test publisher: ffmpeg's lavfi test sources, encoded live.
type publishOpts struct {
	video, audio bool
	vcodec       string // default libx264; libx265 (open GOP: CRA keyframes after the first IDR)
	acodec       string // default aac; libopus
	transport    string // tcp (default) or udp
	seconds      float64
	extra        []string // output options before the URL
}

// publish runs ffmpeg as an RTSP publisher to url until it has sent opts.seconds of media.
func publish(ctx context.Context, url string, opts publishOpts) (stderr string, err error) {
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error", "-re"}
	if opts.video {
		args = append(args, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25")
	}
	if opts.audio {
		args = append(args, "-f", "lavfi", "-i", "sine")
	}
	args = append(args, "-t", strconv.FormatFloat(opts.seconds, 'f', -1, 64))
	if opts.video {
		switch opts.vcodec {
		case "", "libx264":
			args = append(args, "-c:v", "libx264", "-g", "25", "-tune", "zerolatency", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
		case "libx264-bframes":
			// Main profile with B-frames: PTS and DTS differ and frames arrive reordered.
			args = append(args, "-c:v", "libx264", "-g", "25", "-bf", "2", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p")
		case "libx265":
			args = append(args, "-c:v", "libx265", "-g", "25", "-tune", "zerolatency", "-preset", "ultrafast",
				"-pix_fmt", "yuv420p", "-x265-params", "log-level=error")
		default:
			args = append(args, "-c:v", opts.vcodec)
		}
	}
	if opts.audio {
		switch opts.acodec {
		case "", "aac":
			args = append(args, "-c:a", "aac")
		case "libopus":
			args = append(args, "-c:a", "libopus", "-ac", "2", "-b:a", "64k")
		default:
			args = append(args, "-c:a", opts.acodec)
		}
	}
	transport := opts.transport
	if transport == "" {
		transport = "tcp"
	}
	args = append(args, opts.extra...)
	args = append(args, "-f", "rtsp", "-rtsp_transport", transport, url)
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	err = cmd.Run()
	return errBuf.String(), err
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// playlist is the part of a media playlist the tests check.
type playlist struct {
	mediaSeq  uint64
	segments  []playlistSegment
	targetDur int
}

type playlistSegment struct {
	seq           uint64
	duration      float64
	discontinuity bool
	uri           string
	pdt           time.Time
}

func parsePlaylist(t *testing.T, b []byte) playlist {
	t.Helper()
	var p playlist
	var next playlistSegment
	seq := uint64(0)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			v, err := strconv.ParseUint(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
			require.NoError(t, err)
			p.mediaSeq, seq = v, v
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			v, err := strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-TARGETDURATION:"))
			require.NoError(t, err)
			p.targetDur = v
		case strings.HasPrefix(line, "#EXTINF:"):
			v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(line, "#EXTINF:"), ","), 64)
			require.NoError(t, err)
			next.duration = v
		case strings.HasPrefix(line, "#EXT-X-PROGRAM-DATE-TIME:"):
			v, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(line, "#EXT-X-PROGRAM-DATE-TIME:"))
			require.NoError(t, err)
			next.pdt = v
		case line == "#EXT-X-DISCONTINUITY":
			next.discontinuity = true
		case line != "" && !strings.HasPrefix(line, "#"):
			next.uri, next.seq = line, seq
			p.segments = append(p.segments, next)
			next = playlistSegment{}
			seq++
		}
	}
	return p
}

func (o *testOrigin) playlist(t *testing.T, stream string) playlist {
	t.Helper()
	code, body := httpGet(t, o.base+"/live/"+stream+"/index.m3u8")
	require.Equal(t, http.StatusOK, code, string(body))
	return parsePlaylist(t, body)
}

// waitSegments waits until the playlist lists at least n segments.
func (o *testOrigin) waitSegments(t *testing.T, stream string, n int) playlist {
	t.Helper()
	var p playlist
	require.Eventually(t, func() bool {
		resp, err := http.Get(o.base + "/live/" + stream + "/index.m3u8")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		p = parsePlaylist(t, body)
		return len(p.segments) >= n
	}, 20*time.Second, 50*time.Millisecond)
	return p
}

// streamInfo fetches /v1/streams and returns the named stream, if listed.
func (o *testOrigin) streamInfo(t *testing.T, name string) (StreamInfo, bool) {
	t.Helper()
	code, body := httpGet(t, o.base+"/v1/streams")
	require.Equal(t, http.StatusOK, code)
	var resp struct {
		Streams []StreamInfo `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(body, &resp))
	for _, s := range resp.Streams {
		if s.Name == name {
			return s, true
		}
	}
	return StreamInfo{}, false
}

// waitIdle waits until the stream's publisher is gone (its last segment is finished).
func (o *testOrigin) waitIdle(t *testing.T, name string) {
	t.Helper()
	require.Eventually(t, func() bool {
		si, ok := o.streamInfo(t, name)
		return ok && !si.Live
	}, 10*time.Second, 50*time.Millisecond)
}

// decodeHLS plays the whole playlist from its first segment with ffmpeg and returns what ffmpeg
// said at level ("warning" or "error"), which must be nothing for a clean stream.
func decodeHLS(t *testing.T, url string, level string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// live_start_index 0 plays from the first listed segment; the hold counter ends the read
	// once the finished stream's playlist stops changing.
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", level,
		"-live_start_index", "0", "-m3u8_hold_counters", "2", "-i", url, "-f", "null", "-")
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	err := cmd.Run()
	require.NoError(t, err, "ffmpeg: %s", errBuf.String())
	return errBuf.String()
}

// probeSegment counts the frames/packets of each stream in one segment.
type probeStream struct {
	CodecType  string `json:"codec_type"`
	CodecName  string `json:"codec_name"`
	SampleRate string `json:"sample_rate"`
	Frames     string `json:"nb_read_frames"`
	Packets    string `json:"nb_read_packets"`
}

func probeSegment(t *testing.T, data []byte) []probeStream {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-count_packets",
		"-show_entries", "stream=codec_type,codec_name,sample_rate,nb_read_frames,nb_read_packets", "-of", "json", "-i", "pipe:0")
	cmd.Stdin = bytes.NewReader(data)
	var out, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errBuf
	require.NoError(t, cmd.Run(), errBuf.String())
	require.Empty(t, errBuf.String(), "ffprobe complains about a segment")
	var res struct {
		Streams []probeStream `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &res))
	return res.Streams
}

// fetchChunks downloads a segment chunk by chunk, verifying each, until the last one.
func fetchChunks(t *testing.T, o *testOrigin, stream string, seq uint64) ([]byte, []*proto.Chunk) {
	t.Helper()
	var data []byte
	var chunks []*proto.Chunk
	for i := 0; ; i++ {
		code, body := httpGet(t, fmt.Sprintf("%s/live/%s/%d/%d.chunk", o.base, stream, seq, i))
		require.Equal(t, http.StatusOK, code, string(body))
		c, n, err := proto.ParseChunk(body)
		require.NoError(t, err)
		require.Equal(t, len(body), n)
		require.NoError(t, c.Verify(o.PublicKey()))
		require.Equal(t, proto.ChunkID{Stream: stream, Seq: seq, Index: uint32(i)}, c.ID)
		data = append(data, c.Data...)
		chunks = append(chunks, c)
		if c.Last() {
			require.Equal(t, uint32(i+1), c.Info.ChunkCount)
			require.Equal(t, uint64(len(data)), c.Info.ByteLength)
			return data, chunks
		}
		require.Less(t, i, proto.MaxChunksPerSegment)
	}
}
