package sfu

import (
	"bytes"
	"slices"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestPacketCache(t *testing.T) {
	var c packetCache
	put := func(seq uint16, payload []byte, csrc []uint32) {
		c.put(&rtp.Packet{
			Header:  rtp.Header{Version: 2, Marker: seq%2 == 0, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, CSRC: csrc},
			Payload: payload,
		})
	}
	put(10, []byte("ten"), nil)
	put(11, []byte("eleven"), []uint32{7, 8})
	put(65535, []byte("wrap"), nil)
	put(10+nackCacheSize, []byte("overwrites ten"), nil)
	put(12, bytes.Repeat([]byte{1}, maxCachedPayload+1), nil) // too large: not cached

	tests := []struct {
		name    string
		seq     uint16
		ok      bool
		payload string
		csrc    []uint32
	}{
		{"cached", 11, true, "eleven", []uint32{7, 8}},
		{"wrapped sequence number", 65535, true, "wrap", nil},
		{"overwritten by a newer packet", 10, false, "", nil},
		{"newer packet in the same slot", 10 + nackCacheSize, true, "overwrites ten", nil},
		{"never written", 13, false, "", nil},
		{"too large to cache", 12, false, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := rtp.Header{CSRC: make([]uint32, 0, maxCSRC), SSRC: 99}
			buf := make([]byte, maxCachedPayload)
			payload, ok := c.get(tt.seq, &h, buf)
			if ok != tt.ok {
				t.Fatalf("get(%d) ok = %v, want %v", tt.seq, ok, tt.ok)
			}
			if !ok {
				return
			}
			if string(payload) != tt.payload {
				t.Errorf("payload = %q, want %q", payload, tt.payload)
			}
			if h.SequenceNumber != tt.seq || h.Timestamp != uint32(tt.seq)*3000 || h.Marker != (tt.seq%2 == 0) || h.Version != 2 {
				t.Errorf("header = %+v", h)
			}
			if !slices.Equal(h.CSRC, tt.csrc) && len(h.CSRC)+len(tt.csrc) > 0 {
				t.Errorf("CSRC = %v, want %v", h.CSRC, tt.csrc)
			}
		})
	}
}

func TestForEachNACK(t *testing.T) {
	marshal := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type hit struct {
		ssrc uint32
		seq  uint16
	}
	tests := []struct {
		name string
		b    []byte
		want []hit
	}{
		{"single", marshal(&rtcp.TransportLayerNack{MediaSSRC: 5, Nacks: []rtcp.NackPair{{PacketID: 100}}}),
			[]hit{{5, 100}}},
		{"bitmask and wrap", marshal(&rtcp.TransportLayerNack{MediaSSRC: 5, Nacks: []rtcp.NackPair{
			{PacketID: 65534, LostPackets: 0b101}, {PacketID: 7}}}),
			[]hit{{5, 65534}, {5, 65535}, {5, 1}, {5, 7}}},
		{"in a compound packet", marshal(
			&rtcp.ReceiverReport{SSRC: 1},
			&rtcp.PictureLossIndication{MediaSSRC: 5},
			&rtcp.TransportLayerNack{MediaSSRC: 6, Nacks: []rtcp.NackPair{{PacketID: 1}}}),
			[]hit{{6, 1}}},
		{"no NACK", marshal(&rtcp.PictureLossIndication{MediaSSRC: 5}), nil},
		{"truncated", marshal(&rtcp.TransportLayerNack{MediaSSRC: 5, Nacks: []rtcp.NackPair{{PacketID: 100}}})[:10], nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []hit
			forEachNACK(tt.b, func(ssrc uint32, seq uint16) { got = append(got, hit{ssrc, seq}) })
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCacheAndNACKParseDoNotAllocate: storing a packet, looking one up and
// walking a NACK are allocation-free.
func TestCacheAndNACKParseDoNotAllocate(t *testing.T) {
	var c packetCache
	pkt := benchPacket()
	h := rtp.Header{CSRC: make([]uint32, 0, maxCSRC)}
	buf := make([]byte, maxCachedPayload)
	nack, err := rtcp.Marshal([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: 5, Nacks: []rtcp.NackPair{{PacketID: 3, LostPackets: 0xffff}}}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	count := func(uint32, uint16) { n++ }
	allocs := testing.AllocsPerRun(1000, func() {
		pkt.SequenceNumber++
		c.put(pkt)
		if _, ok := c.get(pkt.SequenceNumber, &h, buf); !ok {
			t.Fatal("just cached packet not found")
		}
		forEachNACK(nack, count)
	})
	if allocs != 0 {
		t.Errorf("allocations per packet = %v, want 0", allocs)
	}
	if n == 0 {
		t.Error("NACK callback never called")
	}
}
