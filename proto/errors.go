package proto

import "errors"

var (
	// ErrMalformed means the bytes do not form a valid message or frame.
	ErrMalformed = errors.New("malformed")
	// ErrTooLarge means a length field exceeds the protocol's maximum; nothing was allocated for it.
	ErrTooLarge = errors.New("too large")
	// ErrUnsupportedVersion means a frame or peer speaks a protocol version we do not.
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
	// ErrBadSignature means a chunk's signature does not verify against the origin's key: the
	// chunk was forged or corrupted and must be neither stored, forwarded nor served.
	ErrBadSignature = errors.New("bad chunk signature")
	// ErrHashMismatch means a chunk's data does not match the hash its signature covers.
	ErrHashMismatch = errors.New("chunk data does not match its hash")
	// ErrBadStreamName means a stream name is empty, too long or has characters outside [A-Za-z0-9._-].
	ErrBadStreamName = errors.New("bad stream name")
)
