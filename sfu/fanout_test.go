package sfu

import (
	"errors"
	"testing"

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
	tr.write(tr.snapshot(), 0, pkt, &fi, 90000, 1, scratch[:])
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
		tr.write(tr.snapshot(), 0, pkt, &fi, 90000, 1, scratch[:])
	}); allocs != 0 {
		t.Errorf("allocations per fan-out = %v, want 0", allocs)
	}
}
