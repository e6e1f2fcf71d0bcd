package sfu

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// fanoutTrack is the webrtc.TrackLocal a Producer binds to every consumer's
// RTPSender (replacing webrtc.TrackLocalStaticRTP): pion calls Bind once per
// sender after negotiation and Unbind when the sender stops. The list of
// bindings is copy-on-write behind an atomic pointer, so the fan-out takes
// no lock, and writing never allocates: the header handed to pion is the
// writer's, reused (pion's write path does not retain it); a sharded
// fan-out (shard.go) has one per worker.
type fanoutTrack struct {
	id, streamID string
	codec        webrtc.RTPCodecCapability
	kind         webrtc.RTPCodecType

	// layered: the producer has several layers, so a consumer starts at a
	// keyframe; a single-layer consumer starts with any packet.
	layered bool

	// onBind, when set, is called after a sender was bound, with its want.
	onBind func(*layerWant)

	bindings atomic.Pointer[[]*trackBinding]
	mu       sync.Mutex            // serialises Bind and Unbind, guards wants
	wants    map[uint32]*layerWant // by sender SSRC, shared by consumer and binding
	// seeds are the numbering states senders moved here from another
	// producer continue from (Producer.continuation), by SSRC; guarded by mu.
	seeds map[uint32]munger
}

// trackBinding is the track bound to one RTPSender.
type trackBinding struct {
	id          string // TrackLocalContext.ID, unique per sender
	ssrc        uint32
	payloadType uint8
	unred       bool // the track is RED, the sender Opus: send primary blocks
	w           webrtc.TrackLocalWriter
	want        *layerWant
	m           munger // owned by the producer's writer (Producer.wmu) or the worker of its shard
	// RTX (RFC 4588) when negotiated: retransmissions go on their own
	// SSRC with their own sequence numbers (rtxSeq, under Producer.wmu).
	rtxSSRC uint32
	rtxPT   uint8
	rtxSeq  uint16
	// Retransmission budget (under Producer.wmu): per second, a quarter of
	// the packets forwarded in the previous second (at least
	// minResendBudget), so that a lossy link is not flooded by answers to
	// repeated NACKs.
	sent      uint64 // packets forwarded
	resendWin int64  // start of the budget window (unix nanos)
	sentAtWin uint64
	budget    int
}

// minResendBudget is the least number of retransmissions per second a
// consumer may get.
const minResendBudget = 20

// allowResend spends one retransmission of b's budget at now. Called with
// the producer's wmu held.
func (b *trackBinding) allowResend(now int64) bool {
	if now-b.resendWin >= int64(time.Second) {
		b.budget = max(minResendBudget, int((b.sent-b.sentAtWin)/4))
		b.resendWin, b.sentAtWin = now, b.sent
	}
	if b.budget <= 0 {
		return false
	}
	b.budget--
	return true
}

// layerWant is what the consumer of one sender wants from a layered
// producer, shared by the Consumer (which sets it) and the binding (whose
// writer follows it).
type layerWant struct {
	target  atomic.Int32 // layer to forward; -1: none (paused)
	desired atomic.Int32 // layer the subscriber would take if it were sent; -1: none
	current atomic.Int32 // layer being forwarded (set by the writer); -1: none
	// held: the consumer's transport is not connected yet, so nothing is
	// forwarded (a keyframe written then would be dropped by pion while
	// the consumer counted as started, and the subscriber would wait for
	// the next one). Set and cleared by the subscriber's participant.
	held atomic.Bool
}

func newLayerWant() *layerWant {
	w := &layerWant{}
	w.current.Store(-1)
	return w
}

// want returns the layerWant of the sender with SSRC ssrc, creating it.
func (t *fanoutTrack) want(ssrc uint32) *layerWant {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.wants[ssrc]
	if w == nil {
		w = newLayerWant()
		t.wants[ssrc] = w
	}
	return w
}

// seed makes the next binding of the sender with SSRC ssrc continue the
// numbering state m (a sender that moves from another producer).
func (t *fanoutTrack) seed(ssrc uint32, m munger) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seeds == nil {
		t.seeds = make(map[uint32]munger)
	}
	t.seeds[ssrc] = m
}

// dropWant forgets the layerWant of a closed consumer.
func (t *fanoutTrack) dropWant(ssrc uint32) {
	t.mu.Lock()
	delete(t.wants, ssrc)
	t.mu.Unlock()
}

// eachWant calls f for every consumer's layerWant (with t.mu held).
func (t *fanoutTrack) eachWant(f func(*layerWant)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range t.wants {
		f(w)
	}
}

func newFanoutTrack(codec webrtc.RTPCodecCapability, id, streamID string) *fanoutTrack {
	t := &fanoutTrack{id: id, streamID: streamID, codec: codec, kind: webrtc.RTPCodecTypeVideo,
		wants: make(map[uint32]*layerWant)}
	if KindOf(codec.MimeType) == KindAudio {
		t.kind = webrtc.RTPCodecTypeAudio
	}
	t.bindings.Store(&[]*trackBinding{})
	return t
}

