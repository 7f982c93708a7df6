package segwindow

import (
	"bytes"
	"errors"
	"fmt"
)

// The LL-HLS derivation reads back the MPEG-TS that the origin's segmenter writes: one program,
// an H.264 or H.265 stream and/or an ADTS AAC or Opus stream, single-packet PAT and PMT at the start of every segment,
// whole PES packets. This small demuxer knows exactly that, records where each PES starts (a part
// is a byte range of its segment) and refuses everything else with an error: the bytes are
// signed by the origin, but its publisher can still feed it garbage.

// errBadTS is wrapped by every error of the demuxer and of the fMP4 derivation.
var errBadTS = errors.New("segwindow: cannot derive fMP4 from this MPEG-TS")

const (
	tsPacketSize = 188
	tsSyncByte   = 0x47
)

// tsProgram is what the PAT and PMT of a segment declare.
type tsProgram struct {
	pmtPID   int // -1 until the PAT was read
	videoPID int // -1: none
	audioPID int // -1: none
	video    videoCodec
	audio    audioCodec
	// opusChannels is the channel count an Opus stream's descriptor declares.
	opusChannels int
	havePMT      bool
}

// tsPES is one PES packet of the video or audio stream.
type tsPES struct {
	pid    int
	offset int // byte offset in the segment of the TS packet that starts it
	pts    int64
	dts    int64
	data   []byte // nil for a PES before the range whose payload was asked for
	length int    // PES_packet_length minus the header, 0 when unbounded (video)
}

// demuxTS reads b (a segment's first bytes) and returns its program and its PES packets in
// order. Payloads are collected only for PES packets that start at or after from; earlier ones
// keep only their timestamps (the derivation of a part needs the sample before it). A PES still
// open at the end of b is complete: the origin ends parts between access units.
func demuxTS(b []byte, from int) (tsProgram, []tsPES, error) {
	prog := tsProgram{pmtPID: -1, videoPID: -1, audioPID: -1}
	if len(b)%tsPacketSize != 0 {
		return prog, nil, fmt.Errorf("%w: %d bytes are not whole TS packets", errBadTS, len(b))
	}
	var (
		pes  []tsPES
		open = map[int]int{} // pid -> index in pes of its open PES
	)
	for off := 0; off < len(b); off += tsPacketSize {
		pkt := b[off : off+tsPacketSize]
		if pkt[0] != tsSyncByte {
			return prog, nil, fmt.Errorf("%w: no sync byte at %d", errBadTS, off)
		}
		pusi := pkt[1]&0x40 != 0
		pid := int(pkt[1]&0x1f)<<8 | int(pkt[2])
		afc := pkt[3] >> 4 & 3
		payload := pkt[4:]
		if afc&2 != 0 {
			n := int(payload[0])
			if 1+n > len(payload) {
				return prog, nil, fmt.Errorf("%w: adaptation field of %d bytes at %d", errBadTS, n, off)
			}
			payload = payload[1+n:]
		}
		if afc&1 == 0 {
			payload = nil
		}
		switch {
		case pid == 0:
			if pusi && prog.pmtPID < 0 {
				pmtPID, err := parsePAT(payload)
				if err != nil {
					return prog, nil, fmt.Errorf("%w: PAT at %d: %w", errBadTS, off, err)
				}
				prog.pmtPID = pmtPID
			}
		case pid == prog.pmtPID:
			if pusi && !prog.havePMT {
				if err := prog.parsePMT(payload); err != nil {
					return prog, nil, fmt.Errorf("%w: PMT at %d: %w", errBadTS, off, err)
				}
			}
		case pid == prog.videoPID || pid == prog.audioPID:
			if pusi {
				if i, ok := open[pid]; ok {
					if err := pes[i].close(); err != nil {
						return prog, nil, err
					}
				}
				p, err := parsePESHeader(payload, pid, off, off >= from)
				if err != nil {
					return prog, nil, fmt.Errorf("%w: PES at %d: %w", errBadTS, off, err)
				}
				open[pid] = len(pes)
				pes = append(pes, p)
				continue
			}
			i, ok := open[pid]
			if !ok {
				continue // the rest of a PES that began before b: not ours to read
			}
			if pes[i].data != nil {
				pes[i].data = append(pes[i].data, payload...)
			}
		}
	}
	for _, i := range open {
		if err := pes[i].close(); err != nil {
			return prog, nil, err
		}
	}
	if !prog.havePMT {
		return prog, nil, fmt.Errorf("%w: no PMT", errBadTS)
	}
	return prog, pes, nil
}

// psiSection returns the section a single-packet PSI payload carries, after its pointer field.
func psiSection(payload []byte, tableID byte) ([]byte, error) {
	if len(payload) < 1 {
		return nil, errors.New("empty")
	}
	ptr := int(payload[0])
	if 1+ptr+3 > len(payload) {
		return nil, errors.New("pointer field beyond the packet")
	}
	sec := payload[1+ptr:]
	if sec[0] != tableID {
		return nil, fmt.Errorf("table id %#x, want %#x", sec[0], tableID)
	}
	n := int(sec[1]&0x0f)<<8 | int(sec[2])
	if n < 9 || 3+n > len(sec) {
		return nil, fmt.Errorf("section of %d bytes does not fit one packet", n)
	}
	return sec[:3+n-4], nil // without the CRC, which the signature already vouches for
}

