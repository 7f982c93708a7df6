package origin

import (
	"errors"
	"strings"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/crowdsurf/crowdsurf/proto"
)

// rtspHandler accepts publishers (ANNOUNCE/SETUP/RECORD). The origin does not serve RTSP
// playback: viewers get HLS.
type rtspHandler struct {
	o *Origin
}

// publishSession is what the handler remembers about a publishing session between requests.
type publishSession struct {
	st   *stream
	plan *ingestPlan
}

func reject(code base.StatusCode, msg string) *base.Response {
	return &base.Response{StatusCode: code, StatusMessage: msg}
}

// OnAnnounce checks the publish key, the stream name and the codecs, then claims the stream.
func (h *rtspHandler) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	o := h.o
	log := o.log.With("remote", ctx.Conn.NetConn().RemoteAddr().String())
	if o.cfg.PublishKey != "" && !verifyPublishKey(ctx.Conn, ctx.Request, o.cfg.PublishKey) {
		if credentialsGiven(ctx.Request) {
			o.metrics.rejected.WithLabelValues("auth").Inc()
			log.Warn("publisher rejected: wrong publish key", "path", ctx.Path)
		}
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}

	name := strings.Trim(ctx.Path, "/")
	if err := proto.ValidStreamName(name); err != nil {
		o.metrics.rejected.WithLabelValues("name").Inc()
		log.Warn("publisher rejected: bad stream name", "error", err)
		return reject(base.StatusBadRequest, "Bad stream name: "+err.Error()), err
	}
	log = log.With("stream", name)

	plan, err := planIngest(ctx.Description.Medias, true)
	if err != nil {
		o.metrics.rejected.WithLabelValues("codec").Inc()
		log.Warn("publisher rejected", "error", err)
		return reject(base.StatusUnsupportedMediaType, "Unsupported Media Type: "+err.Error()), err
	}

	st, err := o.claimStream(name, ctx.Session, o.cfg.PublishKey == "")
	if errors.Is(err, ErrTooManyStreams) {
		o.metrics.rejected.WithLabelValues("full").Inc()
		log.Warn("publisher rejected: too many streams; set --publish-key, or raise --max-streams", "error", err)
		return reject(base.StatusServiceUnavailable, "Service Unavailable: "+err.Error()), err
	}
	if err != nil {
		o.metrics.rejected.WithLabelValues("busy").Inc()
		log.Warn("publisher rejected", "error", err)
		return reject(base.StatusForbidden, "Forbidden: "+err.Error()), err
	}
	ctx.Session.SetUserData(&publishSession{st: st, plan: plan})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup allows the publisher's SETUPs and turns readers away.
func (h *rtspHandler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() != gortsplib.ServerSessionStatePreRecord {
		return reject(base.StatusNotImplemented, "Not Implemented: this origin serves viewers over HLS, not RTSP"), nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

// OnRecord starts a new timeline on the stream and feeds it the session's packets.
func (h *rtspHandler) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	ps, ok := ctx.Session.UserData().(*publishSession)
	if !ok {
		return reject(base.StatusBadRequest, "Bad Request: RECORD without ANNOUNCE"), errors.New("record without announce")
	}
	sess := ctx.Session
	if err := ps.st.start(sess, ps.plan); err != nil {
		return reject(base.StatusForbidden, "Forbidden: "+err.Error()), err
	}
	if err := ps.plan.attach(sess, ps.st, sess, func(error) { go sess.Close() }); err != nil {
		ps.st.release(sess)
		return reject(base.StatusInternalServerError, "Internal Server Error: "+err.Error()), err
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSessionClose releases the stream: the open segment is finished with its real duration.
func (h *rtspHandler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	if ps, ok := ctx.Session.UserData().(*publishSession); ok {
		ps.st.release(ctx.Session)
	}
}

func credentialsGiven(req *base.Request) bool {
	_, ok := req.Header["Authorization"]
	return ok
}

// verifyPublishKey accepts any user name with the publish key as password. Digest
// authentication hashes the user name in, so it is taken from the request itself.
func verifyPublishKey(conn *gortsplib.ServerConn, req *base.Request, key string) bool {
	user := "publisher"
	if v, ok := req.Header["Authorization"]; ok {
		var a headers.Authorization
		if err := a.Unmarshal(v); err == nil && a.Username != "" {
			user = a.Username
		}
	}
	return conn.VerifyCredentials(req, user, key)
}

// OnPacketsLost counts RTP loss (UDP publishers) instead of gortsplib's default log.Printf.
func (h *rtspHandler) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	h.o.metrics.packetsLost.Add(float64(ctx.Lost))
	h.o.log.Debug("RTP packets lost", "stream", sessionStream(ctx.Session), "lost", ctx.Lost)
}

// OnDecodeError counts malformed RTP/RTCP instead of gortsplib's default log.Printf.
func (h *rtspHandler) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	h.o.metrics.mediaErrors.Inc()
	h.o.log.Debug("RTP decode error", "stream", sessionStream(ctx.Session), "error", ctx.Error)
}

func sessionStream(s *gortsplib.ServerSession) string {
	if ps, ok := s.UserData().(*publishSession); ok {
		return ps.st.name
	}
	return ""
}
