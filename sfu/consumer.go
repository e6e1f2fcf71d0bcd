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
	want     *layerWant
	wg       sync.WaitGroup
	done     chan struct{}
	// shared: the sender outlives the consumer (a Viewer switches it
	// between producers): the sender's owner reads its RTCP (onRTCP) and
	// Close only detaches the track.
	shared bool
	// cont is where a shared sender's numbering stood when Close detached
	// it (hasCont: it had sent something); set before done is closed.
	cont    munger
	hasCont bool

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
	c.want = p.track.want(c.ssrc)
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
	buf    [maxCachedPayload + 2]byte // room for the RTX header
	resent [nackCacheSize]int64       // unix nanos of the last resend, by cache slot
	seqs   [nackCacheSize]uint16
}

// onNACK answers one NACKed sequence number.
func (c *Consumer) onNACK(ssrc uint32, seq uint16) {
	if ssrc != c.ssrc || c.producer.info.Kind != KindVideo {
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
	b := c.producer.track.binding(ssrc)
	if b == nil {
		return
	}
	if c.producer.resend(b, seq, &n.hdr, n.buf[:]) {
		n.seqs[slot], n.resent[slot] = seq, now
		c.resends.Add(1)
		c.producer.stats.count(countResend)
	}
}

func (c *Consumer) start() {
	c.wg.Add(1)
	go c.readRTCP()
}

// SetLayer pins the layer the consumer receives (0 = lowest; -1 pauses
// it). Subscribers' consumers are set by their participant's allocator;
// the cluster pins the consumers that pipe one layer to another node. A
// switch happens at the layer's next keyframe, which is requested. Layers
// out of range are clamped.
func (c *Consumer) SetLayer(layer int) {
	c.setLayer(layer, layer)
}

// setLayer sets the consumer's target and desired layers and asks for a
// keyframe of a new target.
func (c *Consumer) setLayer(target, desired int) {
	n := len(c.producer.layers)
	target, desired = min(max(target, -1), n-1), min(max(desired, -1), n-1)
	old := c.want.target.Swap(int32(target))
	oldDesired := c.want.desired.Swap(int32(desired))
	if target >= 0 && int32(target) != old {
		c.producer.requestLayerKeyframe(target)
	}
	if old != int32(target) || oldDesired != int32(desired) {
		c.producer.demandChanged()
	}
}

// Layer returns the layer being forwarded (-1 none) and the target layer.
func (c *Consumer) Layer() (current, target int) {
	return int(c.want.current.Load()), int(c.want.target.Load())
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

	if c.shared {
		c.cont, c.hasCont = c.producer.continuation(c.ssrc)
		_ = c.sender.ReplaceTrack(nil) // unbinds the producer's track
	} else if err := c.pc.RemoveTrack(c.sender); err != nil {
		_ = c.sender.Stop() // pc already closed: make sure Read returns
	}
	c.wg.Wait()
	c.producer.track.dropWant(c.ssrc)
	c.producer.removeConsumer(c)
	c.producer.demandChanged()
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
		c.onRTCP(buf[:n], first)
	}
}

// onRTCP handles one RTCP packet from the consumer's receiver: keyframe
// requests go to the producer, NACKs are answered from its cache. first
// marks the first packet (the consumer is negotiated and connected: ask
// for a keyframe again, the one requested by NewConsumer may have been
// sent before this consumer was bound). Called by the one goroutine that
// reads the sender (its own reader, or a Viewer's for a shared sender).
func (c *Consumer) onRTCP(b []byte, first bool) {
	kf := wantsKeyframe(b)
	if kf {
		c.producer.stats.count(countKeyframeRequest)
	}
	if first || kf {
		c.requestKeyframe()
	}
	forEachNACK(b, c.onNACK)
}

// hold stops forwarding to the consumer until release: its transport is
// not connected yet.
func (c *Consumer) hold() { c.want.held.Store(true) }

// release starts forwarding to a held consumer and asks for a keyframe
// of its layer, so its first frame is not the one dropped before.
func (c *Consumer) release() {
	if c.want.held.Swap(false) {
		c.requestKeyframe()
	}
}

// requestKeyframe asks for a keyframe of the layer the consumer receives
// (or is switching to).
func (c *Consumer) requestKeyframe() {
	l := c.want.current.Load()
	if t := c.want.target.Load(); t >= 0 && t != l {
		l = t
	}
	if l >= 0 {
		c.producer.requestLayerKeyframe(int(l))
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
