package peer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Application error codes we close connections and streams with.
const (
	codeGoodbye   quic.ApplicationErrorCode = 0 // orderly leave
	codeViolation quic.ApplicationErrorCode = 1 // bad chunk, oversized frame, malformed message
	codeRejected  quic.ApplicationErrorCode = 2 // wrong stream, version, duplicate, banned, full
	codeLate      quic.StreamErrorCode      = 1 // a push abandoned past its deadline
)

const (
	handshakeTimeout = 4 * time.Second
	pushDeadline     = time.Second // a chunk push that takes longer is abandoned
	// pushWorkers bounds the chunk streams a connection writes at once. Pushers start when chunks
	// are queued and end when the queue is empty, so an idle neighbour holds no goroutine for them.
	pushWorkers = 4
	// pushQueueLen bounds the chunks queued for one neighbour. A push waits at most pushDeadline
	// in the queue, and 128 chunks of 8 KiB are 1 s of an 8 Mbit/s stream, all four stripes.
	// The queue is allocated whole when a neighbour connects (at 256 it took 9.5 KB of every
	// neighbour, 120 KB of a viewer's heap), and a chunk it drops is repaired, so it is no
	// longer than that. The control queue stays longer: overflowing it closes the connection.
	pushQueueLen    = 128
	controlQueueLen = 256
	// maxControlBatch bounds the bytes of queued control messages written at once.
	maxControlBatch  = 16 << 10
	chunkReadTimeout = 5 * time.Second
	// maxUniStreams is how many chunk streams a neighbour may have open towards us at once
	// (their credit goes back in batches as they end: credit.go); a sender has pushWorkers in
	// flight.
	maxUniStreams = 32
	// maxChunkReads bounds the chunk streams of one connection read at once, hence its
	// goroutines and buffers; the others wait in QUIC, bounded by maxUniStreams and the
	// connection's flow-control window (sized to this many chunk frames).
	maxChunkReads = 8
	// controlFrameTimeout is how long the rest of a control frame may take once its first byte
	// came. Between frames a neighbour may stay quiet (QUIC's idle timeout and our heartbeats
	// judge that); a frame that promises 65,535 bytes and sends 10 is not waited on for ever.
	controlFrameTimeout = 2 * time.Second
)

// ErrFrameTimeout means a control frame started and did not finish within controlFrameTimeout.
var ErrFrameTimeout = errors.New("control frame incomplete")

// ErrProtocol means a neighbour broke the mesh protocol; it is disconnected and banned.
var ErrProtocol = errors.New("mesh protocol violation")

// Handshake refusals that are nobody's fault (unlike ErrProtocol): callers tell them apart with
// errors.Is. A version mismatch is proto.ErrUnsupportedVersion.
var (
	// ErrOtherStream means the remote watches another stream (a stale tracker answer, a reused port).
	ErrOtherStream = errors.New("peer watches another stream")
	// ErrStripeCount means the remote splits the stream into another number of stripes: one of
	// us was started with the wrong --stripes.
	ErrStripeCount = errors.New("peer uses another stripe count")
	// ErrSelf means we dialled our own address (the tracker listed us as our own candidate).
	ErrSelf = errors.New("connected to ourselves")
)

// ErrFalseOrigin means a neighbour claimed depth 0, the origin's place in every stripe tree,
// without proving it holds the origin's key (see meshTLS).
var ErrFalseOrigin = fmt.Errorf("%w: depth 0 claimed by a node that is not the origin", ErrProtocol)

// checkDepthClaim checks what a neighbour says of its depths (HELLO, STATUS): the origin is depth
// 0 on every stripe and nobody else is ever depth 0.
func checkDepthClaim(depths []uint8, origin bool) error {
	for _, d := range depths {
		if (d == 0) != origin {
			if origin {
				return fmt.Errorf("%w: the origin claims depth %d", ErrProtocol, d)
			}
			return ErrFalseOrigin
		}
	}
	return nil
}

