package sfu

import (
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// BenchmarkNACKCache measures the packet cache that answers NACKs.
// "producer-cache" is the engine's: one packetCache per video producer,
// written once per packet whatever the number of subscribers; "write"
// stores one packet, "nack" stores one and answers a NACK for it through a
// consumer (Consumer.onNACK, synchronous, to a sender that discards).
// "pion-responder" is pion's nack responder interceptor as
// webrtc.RegisterDefaultInterceptors configures it, which the engine no
// longer uses (one cache of 1024 copied packets per subscriber stream, so
// a fan-out to N subscribers stores every packet N times); its "nack"
// resends on a new goroutine.
func BenchmarkNACKCache(b *testing.B) {
	b.Run("producer-cache/write", func(b *testing.B) {
		var c packetCache
		pkt := benchPacket()
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt.Payload)))
		for b.Loop() {
			pkt.SequenceNumber++
			c.put(pkt)
		}
	})
	b.Run("producer-cache/nack", func(b *testing.B) {
		p := &Producer{
			info:   ProducerInfo{Kind: KindVideo},
			track:  newFanoutTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "p", "s"),
			layers: testLayers(KindVideo, 1),
			codec:  codecVP8,
		}
		w := &recordingWriter{}
		if _, err := p.track.Bind(&fakeBindContext{id: "a", ssrc: 7, w: w, codecs: []webrtc.RTPCodecParameters{vp8Params(96)}}); err != nil {
			b.Fatal(err)
		}
		bnd := p.track.binding(7)
		// This measures answering NACKs, not refusing them: the
		// consumer's retransmission budget is lifted.
		bnd.resendWin, bnd.budget = math.MaxInt64, math.MaxInt
		c := &Consumer{producer: p, ssrc: 7}
		pkt := benchPacket()
		// A NACK is mapped through what the consumer was sent: forward a
		// packet to start the consumer's mapping, and again (outside the
		// timer) before the sequence numbers leave its range.
		forwarded := 0
		restart := func() {
			bnd.m = newMunger()
			fi := inspect(p.codec, pkt.Payload)
			forwarded += p.track.write(p.track.snapshot(), 0, pkt, &fi, 90000, time.Now().UnixNano(), p.scratch[:], &p.hdr)
		}
		restart()
		nacks := 0
		b.ReportAllocs()
		for b.Loop() {
			if nacks++; nacks%16384 == 0 {
				b.StopTimer()
				restart()
				b.StartTimer()
			}
			pkt.SequenceNumber++
			p.layers[0].cache.put(pkt)
			c.onNACK(7, pkt.SequenceNumber)
		}
		if answered := w.writes - forwarded; answered != nacks {
			b.Fatalf("%d of %d NACKs answered", answered, nacks)
		}
	})
	b.Run("pion-responder/write", func(b *testing.B) {
		w, _ := pionResponder(b)
		hdr, payload := benchHeaderPayload()
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			hdr.SequenceNumber++
			if _, err := w.Write(hdr, payload, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pion-responder/nack", func(b *testing.B) {
		w, resent := pionResponder(b)
		hdr, payload := benchHeaderPayload()
		// Fill the cache so lookups hit a full ring.
		for range 1024 {
			hdr.SequenceNumber++
			if _, err := w.Write(hdr, payload, nil); err != nil {
				b.Fatal(err)
			}
		}
		resent.counting.Store(true)
		b.ReportAllocs()
		for b.Loop() {
			hdr.SequenceNumber++
			if _, err := w.Write(hdr, payload, nil); err != nil {
				b.Fatal(err)
			}
			<-resent.ch // the write itself
			resent.nack(b, hdr.SSRC, hdr.SequenceNumber)
			select {
			case <-resent.ch:
			case <-time.After(testTimeout):
				b.Fatal("NACK not answered")
			}
		}
	})
}

// benchHeaderPayload returns an RTP header and a 1200-byte payload.
func benchHeaderPayload() (*rtp.Header, []byte) {
	p := benchPacket()
	return &p.Header, p.Payload
}

// responderFeed hands NACKs to a pion responder's RTCP reader and reports
// every packet the responder writes.
type responderFeed struct {
	reader interceptor.RTCPReader
	ch     chan struct{}
	buf    []byte // the next RTCP packet to read
	rbuf   []byte
	// counting makes the writer report packets on ch.
	counting atomic.Bool
}

func (f *responderFeed) nack(b *testing.B, ssrc uint32, seq uint16) {
	raw, err := rtcp.Marshal([]rtcp.Packet{&rtcp.TransportLayerNack{
		MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: seq}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	f.buf = raw
	if _, _, err := f.reader.Read(f.rbuf, nil); err != nil {
		b.Fatal(err)
	}
}

// pionResponder builds pion's nack responder with default options and
// binds one local stream with NACK feedback.
func pionResponder(b *testing.B) (interceptor.RTPWriter, *responderFeed) {
	b.Helper()
	factory, err := nack.NewResponderInterceptor()
	if err != nil {
		b.Fatal(err)
	}
	icpt, err := factory.NewInterceptor("")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = icpt.Close() })
	feed := &responderFeed{ch: make(chan struct{}, 2048), rbuf: make([]byte, 1500)}
	info := &interceptor.StreamInfo{
		SSRC: 0x1234, ClockRate: 90000, MimeType: "video/VP8",
		RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}},
	}
	w := icpt.BindLocalStream(info, interceptor.RTPWriterFunc(
		func(_ *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
			if feed.counting.Load() {
				feed.ch <- struct{}{}
			}
			return len(payload), nil
		}))
	feed.reader = icpt.BindRTCPReader(interceptor.RTCPReaderFunc(
		func(buf []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(buf, feed.buf), a, nil
		}))
	return w, feed
}

// BenchmarkSRTPWrite measures SRTP protection of one RTP packet with a
// 1200-byte payload (pion/srtp Context.EncryptRTP) per protection profile.
func BenchmarkSRTPWrite(b *testing.B) {
	for _, tt := range []struct {
		name    string
		profile srtp.ProtectionProfile
	}{
		{"AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80},
		{"AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm},
		{"AEAD_AES_256_GCM", srtp.ProtectionProfileAeadAes256Gcm},
	} {
		b.Run(tt.name, func(b *testing.B) {
			keyLen, err := tt.profile.KeyLen()
			if err != nil {
				b.Fatal(err)
			}
			saltLen, err := tt.profile.SaltLen()
			if err != nil {
				b.Fatal(err)
			}
			ctx, err := srtp.CreateContext(make([]byte, keyLen), make([]byte, saltLen), tt.profile)
			if err != nil {
				b.Fatal(err)
			}
			pkt := benchPacket()
			plain, err := pkt.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 0, len(plain)+64)
			var hdr rtp.Header
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt.Payload)))
			for b.Loop() {
				pkt.SequenceNumber++
				plain[2], plain[3] = byte(pkt.SequenceNumber>>8), byte(pkt.SequenceNumber)
				if _, err := ctx.EncryptRTP(dst, plain, &hdr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
