package sfu

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// fanoutTrack is the webrtc.TrackLocal a Producer binds to every consumer's
// RTPSender (replacing webrtc.TrackLocalStaticRTP): pion calls Bind once per
// sender after negotiation and Unbind when the sender stops. The list of
// bindings is copy-on-write behind an atomic pointer, so the fan-out takes
// no lock, and writing never allocates: the header handed to pion is reused
// (pion's write path does not retain it).
type fanoutTrack struct {
	id, streamID string
	codec        webrtc.RTPCodecCapability
	kind         webrtc.RTPCodecType

	bindings atomic.Pointer[[]*trackBinding]
	mu       sync.Mutex // serialises Bind and Unbind

	// hdr is the header of the packet being fanned out; owned by the
	// single writer (Producer.WriteRTP).
	hdr rtp.Header
}

// trackBinding is the track bound to one RTPSender.
type trackBinding struct {
	id          string // TrackLocalContext.ID, unique per sender
	ssrc        uint32
	payloadType uint8
	w           webrtc.TrackLocalWriter
}

func newFanoutTrack(codec webrtc.RTPCodecCapability, id, streamID string) *fanoutTrack {
	t := &fanoutTrack{id: id, streamID: streamID, codec: codec, kind: webrtc.RTPCodecTypeVideo}
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
	if !ok {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	b := &trackBinding{
		id:          ctx.ID(),
		ssrc:        uint32(ctx.SSRC()),
		payloadType: uint8(codec.PayloadType),
		w:           ctx.WriteStream(),
	}
	t.mu.Lock()
	old := *t.bindings.Load()
	next := make([]*trackBinding, 0, len(old)+1)
	next = append(append(next, old...), b)
	t.bindings.Store(&next)
	t.mu.Unlock()
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

// write sends pkt to every sender of bs (a snapshot) with the sender's SSRC
// and payload type, keeping marker, sequence number, timestamp, CSRCs and
// payload; header extensions and padding are not forwarded (senders add
// their own extensions). Write errors of single senders (closing peer
// connections) are ignored. Called by one goroutine at a time.
func (t *fanoutTrack) write(bs []*trackBinding, pkt *rtp.Packet) {
	base := rtp.Header{
		Version:        2,
		Marker:         pkt.Marker,
		SequenceNumber: pkt.SequenceNumber,
		Timestamp:      pkt.Timestamp,
		CSRC:           pkt.CSRC,
	}
	h := &t.hdr
	for _, b := range bs {
		*h = base // pion's interceptors may have touched the previous one
		h.SSRC = b.ssrc
		h.PayloadType = b.payloadType
		_, _ = b.w.WriteRTP(h, pkt.Payload)
	}
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