// neighbour is one QUIC connection to another node. The fields above the line are fixed at the
// handshake; the loop-owned ones are touched only by the node loop; the queues are the way other
// goroutines talk to the connection.
type neighbour struct {
	id       uint64 // local, never reused
	conn     *quic.Conn
	ctrl     *quic.Stream
	peerID   [16]byte
	addr     string // remote UDP address; a node dials and listens on one socket, so this is its mesh address
	ip       netip.Addr
	dialAddr string // the address we dialled, when we dialled
	dialled  bool
	link     linkKind // how the connection came about (nat.go)
	origin   bool     // the remote is a root (depth 0 on every stripe)
	hello    *proto.Hello

	// loop-owned
	depths    []uint8
	freeSlots int
	// version is the protocol version negotiated in HELLO; stripeSlots the free child slots per
	// stripe it last told us (STATUS_SLOTS, version 2), nil while it has not.
	version     uint16
	stripeSlots []uint8
	has         chunkSet // what it holds: pushed to us, pushed by us, or claimed in a HAVE
	outstanding int
	falseHaves  int // HAVEs with claims the signed timeline refutes (judgeClaim)
	withheld    int // times it was our parent on a stripe and pushed nothing (maintainStripes)
	connectedAt time.Time
	gone        bool
	lastSent    time.Time // when the loop last queued a control message or a chunk for it
	rtt         time.Duration
	rttAt       int    // loop tick rtt was read at
	idHex       string // peerID in hex, made once (hexID)
	// Its share of our repair budget (repairshare.go): when it last sent a REQUEST, and the
	// repair bytes it was given over about the last second, as of repairAt.
	askedAt     time.Time
	repairBytes float64
	repairAt    time.Time

	// lastHeard is when its last control message or chunk arrived (unix ns), set by the reading
	// goroutines at read time, so a busy loop does not mistake its own lag for the peer's silence.
	lastHeard atomic.Int64
	// delivered is set once a verified chunk came from it: a neighbour that never delivered
	// anything is the first to go when room is needed (evictUseless).
	delivered atomic.Bool

	ctrlQueue  chan proto.Message
	writerDone chan struct{}
	pushQueue  chan queuedPush
	// startPusher runs one more pusher for the connection (set before the loop first sees it).
	startPusher func()
	pushMu      sync.Mutex // guards pushers: the loop starts them, each ends itself
	pushers     int        // pushers running, at most pushWorkers

	mu        sync.Mutex // guards cancelled: the loop adds, pushers check
	cancelled map[chunkKey]struct{}

	credit streamCredit // finished chunk streams whose credit goes back in a batch (credit.go)
}

// hexID is the neighbour's peer id in hex, as Stats and the tracker name parents.
func (nb *neighbour) hexID() string {
	if nb.idHex == "" {
		nb.idHex = hex.EncodeToString(nb.peerID[:])
	}
	return nb.idHex
}

func (nb *neighbour) String() string { return fmt.Sprintf("%x@%s", nb.peerID[:4], nb.addr) }

// send queues a control message without blocking the loop. A neighbour that cannot take a
// few hundred queued messages (seconds of them) is hopelessly slow; it is cut off.
func (nb *neighbour) send(m proto.Message) {
	nb.lastSent = time.Now()
	select {
	case nb.ctrlQueue <- m:
	default:
		_ = nb.conn.CloseWithError(codeRejected, "control queue overflow")
	}
}

// queuedPush is a chunk waiting for a pusher, with the time it was queued.
type queuedPush struct {
	c  *proto.Chunk
	at time.Time
}

// push queues a chunk for pushing; when the queue is full the chunk is dropped and the neighbour
// will repair it (or fall back), which beats stalling everything behind a slow link.
func (nb *neighbour) push(c *proto.Chunk) bool {
	select {
	case nb.pushQueue <- queuedPush{c: c, at: time.Now()}:
		// A chunk tells the receiver we are alive as well as a STATUS does (it stamps
		// lastHeard on arrival), so it spares the heartbeat.
		nb.lastSent = time.Now()
		nb.pushMu.Lock()
		start := nb.pushers < pushWorkers && nb.startPusher != nil
		if start {
			nb.pushers++
		}
		nb.pushMu.Unlock()
		if start {
			nb.startPusher()
		}
		return true
	default:
		return false
	}
}

