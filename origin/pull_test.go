package origin

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// relayServer stands in for an IP camera: an RTSP server on loopback that ffmpeg publishes to
// and that serves the same stream to readers (the origin's puller).
type relayServer struct {
	server    *gortsplib.Server
	mu        sync.Mutex
	stream    *gortsplib.ServerStream
	publisher *gortsplib.ServerSession
}

func startRelay(t *testing.T) (*relayServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relayServer{}
	r.server = &gortsplib.Server{
		Handler:     r,
		RTSPAddress: ln.Addr().String(),
		Listen:      func(string, string) (net.Listener, error) { return ln, nil },
	}
	require.NoError(t, r.server.Start())
	t.Cleanup(r.server.Close)
	return r, "rtsp://" + ln.Addr().String()
}

func (r *relayServer) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream != nil && ctx.Session == r.publisher {
		r.stream.Close()
		r.stream, r.publisher = nil, nil
	}
}

func (r *relayServer) OnDescribe(*gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, r.stream, nil
}

func (r *relayServer) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &gortsplib.ServerStream{Server: r.server, Desc: ctx.Description}
	if err := st.Initialize(); err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, err
	}
	r.stream, r.publisher = st, ctx.Session
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *relayServer) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, r.stream, nil
}

func (r *relayServer) OnPlay(*gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (r *relayServer) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	r.mu.Lock()
	st := r.stream
	r.mu.Unlock()
	ctx.Session.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		_ = st.WritePacketRTP(medi, pkt)
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func TestPullFromRTSPServer(t *testing.T) {
	t.Parallel()
	requireFFmpeg(t)
	_, relayURL := startRelay(t)

	cfg, _ := testConfig(t)
	cfg.Pulls = map[string]string{"lobby": relayURL + "/lobby"}
	// The camera is not there yet: the puller keeps retrying, quickly for the test.
	cfg.PullBackoffMin = 50 * time.Millisecond
	cfg.PullBackoffMax = 200 * time.Millisecond
	o := startOrigin(t, cfg)

	stderr, err := publish(context.Background(), relayURL+"/lobby", publishOpts{video: true, audio: true, seconds: 4})
	require.NoError(t, err, stderr)
	// The relay closes its readers when the publisher leaves; the puller's session ends with it.
	o.waitIdle(t, "lobby")
	checkStream(t, o, "lobby", true, true, 2)
}
