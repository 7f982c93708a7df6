package proto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
)

// SignatureSize is the size of an Ed25519 signature.
const SignatureSize = ed25519.SignatureSize

// signContext separates chunk signatures from anything else the origin key might ever sign.
const signContext = "crowdsurf chunk v1\x00"

// signedMaxLen is the most bytes a signature ever covers, so Verify allocates once.
const signedMaxLen = len(signContext) + chunkFixedLen + MaxStreamNameLen + segmentInfoLen

// Sign fills in c.Hash from c.Data and signs the chunk with the origin's private key. It then
// encodes the frame once, into a new buffer that Data points into from now on: every push and
// HTTP response sends that buffer (Frame), and the chunk's bytes exist once.
func (c *Chunk) Sign(key ed25519.PrivateKey) {
	c.Hash = sha256.Sum256(c.Data)
	msg := c.appendSigned(append(make([]byte, 0, signedMaxLen), signContext...))
	copy(c.Sig[:], ed25519.Sign(key, msg))
	c.encodeFrame()
}

// Verify checks that c.Data matches its hash and that the origin signed the header and hash.
// Every receiver calls it before it stores, forwards or serves a chunk.
func (c *Chunk) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key of %d bytes", ErrBadSignature, len(pub))
	}
	if sha256.Sum256(c.Data) != c.Hash {
		return fmt.Errorf("chunk %s: %w", c.ID, ErrHashMismatch)
	}
	if err := c.checkFields(); err != nil {
		return fmt.Errorf("chunk %s: %w", c.ID, err)
	}
	msg := c.appendSigned(append(make([]byte, 0, signedMaxLen), signContext...))
	if !ed25519.Verify(pub, msg, c.Sig[:]) {
		return fmt.Errorf("chunk %s: %w", c.ID, ErrBadSignature)
	}
	return nil
}

// Identical reports whether c and o are the same chunk, field for field: every byte the signature
// covers, the signature and the data. A chunk identical to one that passed Verify is authentic
// without a second signature check, which is what a node does with the duplicate copies that
// repair and pushes bring (and what the load test's shared cache does across its nodes).
func (c *Chunk) Identical(o *Chunk) bool {
	return c.ID == o.ID && c.Flags == o.Flags && c.Hash == o.Hash && c.Sig == o.Sig &&
		c.Info.ChunkCount == o.Info.ChunkCount && c.Info.ByteLength == o.Info.ByteLength &&
		c.Info.Duration == o.Info.Duration && c.Info.ProgramDateTime.Equal(o.Info.ProgramDateTime) &&
		bytes.Equal(c.Data, o.Data)
}
