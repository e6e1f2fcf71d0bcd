package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// TestSubscriberPLIReachesPublisher: a subscriber's PLI is forwarded to the
// publisher as a PLI on the publisher PC.
func TestSubscriberPLIReachesPublisher(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, func(c *Config) { c.KeyframeInterval = 50 * time.Millisecond })
	pub := joinClient(t, e, "r", "alice")
	sub := joinClient(t, e, "r", "bob")
	pub.publishVP8(ctx)
	prods := waitProducers(ctx, t, pub.p.Room(), 1)
	rt := waitMedia(ctx, t, sub, prods[0])

	// The engine itself requests keyframes for a new consumer; count what
	// the server forwarded so far and wait until it all reached the
	// publisher.
	prod := pub.p.Room().Producer(prods[0].ID)
	waitUntil(ctx, t, "engine-initiated PLIs", func() bool {
		_, fwd := prod.keyframeStats()
		return fwd >= 1 && uint64(pub.pliCount()) >= fwd
	})
	// Now only the subscriber's PLIs can make the server forward more; the
	// publisher must see every forwarded PLI.
	_, base := prod.keyframeStats()
	waitUntil(ctx, t, "subscriber PLI at publisher", func() bool {
		if err := sub.sendPLI(rt); err != nil {
			t.Fatalf("subscriber WriteRTCP: %v", err)
		}
		_, fwd := prod.keyframeStats()
		return fwd > base && uint64(pub.pliCount()) >= fwd
	})
}

// TestSubscriberPLIThrottled: with a long KeyframeInterval a burst of
// subscriber PLIs is forwarded at most once.
func TestSubscriberPLIThrottled(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, func(c *Config) { c.KeyframeInterval = time.Hour })
	pub := joinClient(t, e, "r", "alice")
	sub := joinClient(t, e, "r", "bob")
	pub.publishVP8(ctx)
	prods := waitProducers(ctx, t, pub.p.Room(), 1)
	rt := waitMedia(ctx, t, sub, prods[0])
	waitUntil(ctx, t, "PLI from consumer creation", func() bool { return pub.pliCount() >= 1 })

	prod := pub.p.Room().Producer(prods[0].ID)
	const burst = 20
	for range burst {
		if err := sub.sendPLI(rt); err != nil {
			t.Fatalf("subscriber WriteRTCP: %v", err)
		}
	}
	waitUntil(ctx, t, "server to receive the burst", func() bool {
		req, _ := prod.keyframeStats()
		return req >= burst+1 // + NewConsumer's request (the first-RTCP one may coincide with a PLI)
	})
	if _, fwd := prod.keyframeStats(); fwd != 1 {
		t.Errorf("forwarded %d keyframe requests, want 1", fwd)
	}
	if n := pub.pliCount(); n != 1 {
		t.Errorf("publisher saw %d PLIs, want 1", n)
	}
}

func TestKeyframeThrottle(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		codec    Codec
		calls    int
		want     int64
	}{
		{"video long interval", time.Hour, Codec{MimeType: "video/VP8", ClockRate: 90000}, 10, 1},
		{"video tiny interval", time.Nanosecond, Codec{MimeType: "video/VP8", ClockRate: 90000}, 3, 3},
		{"audio never", time.Nanosecond, Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, func(c *Config) { c.KeyframeInterval = tt.interval })
			c := joinClient(t, e, "r", "x")
			kr := &countingRequester{}
			prod, err := c.p.Room().AddProducer(ProducerInfo{
				ID: "p1", ParticipantID: "remote", ParticipantName: "rem", Codec: tt.codec,
				Origin: "node-b", Remote: true,
			}, kr)
			if err != nil {
				t.Fatalf("AddProducer: %v", err)
			}
			// The local participant's goroutine creates its consumer, which
			// requests one keyframe (video); measure on top of that.
			c.p.barrier()
			base := kr.n.Load()
			for range tt.calls {
				if tt.interval == time.Nanosecond {
					time.Sleep(time.Millisecond) // make sure the (tiny) interval elapsed
				}
				prod.RequestKeyframe()
			}
			got := kr.n.Load() - base
			if tt.interval == time.Hour && base == 1 {
				tt.want = 0 // the consumer's request already used the interval
			}
			if got != tt.want {
				t.Errorf("forwarded %d (base %d), want %d", got, base, tt.want)
			}
		})
	}
}

func TestWantsKeyframe(t *testing.T) {
	marshal := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		return b
	}
	rr := &rtcp.ReceiverReport{SSRC: 1}
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"pli", marshal(&rtcp.PictureLossIndication{MediaSSRC: 1}), true},
		{"fir", marshal(&rtcp.FullIntraRequest{MediaSSRC: 1, FIR: []rtcp.FIREntry{{SSRC: 1}}}), true},
		{"rr then pli", marshal(rr, &rtcp.PictureLossIndication{MediaSSRC: 1}), true},
		{"rr only", marshal(rr), false},
		{"nack", marshal(&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 1}}}), false},
		{"remb", marshal(&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 1e6, SSRCs: []uint32{1}}), false},
		{"empty", nil, false},
		{"truncated", []byte{0x81, 206, 0xff}, false},
		{"bad length", []byte{0x80, 201, 0xff, 0xff, 0, 0, 0, 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wantsKeyframe(tt.b); got != tt.want {
				t.Errorf("wantsKeyframe = %v, want %v", got, tt.want)
			}
		})
	}
}
