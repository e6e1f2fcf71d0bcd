package sfu

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// fakeBindContext is a webrtc.TrackLocalContext of one fake sender.
type fakeBindContext struct {
	id     string
	ssrc   webrtc.SSRC
	codecs []webrtc.RTPCodecParameters
	w      *recordingWriter
}

func (f *fakeBindContext) CodecParameters() []webrtc.RTPCodecParameters { return f.codecs }
func (f *fakeBindContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter {
	return nil
}
func (f *fakeBindContext) SSRC() webrtc.SSRC                       { return f.ssrc }
func (f *fakeBindContext) SSRCRetransmission() webrtc.SSRC         { return 0 }
func (f *fakeBindContext) SSRCForwardErrorCorrection() webrtc.SSRC { return 0 }
func (f *fakeBindContext) WriteStream() webrtc.TrackLocalWriter    { return f.w }
func (f *fakeBindContext) ID() string                              { return f.id }
func (f *fakeBindContext) RTCPReader() interceptor.RTCPReader      { return nil }

// recordingWriter keeps the last header and payload length written and
// counts writes, without allocating.
type recordingWriter struct {
	last    rtp.Header
	size    int
	writes  int
	buf     [1500]byte
	payload []byte // the last payload (a copy)
}

func (w *recordingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.last = *h
	w.size = len(payload)
	w.payload = w.buf[:copy(w.buf[:], payload)]
	w.writes++
	return len(payload), nil
}

func (w *recordingWriter) Write(b []byte) (int, error) { return len(b), nil }

func vp8Params(pt webrtc.PayloadType) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: pt,
	}
}

func TestMatchCodec(t *testing.T) {
	h264 := func(pt webrtc.PayloadType, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtp}, PayloadType: pt}
	}
	tests := []struct {
		name   string
		codec  webrtc.RTPCodecCapability
		params []webrtc.RTPCodecParameters
		wantPT webrtc.PayloadType
		ok     bool
	}{
		{"mime type, any case", webrtc.RTPCodecCapability{MimeType: "video/vp8"},
			[]webrtc.RTPCodecParameters{h264(102, h264Fmtp), vp8Params(96)}, 96, true},
		{"same fmtp preferred", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, SDPFmtpLine: h264Fmtp},
			[]webrtc.RTPCodecParameters{h264(100, "packetization-mode=0"), h264(102, h264Fmtp)}, 102, true},
		{"first of the mime type otherwise", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, SDPFmtpLine: "x=1"},
			[]webrtc.RTPCodecParameters{h264(100, "packetization-mode=0"), h264(102, h264Fmtp)}, 100, true},
		{"not negotiated", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus},
			[]webrtc.RTPCodecParameters{vp8Params(96)}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := matchCodec(tt.codec, tt.params)
			if ok != tt.ok || got.PayloadType != tt.wantPT {
				t.Errorf("matchCodec = PT %d, %v; want PT %d, %v", got.PayloadType, ok, tt.wantPT, tt.ok)
			}
		})
	}
}

// TestFanoutTrack: every bound sender gets the packet with its own SSRC and
// payload type and without header extensions; unbound senders get nothing;
// the fan-out does not allocate.
func TestFanoutTrack(t *testing.T) {
	tr := newFanoutTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "prod", "part")
	if tr.Kind() != webrtc.RTPCodecTypeVideo || tr.ID() != "prod" || tr.StreamID() != "part" || tr.RID() != "" {
		t.Fatalf("track identity: kind %v id %q stream %q rid %q", tr.Kind(), tr.ID(), tr.StreamID(), tr.RID())
	}
	ctxs := []*fakeBindContext{
		{id: "a", ssrc: 1, codecs: []webrtc.RTPCodecParameters{vp8Params(96)}, w: &recordingWriter{}},
		{id: "b", ssrc: 2, codecs: []webrtc.RTPCodecParameters{vp8Params(120)}, w: &recordingWriter{}},
		{id: "c", ssrc: 3, codecs: []webrtc.RTPCodecParameters{vp8Params(97)}, w: &recordingWriter{}},
	}
	for _, c := range ctxs {
		codec, err := tr.Bind(c)
		if err != nil || codec.PayloadType != c.codecs[0].PayloadType {
			t.Fatalf("Bind(%s) = %v, %v", c.id, codec.PayloadType, err)
		}
	}
	noVP8 := &fakeBindContext{id: "d", codecs: []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}}}}
	if _, err := tr.Bind(noVP8); !errors.Is(err, webrtc.ErrUnsupportedCodec) {
		t.Errorf("Bind without VP8: %v, want ErrUnsupportedCodec", err)
	}
	if err := tr.Unbind(ctxs[1]); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	if err := tr.Unbind(ctxs[1]); !errors.Is(err, webrtc.ErrUnbindFailed) {
		t.Errorf("second Unbind: %v, want ErrUnbindFailed", err)
	}

	pkt := benchPacket()
	pkt.Marker, pkt.SequenceNumber, pkt.Timestamp, pkt.CSRC = true, 7, 9000, []uint32{42}
	if err := pkt.SetExtension(3, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	fi := frameInfo{keyframe: true}
	var scratch [maxCachedPayload]byte
	var hdr rtp.Header
	tr.write(tr.snapshot(), 0, pkt, &fi, 90000, 1, scratch[:], &hdr)
	for _, c := range []*fakeBindContext{ctxs[0], ctxs[2]} {
		h := c.w.last
		if c.w.writes != 1 || h.SSRC != uint32(c.ssrc) || h.PayloadType != uint8(c.codecs[0].PayloadType) ||
			!h.Marker || h.SequenceNumber != 7 || h.Timestamp != 9000 || len(h.CSRC) != 1 ||
			h.Extension || len(h.Extensions) != 0 || c.w.size != len(pkt.Payload) {
			t.Errorf("sender %s: %d writes, header %+v, payload %d bytes", c.id, c.w.writes, h, c.w.size)
		}
	}
	if ctxs[1].w.writes != 0 {
		t.Errorf("unbound sender got %d writes", ctxs[1].w.writes)
	}
	if b := tr.binding(3); b == nil || b.id != "c" {
		t.Errorf("binding(3) = %v", b)
	}
	if b := tr.binding(2); b != nil {
		t.Errorf("binding(2) of an unbound sender = %v", b)
	}
	if allocs := testing.AllocsPerRun(1000, func() {
		pkt.SequenceNumber++
		tr.write(tr.snapshot(), 0, pkt, &fi, 90000, 1, scratch[:], &hdr)
	}); allocs != 0 {
		t.Errorf("allocations per fan-out = %v, want 0", allocs)
	}
}

