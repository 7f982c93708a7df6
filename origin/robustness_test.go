package origin

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// TestMalformedRTPNeverCrashesOrBlocks publishes random RTP payloads (broken FU-A, STAP-A, AAC
// AU headers, wild timestamps) on H.264 and AAC, then well-formed frames: the origin survives,
// counts the errors, and the same session still produces segments.
func TestMalformedRTPNeverCrashesOrBlocks(t *testing.T) {
	t.Parallel()
	cfg, _ := testConfig(t)
	o := startOrigin(t, cfg)

	video := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: testSPS, PPS: testPPS}
	audio := &format.MPEG4Audio{PayloadTyp: 97, Config: testAAC, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
	desc := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{video}},
		{Type: description.MediaTypeAudio, Formats: []format.Format{audio}},
	}}
	// The whole burst of junk fits in the write queue, so the client never drops (and errors on) a packet.
	c := gortsplib.Client{OnDecodeError: func(error) {}, WriteQueueSize: 4096}
	require.NoError(t, c.StartRecording(o.rtsp+"/junk", desc))
	defer c.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	seq := uint16(0)
	for i := range 2000 {
		medi := desc.Medias[i%2]
		payload := make([]byte, rng.IntN(1400))
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		if len(payload) > 0 && i%7 == 0 {
			payload[0] = 28 // FU-A with random header bits
		}
		seq++
		require.NoError(t, c.WritePacketRTP(medi, &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: medi.Formats[0].PayloadType(), SequenceNumber: seq, Timestamp: rng.Uint32(), Marker: rng.IntN(2) == 0, SSRC: 1},
			Payload: payload,
		}))
	}

	// Well-formed frames afterwards: 3 s at 25 fps, a keyframe every second, sent faster than
	// real time (the segmenter follows RTP timestamps, not the wall clock).
	enc, err := video.CreateEncoder()
	require.NoError(t, err)
	base := rng.Uint32()
	for i := range 75 {
		pkts, err := enc.Encode(videoAU(i%25 == 0, 2000))
		require.NoError(t, err)
		for _, p := range pkts {
			p.Timestamp = base + uint32(i*frame25)
			require.NoError(t, c.WritePacketRTP(desc.Medias[0], p))
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.Close()
	o.waitIdle(t, "junk")

	p := o.waitSegments(t, "junk", 2)
	for _, seg := range p.segments {
		fetchChunks(t, o, "junk", seg.seq)
	}
	code, _ := httpGet(t, o.base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	_, body := httpGet(t, o.base+"/metrics")
	require.Regexp(t, `crowdsurf_origin_media_errors_total [1-9]`, string(body))
}

// TestPublisherVanishingMidSegmentLeavesNoBrokenSegment kills ffmpeg (no TEARDOWN) in the
// middle of a segment: the partial segment is finished with its real duration and plays.
func TestPublisherVanishingMidSegmentLeavesNoBrokenSegment(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	cfg.SegmentDuration = 2 * time.Second
	o := startOrigin(t, cfg)

	cmd := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine", "-t", "20",
		"-c:v", "libx264", "-g", "25", "-tune", "zerolatency", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-f", "rtsp", "-rtsp_transport", "tcp", o.rtsp+"/vanish")
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill() //nolint:errcheck

	o.waitSegments(t, "vanish", 1)
	// Wait until the next segment is being written (some of its chunks are out), then kill.
	st, ok := o.lookup("vanish")
	require.True(t, ok)
	require.Eventually(t, func() bool {
		newest, ok1 := st.window.Newest()
		complete, ok2 := st.window.NewestComplete()
		return ok1 && ok2 && newest > complete
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	o.waitIdle(t, "vanish")

	p := checkStream(t, o, "vanish", true, true, 2)
	last := p.segments[len(p.segments)-1]
	require.Less(t, last.duration, 2.0, "the cut-short segment has its real duration")
	require.Greater(t, last.duration, 0.0)
	_, body := httpGet(t, o.base+"/live/vanish/index.m3u8")
	require.NotContains(t, string(body), "GAP")
}

// TestShutdownFinishesOpenSegment cancels the origin while a publisher is mid-segment: Run
// returns only after the open segment was finished (its last chunk emitted), so nothing that
// peers already hold chunks of is left incomplete.
func TestShutdownFinishesOpenSegment(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	cfg, _ := testConfig(t)
	o, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	defer cancel()

	pubCtx, stopPub := context.WithCancel(context.Background())
	defer stopPub()
	go publish(pubCtx, "rtsp://"+o.RTSPAddr().String()+"/drain", publishOpts{video: true, audio: true, seconds: 20}) //nolint:errcheck

	var st *stream
	require.Eventually(t, func() bool {
		var ok bool
		st, ok = o.lookup("drain")
		if !ok {
			return false
		}
		newest, ok1 := st.window.Newest()
		complete, ok2 := st.window.NewestComplete()
		return ok1 && ok2 && newest > complete
	}, 15*time.Second, 10*time.Millisecond, "wait for a segment in progress")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	newest, _ := st.window.Newest()
	complete, ok := st.window.NewestComplete()
	require.True(t, ok)
	require.Equal(t, newest, complete, "the segment in progress was finished on shutdown")
}
