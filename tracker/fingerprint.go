package tracker

import (
	"encoding/binary"
	"hash/maphash"

	"github.com/crowdsurf/crowdsurf/proto"
)

// fingerprint identifies what of a peer's record the tracker hands out or weighs (address,
// depths, parents, free slots, and every other field of PeerState and PeerRecord), leaving out
// the playback report (Quality), which changes with every announce and no choice reads. An
// announce with the record's fingerprint unchanged needs no write while the entry is fresh
// (view.touch). It hashes the fields themselves (a JSON encoding per announce cost more than the
// rest of the check); TestFingerprintCoversEveryFieldButQuality fails when PeerState grows a
// field this does not hash. It is never 0, which view.forget uses for "write again".
func fingerprint(rec proto.PeerRecord) uint64 {
	b := make([]byte, 0, 512)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	num := func(v int64) { b = binary.AppendVarint(b, v) }
	str(rec.PeerID)
	str(rec.Stream)
	str(rec.StreamKey)
	str(rec.Addr)
	num(rec.UploadBps)
	num(int64(len(rec.Depths)))
	for _, d := range rec.Depths {
		num(int64(d))
	}
	num(int64(len(rec.Parents)))
	for _, p := range rec.Parents {
		str(p)
	}
	num(int64(rec.FreeSlots))
	str(rec.ReflexiveAddr)
	num(int64(rec.NATKind))
	str(rec.SourceIP)
	return max(1, maphash.Bytes(fingerprintSeed, b))
}

var fingerprintSeed = maphash.MakeSeed()