func parsePAT(payload []byte) (int, error) {
	sec, err := psiSection(payload, 0x00)
	if err != nil {
		return 0, err
	}
	for i := 8; i+4 <= len(sec); i += 4 {
		if program := int(sec[i])<<8 | int(sec[i+1]); program != 0 {
			return int(sec[i+2]&0x1f)<<8 | int(sec[i+3]), nil
		}
	}
	return 0, errors.New("no program")
}

func (p *tsProgram) parsePMT(payload []byte) error {
	sec, err := psiSection(payload, 0x02)
	if err != nil {
		return err
	}
	if len(sec) < 12 {
		return errors.New("short")
	}
	i := 12 + (int(sec[10]&0x0f)<<8 | int(sec[11]))
	for i+5 <= len(sec) {
		typ := sec[i]
		pid := int(sec[i+1]&0x1f)<<8 | int(sec[i+2])
		end := i + 5 + (int(sec[i+3]&0x0f)<<8 | int(sec[i+4]))
		if end > len(sec) {
			return errors.New("stream descriptors beyond the section")
		}
		descriptors := sec[i+5 : end]
		i = end
		switch {
		case pid == 0 || pid == p.pmtPID:
			return fmt.Errorf("stream on PID %d", pid)
		case (typ == streamTypeH264 || typ == streamTypeH265) && p.videoPID < 0:
			p.videoPID, p.video = pid, videoH264
			if typ == streamTypeH265 {
				p.video = videoH265
			}
		case pid == p.videoPID || p.audioPID >= 0:
		case typ == streamTypeAACADTS:
			p.audioPID, p.audio = pid, audioAAC
		case typ == streamTypePrivate:
			channels, ok, err := opusDescriptors(descriptors)
			if err != nil {
				return err
			}
			if ok {
				p.audioPID, p.audio, p.opusChannels = pid, audioOpus, channels
			}
		}
	}
	if p.videoPID < 0 && p.audioPID < 0 {
		return errors.New("neither H.264, H.265, AAC nor Opus")
	}
	p.havePMT = true
	return nil
}

// opusDescriptors reads the descriptors of a private-data stream: ok when they name it Opus,
// with its channel count.
func opusDescriptors(b []byte) (channels int, ok bool, err error) {
	var opusDesc []byte
	for len(b) >= 2 {
		tag, n := b[0], int(b[1])
		if 2+n > len(b) {
			return 0, false, errors.New("descriptor beyond its stream")
		}
		body := b[2 : 2+n]
		b = b[2+n:]
		switch {
		case tag == descriptorRegistration && bytes.HasPrefix(body, opusRegistration):
			ok = true
		case tag == descriptorExtension && n >= 1 && body[0] == extensionOpus:
			opusDesc = body[1:]
		}
	}
	if !ok {
		return 0, false, nil
	}
	if opusDesc == nil {
		return 0, false, errors.New("opus stream without its audio descriptor")
	}
	channels, err = opusChannels(opusDesc)
	return channels, err == nil, err
}

// parsePESHeader reads the header of a PES that starts in payload; keep says whether to collect
// its data.
func parsePESHeader(payload []byte, pid, off int, keep bool) (tsPES, error) {
	if len(payload) < 9 || payload[0] != 0 || payload[1] != 0 || payload[2] != 1 {
		return tsPES{}, errors.New("no PES start code")
	}
	pesLen := int(payload[4])<<8 | int(payload[5])
	flags := payload[7] >> 6
	hdrLen := int(payload[8])
	if 9+hdrLen > len(payload) {
		return tsPES{}, fmt.Errorf("header of %d bytes beyond the packet", hdrLen)
	}
	p := tsPES{pid: pid, offset: off}
	switch flags {
	case 2:
		if hdrLen < 5 {
			return tsPES{}, errors.New("PTS beyond the header")
		}
		p.pts = parseTimestamp(payload[9:])
		p.dts = p.pts
	case 3:
		if hdrLen < 10 {
			return tsPES{}, errors.New("DTS beyond the header")
		}
		p.pts = parseTimestamp(payload[9:])
		p.dts = parseTimestamp(payload[14:])
	default:
		return tsPES{}, errors.New("no PTS")
	}
	if pesLen != 0 {
		p.length = pesLen - 3 - hdrLen
		if p.length <= 0 {
			return tsPES{}, fmt.Errorf("PES length %d shorter than its header", pesLen)
		}
	}
	if keep {
		p.data = append(make([]byte, 0, max(p.length, tsPacketSize)), payload[9+hdrLen:]...)
	}
	return p, nil
}

// close checks a finished PES against its declared length.
func (p *tsPES) close() error {
	if p.data == nil || p.length == 0 {
		return nil
	}
	if len(p.data) < p.length {
		return fmt.Errorf("%w: PES at %d has %d of its %d bytes", errBadTS, p.offset, len(p.data), p.length)
	}
	p.data = p.data[:p.length]
	return nil
}

func parseTimestamp(b []byte) int64 {
	return int64(b[0]>>1&0x07)<<30 | int64(b[1])<<22 | int64(b[2]>>1)<<15 | int64(b[3])<<7 | int64(b[4]>>1)
}
