package sfu

import (
	"encoding/binary"
	"strings"
)

// Codec-specific parsing on the forward path: keyframe detection (a layer
// switch starts at a keyframe), frame size (to match layers to tiles) and
// the VP8 payload descriptor fields rewritten per subscriber (picture ID,
// TL0PICIDX) so that a stream switched between simulcast layers looks like
// one stream to the receiver. None of it allocates.

// codecKind is the codec family of a producer, as far as parsing goes.
type codecKind uint8

const (
	codecOther codecKind = iota // forwarded as is; every packet may start a layer
	codecVP8
	codecH264
)

// codecKindOf maps a mime type to its codecKind.
func codecKindOf(mime string) codecKind {
	switch {
	case strings.EqualFold(mime, "video/VP8"):
		return codecVP8
	case strings.EqualFold(mime, "video/H264"):
		return codecH264
	default:
		return codecOther
	}
}

// vp8Desc is what the forward path needs of a VP8 RTP payload (RFC 7741).
type vp8Desc struct {
	ok       bool   // the descriptor parsed
	start    bool   // first packet of a frame (S=1, partition 0)
	keyframe bool   // start of a keyframe
	pidOff   int    // offset of the picture ID (0: none)
	pidLen   int    // 1 (7 bits) or 2 (15 bits)
	pid      uint16 // picture ID
	tl0Off   int    // offset of TL0PICIDX (0: none)
	tl0      uint8
	width    int // keyframes only: the frame size
	height   int
}

// parseVP8 parses the payload descriptor of b (and the frame header of a
// keyframe's first packet).
func parseVP8(b []byte) (d vp8Desc) {
	if len(b) < 1 {
		return d
	}
	x := b[0]&0x80 != 0
	s := b[0]&0x10 != 0
	partition := b[0] & 0x07
	i := 1
	if x {
		if len(b) < 2 {
			return d
		}
		ext := b[1]
		i = 2
		if ext&0x80 != 0 { // I: picture ID
			if len(b) < i+1 {
				return d
			}
			if b[i]&0x80 != 0 {
				if len(b) < i+2 {
					return d
				}
				d.pidOff, d.pidLen = i, 2
				d.pid = binary.BigEndian.Uint16(b[i:]) & 0x7fff
				i += 2
			} else {
				d.pidOff, d.pidLen = i, 1
				d.pid = uint16(b[i] & 0x7f)
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			if len(b) < i+1 {
				return d
			}
			d.tl0Off, d.tl0 = i, b[i]
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	if len(b) <= i {
		return d
	}
	d.ok = true
	d.start = s && partition == 0
	if d.start && b[i]&0x01 == 0 {
		d.keyframe = true
		// Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and
		// height, little endian.
		if h := b[i:]; len(h) >= 10 && h[3] == 0x9d && h[4] == 0x01 && h[5] == 0x2a {
			d.width = int(binary.LittleEndian.Uint16(h[6:]) & 0x3fff)
			d.height = int(binary.LittleEndian.Uint16(h[8:]) & 0x3fff)
		}
	}
	return d
}

// H.264 NAL unit types that matter here.
const (
	naluIDR   = 5
	naluSPS   = 7
	naluSTAPA = 24
	naluFUA   = 28
)

// h264Keyframe reports whether an H.264 RTP payload (RFC 6184) starts a
// keyframe: an IDR slice or SPS, alone, aggregated (STAP-A) or at the start
// of a fragmented unit (FU-A).
func h264Keyframe(b []byte) bool {
	if len(b) < 1 {
		return false
	}
	switch t := b[0] & 0x1f; t {
	case naluIDR, naluSPS:
		return true
	case naluSTAPA:
		for p := b[1:]; len(p) > 2; {
			n := int(binary.BigEndian.Uint16(p))
			if n == 0 || len(p) < 2+n {
				return false
			}
			if nt := p[2] & 0x1f; nt == naluIDR || nt == naluSPS {
				return true
			}
			p = p[2+n:]
		}
	case naluFUA:
		if len(b) < 2 {
			return false
		}
		nt := b[1] & 0x1f
		return b[1]&0x80 != 0 && (nt == naluIDR || nt == naluSPS)
	}
	return false
}

// frameInfo is the part of a packet a layer switch looks at.
type frameInfo struct {
	keyframe bool // starts a keyframe (a switch may happen here)
	vp8      vp8Desc
}

// inspect parses pkt's payload for kind.
func inspect(kind codecKind, payload []byte) frameInfo {
	switch kind {
	case codecVP8:
		d := parseVP8(payload)
		return frameInfo{keyframe: d.keyframe, vp8: d}
	case codecH264:
		return frameInfo{keyframe: h264Keyframe(payload)}
	default:
		return frameInfo{keyframe: true}
	}
}
