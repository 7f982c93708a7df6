package testcard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

const (
	testUser = "publisher"
	testPass = "s3cret-key"
)

// receivedAU is one access unit as the RTSP server saw it.
type receivedAU struct {
	at  time.Time
	ts  uint32
	idr bool
}

// recordServer is an in-process RTSP server on loopback that accepts one
// publisher (ANNOUNCE/SETUP/RECORD, with credentials) and records what
// arrives: the announced description and every decoded access unit.
type recordServer struct {
	srv  *gortsplib.Server
	addr string

	mu        sync.Mutex
	announced []*description.Session
	video     []receivedAU
	audio     []receivedAU
}

func startRecordServer(t *testing.T, addr string) *recordServer {
	t.Helper()
	s := &recordServer{}
	s.srv = &gortsplib.Server{Handler: s, RTSPAddress: addr}
	require.NoError(t, s.srv.Start())
	s.addr = s.srv.NetListener().Addr().String()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *recordServer) url() string { return "rtsp://" + s.addr + "/demo" }

func (s *recordServer) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	if !ctx.Conn.VerifyCredentials(ctx.Request, testUser, testPass) {
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	s.mu.Lock()
	s.announced = append(s.announced, ctx.Description)
	s.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (s *recordServer) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

func (s *recordServer) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	desc := ctx.Session.AnnouncedDescription()
	var videoFormat *format.H264
	videoMedia := desc.FindFormat(&videoFormat)
	var audioFormat *format.MPEG4Audio
	audioMedia := desc.FindFormat(&audioFormat)
	if videoMedia == nil || audioMedia == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, errors.New("want H.264 and AAC")
	}
	videoDec, err := videoFormat.CreateDecoder()
	if err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	audioDec, err := audioFormat.CreateDecoder()
	if err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}

	ctx.Session.OnPacketRTP(videoMedia, videoFormat, func(pkt *rtp.Packet) {
		au, err := videoDec.Decode(pkt)
		if err != nil {
			return // more packets needed for this access unit
		}
		s.mu.Lock()
		s.video = append(s.video, receivedAU{at: time.Now(), ts: pkt.Timestamp, idr: h264.IsRandomAccess(au)})
		s.mu.Unlock()
	})
	ctx.Session.OnPacketRTP(audioMedia, audioFormat, func(pkt *rtp.Packet) {
		aus, err := audioDec.Decode(pkt)
		if err != nil {
			return
		}
		s.mu.Lock()
		for i := range aus {
			s.audio = append(s.audio, receivedAU{at: time.Now(), ts: pkt.Timestamp + uint32(i*1024)})
		}
		s.mu.Unlock()
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

type received struct {
	announced    []*description.Session
	video, audio []receivedAU
}

func (s *recordServer) snapshot() received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return received{
		announced: append([]*description.Session(nil), s.announced...),
		video:     append([]receivedAU(nil), s.video...),
		audio:     append([]receivedAU(nil), s.audio...),
	}
}

// mediaSpan is the media time between the first and last access unit.
func mediaSpan(aus []receivedAU, clockRate int64) time.Duration {
	if len(aus) < 2 {
		return 0
	}
	ticks := int64(int32(aus[len(aus)-1].ts - aus[0].ts))
	return time.Duration(ticks) * time.Second / time.Duration(clockRate)
}

// runPublisher starts a Publisher and returns a function that stops it and
// waits for Run to return.
func runPublisher(t *testing.T, cfg Config) (stop func() error) {
	t.Helper()
	p, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				runErr = errors.New("Run did not return within 5 s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// requireRealTime checks that access units were not sent faster than real
// time (beyond a small allowance for scheduling jitter) and not much slower.
// Each access unit's offset is its arrival time minus its media time; a
// real-time sender keeps the offset constant (plus jitter), a sender running
// ahead makes it shrink. The reference is the median offset of the first few
// access units, so that one late packet at the start does not decide.
func requireRealTime(t *testing.T, aus []receivedAU, clockRate int64) {
	t.Helper()
	const allowance = 250 * time.Millisecond
	require.GreaterOrEqual(t, len(aus), 10)
	first := aus[0]
	offset := func(au receivedAU) time.Duration {
		media := time.Duration(int64(int32(au.ts-first.ts))) * time.Second / time.Duration(clockRate)
		return au.at.Sub(first.at) - media
	}
	head := make([]time.Duration, 0, 7)
	for _, au := range aus[:7] {
		head = append(head, offset(au))
	}
	slices.Sort(head)
	ref := head[len(head)/2]

	for i, au := range aus {
		require.GreaterOrEqual(t, offset(au), ref-allowance,
			"access unit %d arrived %v ahead of real time", i, ref-offset(au))
	}
	require.LessOrEqual(t, offset(aus[len(aus)-1]), ref+time.Second, "publisher fell far behind real time")
}

func requireIncreasing(t *testing.T, aus []receivedAU, what string) {
	t.Helper()
	for i := 1; i < len(aus); i++ {
		require.Positive(t, int32(aus[i].ts-aus[i-1].ts), "%s access unit %d: RTP timestamp did not increase", what, i)
	}
}

func TestPublisherStreamsClipInRealTime(t *testing.T) {
	t.Parallel()
	srv := startRecordServer(t, "127.0.0.1:0")
	clip := loadClip(t)
	stop := runPublisher(t, Config{URL: srv.url(), User: testUser, Pass: testPass})

	require.Eventually(t, func() bool {
		return mediaSpan(srv.snapshot().video, ClockRate) >= 2500*time.Millisecond
	}, 15*time.Second, 20*time.Millisecond)
	require.NoError(t, stop())
	got := srv.snapshot()

	require.Len(t, got.announced, 1)
	desc := got.announced[0]
	var videoFormat *format.H264
	require.NotNil(t, desc.FindFormat(&videoFormat), "H.264 media announced")
	require.Equal(t, clip.SPS, videoFormat.SPS, "SPS in the SDP")
	require.Equal(t, clip.PPS, videoFormat.PPS, "PPS in the SDP")
	var audioFormat *format.MPEG4Audio
	require.NotNil(t, desc.FindFormat(&audioFormat), "AAC media announced")
	require.Equal(t, 48000, audioFormat.Config.SampleRate)

	require.True(t, got.video[0].idr, "first access unit is an IDR")
	idrs := 0
	for _, au := range got.video {
		if au.idr {
			idrs++
		}
	}
	require.GreaterOrEqual(t, idrs, 3, "one IDR per second over 2.5 s")
	requireIncreasing(t, got.video, "video")
	requireIncreasing(t, got.audio, "audio")
	require.NotEmpty(t, got.audio)
	requireRealTime(t, got.video, ClockRate)
	requireRealTime(t, got.audio, 48000)
}

func TestPublisherLoopsWithContinuousTimestamps(t *testing.T) {
	t.Parallel()
	srv := startRecordServer(t, "127.0.0.1:0")
	clip := loadClip(t).Cut(320 * time.Millisecond) // 8 frames, 15 AAC frames
	const loops = 3
	stop := runPublisher(t, Config{URL: srv.url(), User: testUser, Pass: testPass, Clip: clip})

	require.Eventually(t, func() bool {
		got := srv.snapshot()
		return len(got.video) > loops*len(clip.Video) && len(got.audio) > loops*len(clip.Audio)
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, stop())
	got := srv.snapshot()

	// Over TCP nothing is lost, so every step, including the ones over a
	// loop boundary, is exactly one frame.
	for i := 1; i < len(got.video); i++ {
		require.Equal(t, int32(clip.FrameTicks), int32(got.video[i].ts-got.video[i-1].ts), "video step %d", i)
		require.Equal(t, i%len(clip.Video) == 0, got.video[i].idr, "video access unit %d", i)
	}
	for i := 1; i < len(got.audio); i++ {
		require.Equal(t, int32(1024), int32(got.audio[i].ts-got.audio[i-1].ts), "audio step %d", i)
	}
	requireRealTime(t, got.video, ClockRate)
}

func TestPublisherReconnectsAfterServerRestart(t *testing.T) {
	t.Parallel()
	first := startRecordServer(t, "127.0.0.1:0")
	logs := &syncBuffer{}
	stop := runPublisher(t, Config{
		URL: first.url(), User: testUser, Pass: testPass,
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	require.Eventually(t, func() bool { return len(first.snapshot().video) >= 5 }, 10*time.Second, 10*time.Millisecond)

	first.srv.Close()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "reconnecting") },
		10*time.Second, 10*time.Millisecond, "the publisher logs the lost session")

	second := startRecordServer(t, first.addr)
	require.Eventually(t, func() bool {
		got := second.snapshot()
		return len(got.announced) == 1 && len(got.video) >= 5 && len(got.audio) >= 5
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, stop())

	got := second.snapshot()
	require.True(t, got.video[0].idr, "a new session starts with an IDR")
	requireIncreasing(t, got.video, "video")
}

func TestPublisherStopsPromptlyWhileRetrying(t *testing.T) {
	t.Parallel()
	// A loopback port with nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	logs := &syncBuffer{}
	stop := runPublisher(t, Config{
		URL:  "rtsp://" + addr + "/demo",
		User: testUser, Pass: testPass,
		RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "reconnecting") >= 3 },
		10*time.Second, 10*time.Millisecond, "failed connects are retried")
	require.NotContains(t, logs.String(), testPass)
	require.NoError(t, stop())
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: ""},
		{URL: "http://127.0.0.1:8554/demo"},
		{URL: "rtsp:///demo"},
		{URL: "rtsp://127.0.0.1:8554/demo", Transport: "sctp"},
		{URL: "::not a url"},
	} {
		t.Run(fmt.Sprintf("%+v", cfg.URL+" "+cfg.Transport), func(t *testing.T) {
			_, err := New(cfg)
			require.ErrorIs(t, err, ErrBadConfig)
		})
	}
}

func TestNewDefaultsToEmbeddedClipOverTCP(t *testing.T) {
	p, err := New(Config{URL: "rtsp://127.0.0.1:8554/demo"})
	require.NoError(t, err)
	require.Same(t, loadClip(t), p.Clip())
	require.Equal(t, TransportTCP, p.cfg.Transport)
	require.Equal(t, gortsplib.ProtocolTCP, p.protocol)
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