// pusherIdle ends a pusher that found the queue empty, unless a chunk was queued since: push
// counts pushers under the same lock after it queued, so a chunk is never left without one.
func (nb *neighbour) pusherIdle() bool {
	nb.pushMu.Lock()
	defer nb.pushMu.Unlock()
	if len(nb.pushQueue) > 0 {
		return false
	}
	nb.pushers--
	return true
}

// pusherGone ends a pusher whose connection or node stopped.
func (nb *neighbour) pusherGone() {
	nb.pushMu.Lock()
	nb.pushers--
	nb.pushMu.Unlock()
}

// maxCancelled bounds a neighbour's CANCELs kept (neighbour.cancel): a few segments' chunks.
const maxCancelled = 4096

func (nb *neighbour) cancel(k chunkKey) {
	nb.mu.Lock()
	if len(nb.cancelled) < maxCancelled {
		nb.cancelled[k] = struct{}{}
	}
	nb.mu.Unlock()
}

// dropCancelledBelow forgets CANCELs of segments before seq: chunks we will never push again.
// Without it a CANCEL for a chunk we did not push stayed, and the set (bounded) filled up.
func (nb *neighbour) dropCancelledBelow(seq uint64) {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	maps.DeleteFunc(nb.cancelled, func(k chunkKey, _ struct{}) bool { return k.seq < seq })
}

func (nb *neighbour) takeCancelled(k chunkKey) bool {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	if _, ok := nb.cancelled[k]; ok {
		delete(nb.cancelled, k)
		return true
	}
	return false
}

// writeMessage writes one control message frame.
func writeMessage(w io.Writer, m proto.Message) error {
	_, err := w.Write(m.Append(make([]byte, 0, 64)))
	return err
}

// readMessage reads one control message frame with proto.ReadMessage, which allocates only what
// the frame's header says (never over proto.MaxMessageSize). A frame that does not parse is the
// neighbour's fault (ErrProtocol); an I/O error is not.
func readMessage(r io.Reader) (proto.Message, error) {
	return readMessageStarted(r, nil)
}