// Bind implements webrtc.TrackLocal: it picks the negotiated codec of the
// track's mime type (the one with the same fmtp line if several) and adds
// the sender to the fan-out.
func (t *fanoutTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := matchCodec(t.codec, ctx.CodecParameters())
	unred := false
	if !ok && isRED(t.codec.MimeType) {
		// A subscriber without RED gets the primary blocks as Opus.
		codec, ok = matchCodec(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, ctx.CodecParameters())
		unred = true
	}
	if !ok {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	b := &trackBinding{
		id:          ctx.ID(),
		ssrc:        uint32(ctx.SSRC()),
		payloadType: uint8(codec.PayloadType),
		unred:       unred,
		w:           ctx.WriteStream(),
		m:           newMunger(),
	}
	if rtx := uint32(ctx.SSRCRetransmission()); rtx != 0 {
		if pt, ok := rtxPayloadType(codec.PayloadType, ctx.CodecParameters()); ok {
			b.rtxSSRC, b.rtxPT = rtx, pt
		}
	}
	b.want = t.want(b.ssrc)
	t.mu.Lock()
	if m, ok := t.seeds[b.ssrc]; ok {
		b.m = m
		delete(t.seeds, b.ssrc)
	}
	old := *t.bindings.Load()
	next := make([]*trackBinding, 0, len(old)+1)
	next = append(append(next, old...), b)
	t.bindings.Store(&next)
	t.mu.Unlock()
	if t.onBind != nil {
		t.onBind(b.want)
	}
	return codec, nil
}

// matchCodec returns the codec of params with c's mime type, preferring one
// with the same fmtp line.
func matchCodec(c webrtc.RTPCodecCapability, params []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	found := -1
	for i, p := range params {
		if !strings.EqualFold(p.MimeType, c.MimeType) {
			continue
		}
		if p.SDPFmtpLine == c.SDPFmtpLine {
			return p, true
		}
		if found < 0 {
			found = i
		}
	}
	if found < 0 {
		return webrtc.RTPCodecParameters{}, false
	}
	return params[found], true
}

// rtxPayloadType returns the payload type of the RTX codec for primary
// payload type pt among params.
func rtxPayloadType(pt webrtc.PayloadType, params []webrtc.RTPCodecParameters) (uint8, bool) {
	apt := "apt=" + strconv.Itoa(int(pt))
	for _, p := range params {
		if strings.EqualFold(p.MimeType, webrtc.MimeTypeRTX) && p.SDPFmtpLine == apt {
			return uint8(p.PayloadType), true
		}
	}
	return 0, false
}

// Unbind implements webrtc.TrackLocal.
func (t *fanoutTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	id := ctx.ID()
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.bindings.Load()
	for i, b := range old {
		if b.id == id {
			next := make([]*trackBinding, 0, len(old)-1)
			next = append(append(next, old[:i]...), old[i+1:]...)
			t.bindings.Store(&next)
			return nil
		}
	}
	return webrtc.ErrUnbindFailed
}

// ID implements webrtc.TrackLocal (the producer ID).
func (t *fanoutTrack) ID() string { return t.id }

// RID implements webrtc.TrackLocal (no simulcast on the sending side).
func (t *fanoutTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal (the publishing participant's ID).
func (t *fanoutTrack) StreamID() string { return t.streamID }

// Kind implements webrtc.TrackLocal.
func (t *fanoutTrack) Kind() webrtc.RTPCodecType { return t.kind }

// snapshot returns the current bindings (never modified).
func (t *fanoutTrack) snapshot() []*trackBinding { return *t.bindings.Load() }

// write sends pkt, a packet of layer, to every sender of bs (a snapshot)
// that forwards that layer, or switches to it at this packet: with the
// sender's SSRC and payload type, its munger's sequence number and
// timestamp, marker, CSRCs and payload (VP8 picture ID and TL0PICIDX
// rewritten in scratch when the munger offsets them); header extensions
// and padding are not forwarded (senders add their own extensions). h is
// the header handed to pion, scratch and h belong to the calling goroutine.
// Write errors of single senders (closing peer connections) are ignored.
// Called with the producer's wmu held, by the writer or by a fan-out
// worker for a shard of the writer's (shard.go); pkt and fi are only read.
// It returns the number of packets written.
func (t *fanoutTrack) write(bs []*trackBinding, layer int8, pkt *rtp.Packet, fi *frameInfo, clock uint32, now int64, scratch []byte, h *rtp.Header) int {
	base := rtp.Header{
		Version: 2,
		Marker:  pkt.Marker,
		CSRC:    pkt.CSRC,
	}
	n := 0
	for _, b := range bs {
		if b.want.held.Load() {
			continue
		}
		m := &b.m
		target := int8(b.want.target.Load())
		if m.layer != layer {
			// Start or switch at a keyframe of the target layer (a
			// single-layer consumer starts with any packet). A consumer
			// forwarding nothing also starts at a keyframe of a lower
			// layer, and switches up at the target's keyframe later.
			startable := target == layer || (m.layer < 0 && target > layer)
			if !startable || (!fi.keyframe && (t.layered || m.started)) {
				continue
			}
			m.switchTo(layer, pkt, fi, clock, now)
			b.want.current.Store(int32(layer))
		} else if target < 0 {
			m.pause()
			b.want.current.Store(-1)
			continue
		}
		seq, ts, ok := m.forward(pkt, fi, now)
		if !ok {
			continue
		}
		payload := pkt.Payload
		if m.cur.needsPatch(fi) && len(payload) <= len(scratch) {
			payload = m.cur.patch(scratch, payload, fi)
		}
		if b.unred {
			p, err := redPrimary(payload)
			if err != nil || len(p) == 0 {
				continue // the sequence number is skipped: a loss to the receiver
			}
			payload = p
		}
		*h = base // pion's interceptors may have touched the previous one
		h.SequenceNumber = seq
		h.Timestamp = ts
		h.SSRC = b.ssrc
		h.PayloadType = b.payloadType
		_, _ = b.w.WriteRTP(h, payload)
		b.sent++
		n++
	}
	return n
}

// binding returns the binding of the sender whose SSRC is ssrc, or nil.
func (t *fanoutTrack) binding(ssrc uint32) *trackBinding {
	for _, b := range *t.bindings.Load() {
		if b.ssrc == ssrc {
			return b
		}
	}
	return nil
}
