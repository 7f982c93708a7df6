// Package trackerclient talks to the tracker's HTTP API: peers announce, the origin registers its
// stream. It links no NATS: a viewer's build imports it. (The origin's NATS writer is
// tracker/registrar.)
package trackerclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/crowdsurf/crowdsurf/proto"
)

// Sentinel errors an APIError matches with errors.Is, by HTTP status.
var (
	// ErrUnknownStream means the tracker knows no such stream (404): the origin has not
	// registered it, or its registration expired.
	ErrUnknownStream = errors.New("unknown stream")
	// ErrBadRequest means the tracker rejected the request's content (400).
	ErrBadRequest = errors.New("rejected by tracker")
	// ErrRateLimited means the tracker wants this source to slow down (429).
	ErrRateLimited = errors.New("rate limited by tracker")
	// ErrConflict means the stream name is registered under several keys and the request named
	// none (409).
	ErrConflict = errors.New("stream registered under several keys")
	// ErrForbidden means the tracker refused a claim (403): an announce under a peer id without
	// its secret or for an address not on this host, or a registration that is not signed by
	// its key or is older than the one the tracker holds.
	ErrForbidden = errors.New("refused by tracker")
	// ErrUnauthorized means the tracker wants its register token (401).
	ErrUnauthorized = errors.New("tracker register token missing or wrong")
	// ErrUnavailable means the tracker could not serve the request now (5xx); retry later.
	ErrUnavailable = errors.New("tracker unavailable")
)

// APIError is an error answer of the tracker, carrying its message.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("tracker: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Is matches the sentinel errors by status.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnknownStream:
		return e.Status == http.StatusNotFound
	case ErrBadRequest:
		return e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrUnavailable:
		return e.Status >= 500
	}
	return false
}

// maxAnswer bounds what the client reads from the tracker.
const maxAnswer = 4 << 20

// Client calls the tracker's HTTP API.
type Client struct {
	// BaseURL is the tracker's URL, e.g. "http://127.0.0.1:7070".
	BaseURL string
	// HTTPClient is used for requests; nil means http.DefaultClient. Callers bound each call
	// with ctx.
	HTTPClient *http.Client
	// RegisterToken is sent as a bearer token with RegisterStream when set.
	RegisterToken string
}

// Announce tells the tracker about this peer and returns its neighbour candidates.
func (c *Client) Announce(ctx context.Context, req proto.AnnounceRequest) (proto.AnnounceResponse, error) {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, proto.TrackerAnnouncePath, req, &raw); err != nil {
		return proto.AnnounceResponse{}, err
	}
	// What a peer acts on is bounded (proto.ParseAnnounceResponse): the tracker is not trusted
	// to keep it so.
	return proto.ParseAnnounceResponse(raw)
}

// RegisterStream registers (or renews) a stream over HTTP. reg must be signed with the stream's
// key (proto.StreamRegistration.Sign), freshly each time: the tracker refuses a registration that
// is not newer than the last. Repeat it at least every proto.TrackerStreamTTL/3, or the
// registration expires.
func (c *Client) RegisterStream(ctx context.Context, reg proto.StreamRegistration) error {
	return c.do(ctx, http.MethodPost, proto.TrackerStreamsPath, reg, &proto.StreamStatus{})
}

// Streams lists the registered streams with their swarms.
func (c *Client) Streams(ctx context.Context) ([]proto.StreamStatus, error) {
	var list []proto.StreamStatus
	err := c.do(ctx, http.MethodGet, proto.TrackerStreamsPath, nil, &list)
	return list, err
}

// Stream returns one swarm: the stream name under key (the watch link's), or with key ""
// the name's only registration (ErrConflict when several keys registered it).
func (c *Client) Stream(ctx context.Context, name, key string) (proto.StreamStatus, error) {
	var st proto.StreamStatus
	path := proto.TrackerStreamsPath + "/" + url.PathEscape(name)
	if key != "" {
		path += "?key=" + url.QueryEscape(key)
	}
	err := c.do(ctx, http.MethodGet, path, nil, &st)
	return st, err
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("tracker %s %s: encoding request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("tracker %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.RegisterToken != "" && method == http.MethodPost && path == proto.TrackerStreamsPath {
		req.Header.Set("Authorization", "Bearer "+c.RegisterToken)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("tracker %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("tracker %s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e proto.ErrorResponse
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("tracker %s %s: decoding answer: %w", method, path, err)
	}
	return nil
}