// readMessageStarted is readMessage calling started once the frame's first byte has arrived.
func readMessageStarted(r io.Reader, started func()) (proto.Message, error) {
	m, err := proto.ReadMessage(&firstByteHook{r: r, hook: started})
	if err != nil && isMalformed(err) {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return m, err
}

// isMalformed tells the decoding errors of proto (the sender's fault) from I/O errors.
func isMalformed(err error) bool {
	return errors.Is(err, proto.ErrMalformed) || errors.Is(err, proto.ErrTooLarge) ||
		errors.Is(err, proto.ErrUnsupportedVersion) || errors.Is(err, proto.ErrBadStreamName) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// firstByteHook calls hook once, when the first byte has been read from r.
type firstByteHook struct {
	r    io.Reader
	hook func()
}

func (f *firstByteHook) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && f.hook != nil {
		f.hook()
		f.hook = nil
	}
	return n, err
}

// handshake exchanges HELLOs on the control stream and checks the remote's: same stream, a common
// version, a sane stripe count.
func (n *Node) handshake(nb *neighbour, dialler bool) error {
	_ = nb.ctrl.SetDeadline(time.Now().Add(handshakeTimeout))
	defer nb.ctrl.SetDeadline(time.Time{})
	local := n.localHello()
	if dialler {
		if err := writeMessage(nb.ctrl, local); err != nil {
			return fmt.Errorf("send hello: %w", err)
		}
	}
	m, err := readMessage(nb.ctrl)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	remote, ok := m.(*proto.Hello)
	if !ok {
		return fmt.Errorf("%w: first message is %s, not HELLO", ErrProtocol, m.Type())
	}
	if !dialler {
		if err := writeMessage(nb.ctrl, local); err != nil {
			return fmt.Errorf("send hello: %w", err)
		}
	}
	version, err := proto.Negotiate(local, remote)
	if err != nil {
		_ = writeMessage(nb.ctrl, &proto.Goodbye{Reason: err.Error()})
		return err
	}
	if remote.Stream != n.cfg.Stream {
		err := fmt.Errorf("%w: peer watches %q, we watch %q", ErrOtherStream, remote.Stream, n.cfg.Stream)
		_ = writeMessage(nb.ctrl, &proto.Goodbye{Reason: err.Error()})
		return err
	}
	if len(remote.Depths) != n.cfg.Stripes {
		err := fmt.Errorf("%w: peer uses %d stripes, we use %d", ErrStripeCount, len(remote.Depths), n.cfg.Stripes)
		_ = writeMessage(nb.ctrl, &proto.Goodbye{Reason: err.Error()})
		return err
	}
	if remote.PeerID == n.id {
		return ErrSelf
	}
	// Only a dialled connection can reach the origin (roots never dial), and only the origin's
	// certificate carries the watch link's key.
	nb.origin = dialler && !n.cfg.Root && isOriginConn(nb.conn, n.cfg.OriginKey)
	if err := checkDepthClaim(remote.Depths, nb.origin); err != nil {
		_ = writeMessage(nb.ctrl, &proto.Goodbye{Reason: err.Error()})
		return err
	}
	nb.hello = remote
	nb.version = version
	nb.peerID = remote.PeerID
	nb.depths = append([]uint8(nil), remote.Depths...)
	nb.freeSlots = int(remote.FreeSlots)
	return nil
}

func (n *Node) newNeighbour(conn *quic.Conn, ctrl *quic.Stream, dialled bool) *neighbour {
	nb := &neighbour{
		id:         n.nextConnID.Add(1),
		conn:       conn,
		ctrl:       ctrl,
		addr:       conn.RemoteAddr().String(),
		ip:         ipOf(conn.RemoteAddr()),
		dialled:    dialled,
		has:        newChunkSet(),
		ctrlQueue:  make(chan proto.Message, controlQueueLen),
		writerDone: make(chan struct{}),
		pushQueue:  make(chan queuedPush, pushQueueLen),
		cancelled:  make(map[chunkKey]struct{}),
	}
	nb.lastHeard.Store(time.Now().UnixNano())
	return nb
}

// dial connects to addr and hands the connection to the loop (or reports the failure).
func (n *Node) dial(ctx context.Context, addr string) {
	err := func() error {
		udp, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		if n.tr == nil {
			return errors.New("a node on a Mux listener has no socket to dial from")
		}
		dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
		conn, err := n.tr.Dial(dctx, udp, n.tlsClient, n.quicConf)
		if err != nil {
			return err
		}
		return n.setUp(ctx, conn, addr, n.dialledLink())
	}()
	if err != nil {
		n.emit(ctx, evDialFailed{addr: addr, err: err, lied: errors.Is(err, ErrProtocol)})
	}
}

// acceptLoop takes incoming connections until the listener closes.
func (n *Node) acceptLoop(ctx context.Context) {
	for {
		conn, err := n.ln.Accept(ctx)
		if err != nil {
			return
		}
		acceptedConn(conn)
		n.wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
			ctrl, err := conn.AcceptStream(hctx)
			if err != nil {
				_ = conn.CloseWithError(codeRejected, "no control stream")
				return
			}
			nb := n.newNeighbour(conn, ctrl, false)
			if n.punchedFrom(conn.RemoteAddr()) {
				nb.link = linkPunched
			}
			if err := n.handshake(nb, false); err != nil {
				n.log.Debug("inbound handshake failed", "remote", nb.addr, "error", err)
				_ = conn.CloseWithError(codeRejected, clip(err.Error()))
				return
			}
			n.startConn(ctx, nb)
		})
	}
}

