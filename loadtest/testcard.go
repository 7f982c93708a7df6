package loadtest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crowdsurf/crowdsurf/internal/testcard"
	"github.com/crowdsurf/crowdsurf/origin"
	"github.com/crowdsurf/crowdsurf/proto"
)

// testcardSource is the real media path: the built-in test card published over RTSP into a real
// origin, which segments, chunks and signs it and serves its HTTP endpoint. The origin's own mesh
// is off: its chunks go to the load test's root node, so that the root sits on the load test's
// network (simulated or UDP) like in the synthetic case.
type testcardSource struct {
	origin   *origin.Origin
	pub      *testcard.Publisher
	key      ed25519.PublicKey
	produced atomic.Int64
	complete atomic.Bool
	cancel   func()
}

func newTestcardSource(cfg Config, key ed25519.PrivateKey, onChunk func(*proto.Chunk, time.Time)) (source, error) {
	rtspLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loadtest: RTSP listener: %w", err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = rtspLn.Close()
		return nil, fmt.Errorf("loadtest: origin HTTP listener: %w", err)
	}
	o, err := origin.New(origin.Config{
		RTSPListener:    rtspLn,
		UDPRTPAddr:      "-",
		HTTPListener:    httpLn,
		MeshAddr:        "-",
		Key:             key,
		SegmentDuration: cfg.Segment,
		Logger:          cfg.Logger,
		Registry:        prometheus.NewRegistry(),
	})
	if err != nil {
		_ = rtspLn.Close()
		_ = httpLn.Close()
		return nil, fmt.Errorf("loadtest: origin: %w", err)
	}
	s := &testcardSource{origin: o, key: key.Public().(ed25519.PublicKey)}
	s.cancel = o.Subscribe(func(c *proto.Chunk) {
		if c.ID.Stream != streamName {
			return
		}
		s.produced.Add(int64(len(c.Data)))
		if c.Last() {
			s.complete.Store(true)
		}
		onChunk(c, time.Now())
	})
	s.pub, err = testcard.New(testcard.Config{
		URL:    "rtsp://" + rtspLn.Addr().String() + "/" + streamName,
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("loadtest: test card publisher: %w", err)
	}
	return s, nil
}

func (s *testcardSource) PublicKey() ed25519.PublicKey { return s.key }
func (s *testcardSource) HTTPURL() string              { return "http://" + s.origin.HTTPAddr().String() }
func (s *testcardSource) HTTPBytes() int64             { return int64(s.origin.Stats().BytesHTTP) }
func (s *testcardSource) StreamBytes() int64           { return s.produced.Load() }
func (s *testcardSource) ready() bool                  { return s.complete.Load() }

// Run runs the origin and the publisher until ctx ends.
func (s *testcardSource) Run(ctx context.Context) error {
	defer s.cancel()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var originErr, pubErr error
	wg.Go(func() {
		originErr = s.origin.Run(ctx)
		cancel()
	})
	wg.Go(func() { pubErr = s.pub.Run(ctx) })
	wg.Wait()
	if errors.Is(pubErr, context.Canceled) {
		pubErr = nil
	}
	return errors.Join(originErr, pubErr)
}
