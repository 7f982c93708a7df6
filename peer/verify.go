package peer

import (
	"crypto/ed25519"
	"sync"

	"github.com/crowdsurf/crowdsurf/proto"
)

// verify checks a chunk against the origin key. A copy of a chunk we already hold is compared
// with that verified copy instead: repairs and late pushes bring duplicates, and the signature
// check (SHA-256 of the data plus Ed25519) is a tenth of a node's CPU.
func (n *Node) verify(c *proto.Chunk) error {
	if c.ID.Stream == n.cfg.Stream {
		if held, ok := n.window.Chunk(c.ID.Seq, c.ID.Index); ok && c.Identical(held) {
			return nil
		}
	}
	if vc := n.cfg.VerifyCache; vc != nil {
		return vc.verify(c, n.cfg.OriginKey)
	}
	return c.Verify(n.cfg.OriginKey)
}

// VerifyCache lets nodes that share it check each chunk's signature once: a chunk identical, byte
// for byte, to one that verified under the same key is authentic. It exists for the load test,
// which runs hundreds of nodes in one process on a couple of cores; there every node verifying
// every chunk itself is a simulation cost no real viewer pays (each has its own CPU), and it was
// a quarter of the machine at 200 peers. Nothing is trusted that was not verified: a chunk that
// differs in any byte from the cached one is verified in full.
type VerifyCache struct {
	key  ed25519.PublicKey
	mu   sync.Mutex
	m    map[proto.ChunkID]*proto.Chunk
	ring []proto.ChunkID
	next int
}

// NewVerifyCache remembers up to size verified chunks of the given origin key.
func NewVerifyCache(key ed25519.PublicKey, size int) *VerifyCache {
	return &VerifyCache{
		key:  append(ed25519.PublicKey(nil), key...),
		m:    make(map[proto.ChunkID]*proto.Chunk, size),
		ring: make([]proto.ChunkID, size),
	}
}

func (vc *VerifyCache) verify(c *proto.Chunk, key ed25519.PublicKey) error {
	if !vc.key.Equal(key) {
		return c.Verify(key)
	}
	vc.mu.Lock()
	known := vc.m[c.ID]
	vc.mu.Unlock()
	if known != nil && c.Identical(known) {
		return nil
	}
	if err := c.Verify(key); err != nil {
		return err
	}
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if _, ok := vc.m[c.ID]; !ok && len(vc.ring) > 0 {
		delete(vc.m, vc.ring[vc.next])
		vc.ring[vc.next] = c.ID
		vc.next = (vc.next + 1) % len(vc.ring)
		vc.m[c.ID] = c
	}
	return nil
}
