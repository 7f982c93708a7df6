package tracker

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v5"

	"github.com/crowdsurf/crowdsurf/proto"
)

// An announce answer is mostly the same for every peer of a stream: the origin, the signed
// registration, the stripes and the interval. That part is encoded once per registration
// (streamEntry.answerMiddle) and each answer encodes only its neighbours around it.

const (
	answerPrefix = `{"neighbours":[]`
	answerSuffix = `,"listed":false}`
)

// encodeAnswerMiddle returns what the JSON of answer holds between its neighbours and its
// listed field, or nil when the encoding does not have that shape (a field added to
// proto.AnnounceResponse after Listed): then answers are encoded whole.
func encodeAnswerMiddle(answer proto.AnnounceResponse) []byte {
	answer.Neighbours, answer.Listed = []proto.PeerInfo{}, false
	b, err := json.Marshal(answer)
	if err != nil || !bytes.HasPrefix(b, []byte(answerPrefix)) || !bytes.HasSuffix(b, []byte(answerSuffix)) {
		return nil
	}
	return b[len(answerPrefix) : len(b)-len(answerSuffix)]
}

// answerMiddle is the stream's encodeAnswerMiddle, made on first use. Call on the view's
// goroutine; the bytes never change afterwards (a new registration is a new entry).
func (e *streamEntry) answerMiddle(answer proto.AnnounceResponse) []byte {
	if !e.middleDone {
		e.middle, e.middleDone = encodeAnswerMiddle(answer), true
	}
	return e.middle
}

// appendAnswer appends the JSON of answer, whose constant part is middle (answerMiddle of the
// same stream), as encoding/json would write it. encoded, when not nil, is answer.Neighbours
// as a JSON array.
func appendAnswer(b []byte, answer proto.AnnounceResponse, middle, encoded []byte) ([]byte, error) {
	if encoded == nil {
		neighbours := answer.Neighbours
		if neighbours == nil {
			neighbours = []proto.PeerInfo{}
		}
		var err error
		if encoded, err = json.Marshal(neighbours); err != nil {
			return nil, err
		}
	}
	b = append(b, `{"neighbours":`...)
	b = append(b, encoded...)
	b = append(b, middle...)
	b = append(b, `,"listed":`...)
	b = strconv.AppendBool(b, answer.Listed)
	return append(b, '}'), nil
}

// writeAnswer sends answer, encoding only its neighbours when middle is known, and not even
// those when encoded (their JSON array) is known.
func writeAnswer(c *echo.Context, answer proto.AnnounceResponse, middle, encoded []byte) error {
	if middle == nil {
		return c.JSON(http.StatusOK, answer)
	}
	b, err := appendAnswer(make([]byte, 0, 64+len(middle)+max(len(encoded), 160*len(answer.Neighbours))), answer, middle, encoded)
	if err != nil {
		return c.JSON(http.StatusOK, answer)
	}
	b = append(b, '\n')
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(b)))
	c.Response().WriteHeader(http.StatusOK)
	_, err = c.Response().Write(b)
	return err
}