// TestFanoutHeldBinding: a held consumer (transport not connected) gets
// nothing and does not count as started; once released it starts at the
// next keyframe (a layered track's consumers start at one). Binding asks
// for a keyframe unless the consumer is held.
func TestFanoutHeldBinding(t *testing.T) {
	tr := newFanoutTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "prod", "part")
	tr.layered = true
	var bound []bool // held, per onBind call
	tr.onBind = func(w *layerWant) { bound = append(bound, w.held.Load()) }
	w := &recordingWriter{}
	tr.want(1).held.Store(true)
	if _, err := tr.Bind(&fakeBindContext{id: "a", ssrc: 1, codecs: []webrtc.RTPCodecParameters{vp8Params(96)}, w: w}); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	if len(bound) != 1 || !bound[0] {
		t.Fatalf("onBind calls %v, want one for a held want", bound)
	}
	want := tr.want(1)
	pkt := benchPacket()
	var scratch [maxCachedPayload]byte
	var hdr rtp.Header
	key, delta := frameInfo{keyframe: true}, frameInfo{}
	send := func(fi *frameInfo) {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		tr.write(tr.snapshot(), 0, pkt, fi, 90000, int64(pkt.SequenceNumber)*int64(time.Millisecond), scratch[:], &hdr)
	}
	send(&key)
	if w.writes != 0 || want.current.Load() != -1 {
		t.Fatalf("held: %d writes, current layer %d; want none, -1", w.writes, want.current.Load())
	}
	want.held.Store(false)
	send(&delta)
	if w.writes != 0 {
		t.Fatalf("released: a delta frame was written first (%d writes)", w.writes)
	}
	send(&key)
	send(&delta)
	if w.writes != 2 || want.current.Load() != 0 {
		t.Fatalf("released: %d writes, current layer %d; want 2 from the keyframe on, 0", w.writes, want.current.Load())
	}
}

// TestFanoutUnwrapsRED: a RED track bound by a sender without RED sends
// the primary blocks with the Opus payload type.
func TestFanoutUnwrapsRED(t *testing.T) {
	tr := newFanoutTrack(redCodec().RTPCodecCapability, "prod", "part")
	opus := opusCodec()
	opus.PayloadType = 109
	red, plain := &recordingWriter{}, &recordingWriter{}
	for _, c := range []*fakeBindContext{
		{id: "red", ssrc: 1, codecs: []webrtc.RTPCodecParameters{redCodec(), opusCodec()}, w: red},
		{id: "opus", ssrc: 2, codecs: []webrtc.RTPCodecParameters{opus}, w: plain},
	} {
		if _, err := tr.Bind(c); err != nil {
			t.Fatalf("Bind(%s): %v", c.id, err)
		}
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: redPayloadType, SequenceNumber: 5, Timestamp: 960}, Payload: testREDPayload}
	var scratch [maxCachedPayload]byte
	var hdr rtp.Header
	tr.write(tr.snapshot(), 0, pkt, &frameInfo{}, 48000, 1, scratch[:], &hdr)
	if red.writes != 1 || red.last.PayloadType != redPayloadType || !bytes.Equal(red.payload, testREDPayload) {
		t.Errorf("RED sender: %d writes, pt %d, payload %v", red.writes, red.last.PayloadType, red.payload)
	}
	if plain.writes != 1 || plain.last.PayloadType != 109 || !bytes.Equal(plain.payload, testREDPrimary) {
		t.Errorf("Opus sender: %d writes, pt %d, payload %v", plain.writes, plain.last.PayloadType, plain.payload)
	}
	pkt.SequenceNumber++
	pkt.Payload = []byte{0x80 | 111, 0, 0} // malformed
	tr.write(tr.snapshot(), 0, pkt, &frameInfo{}, 48000, 2, scratch[:], &hdr)
	if red.writes != 2 || plain.writes != 1 {
		t.Errorf("malformed RED: %d RED writes (want 2: forwarded as is), %d Opus writes (want 1: dropped)", red.writes, plain.writes)
	}
}
