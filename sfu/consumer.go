package sfu

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Consumer binds a Producer's track to one peer connection. Created by
// Producer.NewConsumer; it owns one goroutine reading RTCP from its
// RTPSender (this also drives the sender's interceptors), answering NACKs
// from the producer's packet cache and forwarding PLI/FIR to
// Producer.RequestKeyframe (plus one request when the first RTCP arrives,
// i.e. once the consumer is connected).
type Consumer struct {
	producer *Producer
	pc       *webrtc.PeerConnection
	sender   *webrtc.RTPSender
	ssrc     uint32 // the sender's SSRC (NACKs name it)
	wg       sync.WaitGroup
	done     chan struct{}

	// NACK state, owned by the RTCP reader; allocated on the first NACK.
	nack    *nackState
	resends atomic.Uint64 // packets retransmitted (for tests)

	mu     sync.Mutex // guards closed
	closed bool
}

func newConsumer(p *Producer, pc *webrtc.PeerConnection, sender *webrtc.RTPSender) *Consumer {
	c := &Consumer{producer: p, pc: pc, sender: sender, done: make(chan struct{})}
	if enc := sender.GetParameters().Encodings; len(enc) > 0 {
		c.ssrc = uint32(enc[0].SSRC)
	}
	return c
}

// nackResendInterval is the shortest gap between two retransmissions of
// one packet to one consumer: duplicate NACKs (a receiver repeats its
// NACK each round trip until the packet arrives) closer than this are
// answered once.
const nackResendInterval = 20 * time.Millisecond

// nackState is a consumer's scratch space for answering NACKs.
type nackState struct {
	hdr    rtp.Header
	buf    [maxCachedPayload]byte
	resent [nackCacheSize]int64 // unix nanos of the last resend, by cache slot
	seqs   [nackCacheSize]uint16
}

// onNACK answers one NACKed sequence number.
func (c *Consumer) onNACK(ssrc uint32, seq uint16) {
	if ssrc != c.ssrc || c.producer.cache == nil {
		return
	}
	c.producer.stats.count(countNACK)
	if c.nack == nil {
		c.nack = &nackState{}
		c.nack.hdr.CSRC = make([]uint32, 0, maxCSRC)
	}
	n := c.nack
	slot := seq % nackCacheSize
	now := time.Now().UnixNano()
	if n.seqs[slot] == seq && n.resent[slot] != 0 && now-n.resent[slot] < int64(nackResendInterval) {
		return
	}
	if c.producer.resend(ssrc, seq, &n.hdr, n.buf[:]) {
		n.seqs[slot], n.resent[slot] = seq, now
		c.resends.Add(1)
		c.producer.stats.count(countResend)
	}
}

func (c *Consumer) start() {
	c.wg.Add(1)
	go c.readRTCP()
}

// Producer returns the consumed producer.
func (c *Consumer) Producer() *Producer { return c.producer }

// Sender returns the RTPSender of the consumer's track on its peer
// connection. Addition to the spec.
func (c *Consumer) Sender() *webrtc.RTPSender { return c.sender }

// Close removes the track from its peer connection (the caller renegotiates
// if the peer connection stays open), stops the RTCP reader and waits for
// it. Idempotent; a concurrent second call waits for the first.
func (c *Consumer) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return
	}
	c.closed = true
	c.mu.Unlock()

	if err := c.pc.RemoveTrack(c.sender); err != nil {
		_ = c.sender.Stop() // pc already closed: make sure Read returns
	}
	c.wg.Wait()
	c.producer.removeConsumer(c)
	close(c.done)
}

func (c *Consumer) readRTCP() {
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for first := true; ; first = false {
		n, _, err := c.sender.Read(buf)
		if err != nil {
			return
		}
		// The first RTCP means the consumer is negotiated and connected:
		// ask for a keyframe again, the one requested by NewConsumer may
		// have been sent before this consumer was bound.
		kf := wantsKeyframe(buf[:n])
		if kf {
			c.producer.stats.count(countKeyframeRequest)
		}
		if first || kf {
			c.producer.RequestKeyframe()
		}
		forEachNACK(buf[:n], c.onNACK)
	}
}

// RTCP packet types / feedback formats (RFC 4585, RFC 5104).
const (
	rtcpTypeFIRLegacy = 192
	rtcpTypePSFB      = 206
	psfbFmtPLI        = 1
	psfbFmtFIR        = 4
)

// wantsKeyframe reports whether a (compound) RTCP packet contains a PLI or
// FIR, without allocating.
func wantsKeyframe(b []byte) bool {
	for len(b) >= 4 {
		pt := b[1]
		count := b[0] & 0x1f
		if pt == rtcpTypeFIRLegacy || (pt == rtcpTypePSFB && (count == psfbFmtPLI || count == psfbFmtFIR)) {
			return true
		}
		l := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
		if l > len(b) {
			return false
		}
		b = b[l:]
	}
	return false
}
