package sfu

import (
	"context"
	"sync"
	"testing"

	"github.com/pion/dtls/v3"
	"github.com/pion/webrtc/v4"
)

// TestNACKAnsweredFromCache: a packet the subscriber never got (it went
// into the producer's cache but not out) is NACKed by the subscriber and
// retransmitted by the engine from the cache, on the RTX stream the
// subscriber negotiated. (A packet the subscriber did
// get would be dropped by its SRTP replay protection.) With and without
// Config.FastWrite (the retransmission then leaves through the engine's
// own SRTP context too).
func TestNACKAnsweredFromCache(t *testing.T) {
	for _, fast := range []bool{false, true} {
		t.Run(map[bool]string{false: "pion", true: "fast-write"}[fast], func(t *testing.T) {
			testNACKAnsweredFromCache(t, fast)
		})
	}
}

func testNACKAnsweredFromCache(t *testing.T, fast bool) {
	ctx := testContext(t)
	e := newTestEngine(t, func(c *Config) { c.FastWrite = fast })
	sub := joinClient(t, e, "r", "bob")
	info := remoteInfo("rp-nack", "remote-alice")
	prod, err := sub.p.Room().AddProducer(info, nil)
	if err != nil {
		t.Fatalf("AddProducer: %v", err)
	}
	rt := waitFeedMedia(ctx, t, sub, prod)
	// Packets from here on: one of them is lost on the way out.
	pkt := benchPacket()
	pkt.SequenceNumber = 1000
	const lost = 1005
	var c *Consumer
	waitUntil(ctx, t, "retransmission of the lost packet", func() bool {
		if pkt.SequenceNumber < lost+20 {
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			if pkt.SequenceNumber == lost {
				prod.layers[0].cache.put(pkt)
			} else if err := prod.WriteRTP(pkt); err != nil {
				t.Fatalf("WriteRTP: %v", err)
			}
		}
		return rt.received(lost) == 1
	})
	sub.p.mu.Lock()
	c = sub.p.consumers[info.ID]
	sub.p.mu.Unlock()
	if c == nil || c.resends.Load() == 0 {
		t.Fatalf("consumer did not count the retransmission")
	}
	// The client negotiated RTX: the retransmission went on the RTX
	// stream (pion's receiver repaired it into the track).
	if b := prod.track.binding(c.ssrc); b == nil || b.rtxSSRC == 0 || b.rtxSeq == 0 {
		t.Errorf("retransmission not sent on an RTX stream (binding %+v)", b)
	}
	if st := e.Stats(); st.NACKs == 0 || st.Retransmissions == 0 {
		t.Errorf("engine Stats: NACKs = %d, Retransmissions = %d, want both counted", st.NACKs, st.Retransmissions)
	}
}

// waitFeedMedia writes packets to prod until sub receives them.
func waitFeedMedia(ctx context.Context, t *testing.T, sub *client, prod *Producer) *remoteTrack {
	t.Helper()
	pkt := benchPacket()
	var rt *remoteTrack
	waitUntil(ctx, t, "media", func() bool {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		if err := prod.WriteRTP(pkt); err != nil {
			t.Fatalf("WriteRTP: %v", err)
		}
		rt = sub.track(prod.Info().ID)
		return rt != nil && rt.packets.Load() > 0
	})
	return rt
}

// TestConsumerOnNACK: NACKs are answered once per packet within
// nackResendInterval, only for the consumer's own SSRC, only for cached
// packets, and never for audio.
func TestConsumerOnNACK(t *testing.T) {
	newPair := func(kind Kind) (*Consumer, *recordingWriter) {
		mime := webrtc.MimeTypeVP8
		if kind == KindAudio {
			mime = webrtc.MimeTypeOpus
		}
		p := &Producer{track: newFanoutTrack(webrtc.RTPCodecCapability{MimeType: mime}, "p", "s"),
			layers: testLayers(kind, 1), info: ProducerInfo{Kind: kind}}
		w := &recordingWriter{}
		if _, err := p.track.Bind(&fakeBindContext{id: "a", ssrc: 7, w: w, codecs: []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime}, PayloadType: 98}}}); err != nil {
			t.Fatal(err)
		}
		pkt := benchPacket()
		pkt.SequenceNumber = 500
		if c := p.layers[0].cache; c != nil {
			c.put(pkt)
		}
		b := p.track.binding(7)
		b.m.switchTo(0, pkt, &frameInfo{keyframe: true}, 90000, 1) // as if pkt had been forwarded
		return &Consumer{producer: p, ssrc: 7, want: b.want}, w
	}
	tests := []struct {
		name  string
		kind  Kind
		nacks []uint16
		ssrc  uint32
		want  int
	}{
		{"cached packet", KindVideo, []uint16{500}, 7, 1},
		{"repeated NACK answered once", KindVideo, []uint16{500, 500, 500}, 7, 1},
		{"packet not cached", KindVideo, []uint16{501}, 7, 0},
		{"other SSRC", KindVideo, []uint16{500}, 8, 0},
		{"audio has no cache", KindAudio, []uint16{500}, 7, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, w := newPair(tt.kind)
			for _, seq := range tt.nacks {
				c.onNACK(tt.ssrc, seq)
			}
			if w.writes != tt.want || int(c.resends.Load()) != tt.want {
				t.Fatalf("writes = %d, resends = %d, want %d", w.writes, c.resends.Load(), tt.want)
			}
			if tt.want > 0 && (w.last.SSRC != 7 || w.last.PayloadType != 98 || w.last.SequenceNumber != 500 ||
				w.size != benchPayloadSize) {
				t.Errorf("resent header %+v, %d bytes", w.last, w.size)
			}
		})
	}
}

// TestSRTPProfile: the engine prefers AEAD_AES_128_GCM and falls back to
// AES_CM_128_HMAC_SHA1_80 for peers without GCM; media flows either way,
// with and without Config.FastWrite.
func TestSRTPProfile(t *testing.T) {
	tests := []struct {
		name     string
		profiles []dtls.SRTPProtectionProfile // client's; nil = pion's defaults
		want     string
		fast     bool // Config.FastWrite
	}{
		{"client with pion defaults", nil, "SRTP_AEAD_AES_128_GCM", false},
		{"client without GCM", []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80}, "SRTP_AES128_CM_HMAC_SHA1_80", false},
		{"client with pion defaults, fast write", nil, "SRTP_AEAD_AES_128_GCM", true},
		{"client without GCM, fast write", []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80}, "SRTP_AES128_CM_HMAC_SHA1_80", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			e := newTestEngine(t, func(c *Config) { c.FastWrite = tt.fast })
			sub := joinClientWith(t, e, "r", "bob", func(se *webrtc.SettingEngine) {
				if tt.profiles != nil {
					se.SetSRTPProtectionProfiles(tt.profiles...)
				}
			})
			info := remoteInfo("rp-srtp", "remote-alice")
			prod, err := sub.p.Room().AddProducer(info, nil)
			if err != nil {
				t.Fatalf("AddProducer: %v", err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			defer wg.Wait()
			defer close(stop)
			feed(prod, stop, &wg)
			waitMedia(ctx, t, sub, info)
			var got []string
			for _, s := range sub.p.sub.Load().GetStats() {
				if ts, ok := s.(webrtc.TransportStats); ok {
					got = append(got, ts.SRTPCipher)
				}
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("engine subscriber PC SRTP ciphers = %v, want [%s]", got, tt.want)
			}
		})
	}
}