// startConn registers a handshaken connection with the loop, then runs its goroutines. The loop
// sees evConnUp before any event of the connection, because the goroutines start after the loop
// took it.
func (n *Node) startConn(ctx context.Context, nb *neighbour) {
	// Pushers are started by the loop (neighbour.push), whose run the node's WaitGroup outlives.
	nb.startPusher = func() { n.wg.Go(func() { n.pusher(ctx, nb) }) }
	if !n.emit(ctx, evConnUp{nb: nb}) {
		_ = nb.conn.CloseWithError(codeGoodbye, "shutting down")
		return
	}
	n.wg.Go(func() { n.controlWriter(nb) })
	n.wg.Go(func() { n.uniAcceptor(ctx, nb) })
	n.wg.Go(func() {
		err := n.controlReader(ctx, nb)
		n.emit(ctx, evConnDown{nb: nb, err: err})
	})
}

func (n *Node) controlReader(ctx context.Context, nb *neighbour) error {
	started := func() { _ = nb.ctrl.SetReadDeadline(time.Now().Add(controlFrameTimeout)) }
	for {
		m, err := readMessageStarted(nb.ctrl, started)
		_ = nb.ctrl.SetReadDeadline(time.Time{})
		if err != nil {
			if isTimeout(err) {
				err = fmt.Errorf("%w: %w", ErrFrameTimeout, err)
				_ = nb.conn.CloseWithError(codeViolation, ErrFrameTimeout.Error())
			}
			if errors.Is(err, ErrProtocol) {
				_ = nb.conn.CloseWithError(codeViolation, clip(err.Error()))
				n.emit(ctx, evBan{nb: nb, reason: err})
			}
			_ = nb.conn.CloseWithError(codeGoodbye, "control stream ended")
			return err
		}
		nb.lastHeard.Store(time.Now().UnixNano())
		n.stats.controlReceived.add(m.Type())
		if !n.emit(ctx, evMessage{nb: nb, msg: m}) {
			return ctx.Err()
		}
	}
}

// controlWriter writes queued control messages. Whatever is queued when it wakes goes out in
// one write (HAVEs, STATUS and CANCELs of one loop pass share packets, and each packet costs a
// syscall and an ACK). It stops when the connection closes, not when the node's context ends,
// so the GOODBYE queued at shutdown still goes out.
func (n *Node) controlWriter(nb *neighbour) {
	defer close(nb.writerDone)
	buf := make([]byte, 0, 1024)
	for {
		var m proto.Message
		select {
		case <-nb.conn.Context().Done():
			return
		case m = <-nb.ctrlQueue:
		}
		buf = m.Append(buf[:0])
		n.stats.controlSent.add(m.Type())
		_, bye := m.(*proto.Goodbye)
		for !bye && len(buf) < maxControlBatch {
			select {
			case m = <-nb.ctrlQueue:
				buf = m.Append(buf)
				n.stats.controlSent.add(m.Type())
				_, bye = m.(*proto.Goodbye)
				continue
			default:
			}
			break
		}
		_ = nb.ctrl.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := nb.ctrl.Write(buf); err != nil {
			_ = nb.conn.CloseWithError(codeGoodbye, "control write failed")
			return
		}
		if bye {
			_ = nb.ctrl.Close()
			return
		}
		if cap(buf) > 4*maxControlBatch {
			buf = make([]byte, 0, 1024) // one large HAVE does not pin a large buffer
		}
	}
}

// pusher writes queued chunks, each on its own unidirectional stream, until the queue is empty.
// Up to pushWorkers run per connection (push starts them), so one slow chunk does not hold back
// the next.
func (n *Node) pusher(ctx context.Context, nb *neighbour) {
	for {
		if ctx.Err() != nil || nb.conn.Context().Err() != nil {
			nb.pusherGone()
			return
		}
		var q queuedPush
		select {
		case q = <-nb.pushQueue:
		default:
			if nb.pusherIdle() {
				return
			}
			continue
		}
		c := q.c
		if nb.takeCancelled(chunkKey{c.ID.Seq, c.ID.Index}) || n.tooOld(c.ID.Seq) {
			continue
		}
		// A chunk that waited past its deadline in our queue (our uplink is saturated) is
		// dropped: the receiver repairs or falls back, and the chunks behind it catch up.
		if time.Since(q.at) > pushDeadline {
			n.stats.pushDropped.Add(1)
			continue
		}
		if err := n.pushChunk(ctx, nb, c); err != nil {
			n.log.Debug("push failed", "peer", nb.String(), "chunk", c.ID.String(), "error", err)
		}
	}
}

