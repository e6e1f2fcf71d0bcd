package sfu

import (
	"encoding/binary"
	"sync"

	"github.com/pion/rtp"
)

// NACK handling. pion's nack responder interceptor keeps a copy of every
// packet per subscriber stream (1024 packets, two allocations per packet),
// so a fan-out to N subscribers copied each packet N times. The engine turns
// that responder off (engineAPI) and answers NACKs itself from one cache per
// video producer: each packet is copied once, whatever the number of
// subscribers, and a NACK is answered by the consumer it arrived on.

const (
	// nackCacheSize is the number of packets a video producer keeps for
	// retransmission (a power of two; about 4 s of a 2 Mbit/s stream).
	nackCacheSize = 1024
	// maxCachedPayload is the largest payload kept (larger packets, which
	// the engine never receives with its 1460-byte MTU, are not cached).
	maxCachedPayload = 1500
	// maxCSRC is the most CSRCs an RTP header can carry.
	maxCSRC = 15
)

// cachedPacket is one slot of a packetCache. Its mutex is taken by the
// producer writing the slot and by consumers reading it, so that readers of
// different slots never contend with the writer.
type cachedPacket struct {
	mu        sync.Mutex
	valid     bool
	marker    bool
	seq       uint16
	timestamp uint32
	csrcs     uint8
	csrc      [maxCSRC]uint32
	size      int
	payload   [maxCachedPayload]byte
}

// packetCache is the ring of a video producer's recent packets, indexed by
// sequence number (the engine keeps the publisher's sequence numbers).
// put is called by the producer's writer only; get by any goroutine.
type packetCache struct {
	slots [nackCacheSize]cachedPacket
}

// put copies pkt into its slot. Never allocates.
func (c *packetCache) put(pkt *rtp.Packet) {
	s := &c.slots[pkt.SequenceNumber%nackCacheSize]
	s.mu.Lock()
	if len(pkt.Payload) > maxCachedPayload || len(pkt.CSRC) > maxCSRC {
		s.valid = false
		s.mu.Unlock()
		return
	}
	s.valid = true
	s.marker = pkt.Marker
	s.seq = pkt.SequenceNumber
	s.timestamp = pkt.Timestamp
	s.csrcs = uint8(copy(s.csrc[:], pkt.CSRC))
	s.size = copy(s.payload[:], pkt.Payload)
	s.mu.Unlock()
}

// get copies the packet with sequence number seq into h (SSRC and payload
// type are left for the caller) and buf, and returns the payload, or false
// when that packet is no longer (or was never) cached. buf must hold
// maxCachedPayload bytes. h.CSRC reuses its storage.
func (c *packetCache) get(seq uint16, h *rtp.Header, buf []byte) ([]byte, bool) {
	s := &c.slots[seq%nackCacheSize]
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.valid || s.seq != seq {
		return nil, false
	}
	csrc := append(h.CSRC[:0], s.csrc[:s.csrcs]...)
	*h = rtp.Header{Version: 2, Marker: s.marker, SequenceNumber: seq, Timestamp: s.timestamp, CSRC: csrc}
	return buf[:copy(buf, s.payload[:s.size])], true
}

// RTCP generic NACK (RFC 4585 6.2.1): transport layer feedback, FMT 1.
const (
	rtcpTypeRTPFB = 205
	rtpfbFmtNACK  = 1
)

// forEachNACK calls f for every sequence number a (compound) RTCP packet
// NACKs, with the media SSRC it is for. It stops at the first malformed
// packet and never allocates.
func forEachNACK(b []byte, f func(ssrc uint32, seq uint16)) {
	for len(b) >= 4 {
		l := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
		if l > len(b) {
			return
		}
		if b[1] == rtcpTypeRTPFB && b[0]&0x1f == rtpfbFmtNACK && l >= 12 {
			ssrc := binary.BigEndian.Uint32(b[8:12])
			for fci := b[12:l]; len(fci) >= 4; fci = fci[4:] {
				pid := binary.BigEndian.Uint16(fci[0:2])
				blp := binary.BigEndian.Uint16(fci[2:4])
				f(ssrc, pid)
				for i := range uint16(16) {
					if blp&(1<<i) != 0 {
						f(ssrc, pid+i+1)
					}
				}
			}
		}
		b = b[l:]
	}
}
