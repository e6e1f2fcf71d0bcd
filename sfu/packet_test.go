package sfu

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
)

// forwardTestPacket marshals an RTP packet as a publisher or a link sends it.
func forwardTestPacket(t *testing.T, payload []byte, padding byte, exts map[uint8][]byte) []byte {
	t.Helper()
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 4242, Timestamp: 90000, SSRC: 0xabcd, Marker: true},
		Payload: payload,
	}
	for id, v := range exts {
		if err := p.SetExtension(id, v); err != nil {
			t.Fatalf("SetExtension: %v", err)
		}
	}
	if padding > 0 {
		p.Padding = true
		p.Header.PaddingSize = padding
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}

func TestParseForwarded(t *testing.T) {
	payload := []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3}
	tests := []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"plain", forwardTestPacket(t, payload, 0, nil), true},
		{"extensions are stripped", forwardTestPacket(t, payload, 0, map[uint8][]byte{3: {0, 7}, 5: {1}}), true},
		{"padding is stripped", forwardTestPacket(t, payload, 4, map[uint8][]byte{3: {0, 7}}), true},
		{"padding only", forwardTestPacket(t, nil, 8, nil), false},
		{"not rtp", []byte{0x80, 96, 0}, false},
	}
	var pkt rtp.Packet // reused across cases, as the readers reuse it
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseForwarded(&pkt, tc.raw); got != tc.ok {
				t.Fatalf("ParseForwarded = %v, want %v", got, tc.ok)
			}
			if !tc.ok {
				return
			}
			h := pkt.Header
			if h.SequenceNumber != 4242 || h.Timestamp != 90000 || h.SSRC != 0xabcd || !h.Marker || h.PayloadType != 96 {
				t.Errorf("header = %+v, want the sender's seq, timestamp, ssrc, marker, payload type", h)
			}
			if h.Extension || h.ExtensionProfile != 0 || len(h.Extensions) != 0 {
				t.Errorf("extensions kept: %v profile %#x %+v", h.Extension, h.ExtensionProfile, h.Extensions)
			}
			if h.Padding || h.PaddingSize != 0 || pkt.PaddingSize != 0 { //nolint:staticcheck // the deprecated field is copied by pion too
				t.Errorf("padding kept: %v %d", h.Padding, h.PaddingSize)
			}
			if !bytes.Equal(pkt.Payload, payload) {
				t.Errorf("payload = %x, want %x", pkt.Payload, payload)
			}
			out, err := pkt.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if want := 12 + len(payload); len(out) != want {
				t.Errorf("forwarded packet is %d bytes, want %d (header without extensions + payload)", len(out), want)
			}
		})
	}
}

func TestParseForwardedDoesNotAllocate(t *testing.T) {
	raw := forwardTestPacket(t, make([]byte, 1100), 0, map[uint8][]byte{3: {0, 7}})
	var pkt rtp.Packet
	ParseForwarded(&pkt, raw) // first use sizes the packet's extension storage
	if n := testing.AllocsPerRun(100, func() {
		if !ParseForwarded(&pkt, raw) {
			t.Fatal("ParseForwarded rejected a valid packet")
		}
	}); n != 0 {
		t.Errorf("ParseForwarded allocates %.1f times per packet, want 0", n)
	}
}