// tooOld reports whether a chunk belongs to a segment older than the newest two: a player is
// past it, so pushing it only steals bandwidth from chunks that still matter.
func (n *Node) tooOld(seq uint64) bool {
	newest, ok := n.window.Newest()
	return ok && seq+2 < newest
}

func (n *Node) pushChunk(ctx context.Context, nb *neighbour, c *proto.Chunk) error {
	octx, cancel := context.WithTimeout(ctx, pushDeadline)
	defer cancel()
	s, err := nb.conn.OpenUniStreamSync(octx)
	if err != nil {
		return err
	}
	_ = s.SetWriteDeadline(time.Now().Add(pushDeadline))
	// The chunk's own buffer, the same for every child: never encoded or copied per push. quic-go
	// holds it only until Write returns.
	frame := c.Frame()
	if _, err := s.Write(frame); err != nil {
		s.CancelWrite(codeLate)
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	n.stats.bytesToPeers.Add(int64(len(frame)))
	n.metrics.bytesSent.Add(float64(len(frame)))
	return nil
}

// uniAcceptor takes the neighbour's chunk streams; each is read and verified in its own goroutine
// so verification runs on all cores and a slow stream does not block the others. At most
// maxChunkReads are read at once; the next stream is taken only when one is done.
func (n *Node) uniAcceptor(ctx context.Context, nb *neighbour) {
	reading := make(chan struct{}, maxChunkReads)
	for {
		select {
		case reading <- struct{}{}:
		case <-ctx.Done():
			return
		case <-nb.conn.Context().Done():
			return
		}
		s, err := nb.conn.AcceptUniStream(ctx)
		if err != nil {
			return
		}
		n.wg.Go(func() {
			defer func() { <-reading }()
			defer nb.credit.release(s)
			n.readChunk(ctx, nb, s)
		})
	}
}

func (n *Node) readChunk(ctx context.Context, nb *neighbour, s *quic.ReceiveStream) {
	_ = s.SetReadDeadline(time.Now().Add(chunkReadTimeout))
	// proto.ReadChunk sizes the one buffer it reads into by the frame's header, after checking
	// it: no guess, no growing, nothing allocated for a data length over the maximum, and for a
	// stream opened and left empty nothing but the header's few bytes. That buffer is the chunk
	// from now on: the window stores it and every push and HTTP response sends it.
	c, err := proto.ReadChunk(s)
	if err != nil && !isMalformed(err) {
		s.CancelRead(0)
		return // empty, abandoned by the sender (late) or the connection went away: not the peer's fault
	}
	at := time.Now()
	nb.lastHeard.Store(at.UnixNano())
	if err == nil {
		// One frame per stream: anything after it is a violation.
		var next [1]byte
		if k, _ := s.Read(next[:]); k > 0 {
			err = fmt.Errorf("%w: bytes after the chunk frame", proto.ErrMalformed)
		}
	}
	if err == nil && c.ID.Stream != n.cfg.Stream {
		err = fmt.Errorf("chunk of stream %q", c.ID.Stream)
	}
	if err == nil {
		err = n.verify(c)
	}
	if err != nil {
		n.reject(ctx, nb, fmt.Errorf("%w: %w", ErrProtocol, err))
		return
	}
	nb.delivered.Store(true)
	n.emit(ctx, evChunk{nb: nb, c: c, size: c.Len(), at: at})
}

// reject counts a bad chunk, disconnects the neighbour that sent it and has the loop ban it.
func (n *Node) reject(ctx context.Context, nb *neighbour, err error) {
	n.countRejected()
	n.log.Warn("bad chunk from peer; disconnecting and banning it", "peer", nb.String(), "error", err)
	// The IP ban first, here and not only when the loop gets to it: once the connection is
	// closed the sender may dial again at once, and its new handshake must find the ban.
	n.guard.ban(nb.ip)
	_ = nb.conn.CloseWithError(codeViolation, clip(err.Error()))
	n.emit(ctx, evBan{nb: nb, reason: err})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}
