package sfu

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/internal/buffer"
)

// TestPublishLimitBucket drives the publish token bucket with a synthetic
// clock: a cap of 800 kbit/s is 100 kB/s, the bucket holds 100 kB and
// refills at 125 kB/s (the cap plus 25%).
func TestPublishLimitBucket(t *testing.T) {
	const ms = int64(time.Millisecond)
	type step struct {
		at   int64 // ms since start
		n    int
		want bool
	}
	tests := []struct {
		name  string
		cap   int
		steps []step
	}{
		{"a full bucket passes one second of the cap at once", 800_000, []step{
			{0, 60_000, true}, {0, 40_000, true}, {0, 1, false},
		}},
		{"refill at the cap plus headroom", 800_000, []step{
			{0, 100_000, true}, {100, 12_500, true}, {100, 1, false}, {200, 12_000, true}, {200, 1000, false},
		}},
		{"never more than one second in the bucket", 800_000, []step{
			{0, 100_000, true}, {10_000, 100_000, true}, {10_000, 1, false},
		}},
		{"no cap", -1, []step{{0, 10_000_000, true}, {0, 10_000_000, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newPublishLimit(tt.cap)
			start := int64(1_000_000) * ms
			drops := uint64(0)
			for i, s := range tt.steps {
				if got := l.allow(s.n, start+s.at*ms); got != s.want {
					t.Fatalf("step %d (%d bytes at %d ms): allow = %v, want %v", i, s.n, s.at, got, s.want)
				}
				if !s.want {
					drops++
				}
			}
			if l != nil {
				if got := l.dropped.Load(); got != drops {
					t.Errorf("dropped = %d, want %d", got, drops)
				}
			}
		})
	}
}

// TestPublishLimitAllocs: the per-packet check allocates nothing, whether
// the packet passes or is dropped.
func TestPublishLimitAllocs(t *testing.T) {
	l := newPublishLimit(1_000_000)
	now := int64(1)
	if a := testing.AllocsPerRun(1000, func() {
		now += 100
		l.allow(1200, now)
	}); a != 0 {
		t.Errorf("allow allocates %v per call", a)
	}
	if l.dropped.Load() == 0 {
		t.Fatal("the run never dropped; the drop path was not measured")
	}
}

// BenchmarkPublishLimit measures the per-packet cost of the publish cap.
func BenchmarkPublishLimit(b *testing.B) {
	l := newPublishLimit(DefaultMaxPublishBitrate)
	now := time.Now().UnixNano()
	for b.Loop() {
		now += 1000
		l.allow(1200, now)
	}
}

// TestAnnounceBitrate: the cap is written on every live video m-line of
// the answer, replacing bandwidth lines already there, and nowhere else.
func TestAnnounceBitrate(t *testing.T) {
	const answer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:99999\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n" +
		"m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=rtpmap:96 VP8/90000\r\n"
	tests := []struct {
		name    string
		in      string
		cap     int
		want    []string // substrings
		notWant []string
	}{
		{"video lines get the cap", answer, 4_000_000,
			[]string{"a=mid:1\r\n", "b=AS:4000\r\nb=TIAS:4000000\r\n"}, []string{"b=AS:99999"}},
		{"no cap leaves the answer alone", answer, -1, []string{"b=AS:99999"}, []string{"TIAS"}},
		{"unparsable answer is returned as is", "garbage", 1_000_000, []string{"garbage"}, []string{"TIAS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := announceBitrate(tt.in, tt.cap)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("answer lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("answer has %q:\n%s", w, got)
				}
			}
			if tt.cap > 0 && tt.in == answer && strings.Count(got, "b=TIAS:") != 1 {
				t.Errorf("want TIAS on the one live video m-line only:\n%s", got)
			}
		})
	}
}

// producerOf returns the participant's only producer once it exists.
func producerOf(t *testing.T, c *client) *Producer {
	t.Helper()
	var prod *Producer
	waitUntil(testContext(t), t, "the producer", func() bool {
		c.p.mu.Lock()
		defer c.p.mu.Unlock()
		for _, p := range c.p.producers {
			prod = p
		}
		return prod != nil
	})
	return prod
}

// TestPublishBitrateCap: a publisher sending about ten times the cap has
// its excess dropped and counted, the answer tells it the cap, and another
// publisher under the cap in the same room loses nothing; a subscriber
// receives both.
func TestPublishBitrateCap(t *testing.T) {
	const capBits = 400_000
	ctx := testContext(t)
	e := newTestEngine(t, func(c *Config) { c.MaxPublishBitrate = capBits })
	viewer := joinClient(t, e, "cap", "viewer")
	heavy := joinClient(t, e, "cap", "heavy")
	light := joinClient(t, e, "cap", "light")

	start := time.Now()
	big := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 77, Marker: true},
		Payload: append([]byte{0x10, 0x00, 0x9d, 0x01, 0x2a}, make([]byte, 995)...)}
	// 1000-byte payloads every 2 ms: about 4 Mbit/s.
	heavy.publishTrack(ctx, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		"video", "heavy", 2*time.Millisecond, big, 3000)
	light.publishVP8(ctx) // 13-byte payloads every 10 ms
	heavyProd, lightProd := producerOf(t, heavy), producerOf(t, light)
	waitMedia(ctx, t, viewer, heavyProd.Info())
	waitMedia(ctx, t, viewer, lightProd.Info())
	waitUntil(ctx, t, "the heavy publisher to be capped", func() bool {
		n, _ := heavy.p.PublishDropped()
		return n >= 100
	})
	time.Sleep(500 * time.Millisecond) // a stretch under the cap for both

	elapsed := time.Since(start)
	forwarded := heavyProd.traffic.packetsIn.Load()
	dropped, droppedBytes := heavy.p.PublishDropped()
	// What the bucket lets through at most: its depth plus the refill.
	limit := float64(capBits) / 8 * (publishBurst.Seconds() + (1+publishHeadroom)*elapsed.Seconds())
	passedBytes := float64(forwarded) * float64(len(big.Payload)+12)
	t.Logf("heavy publisher over %v: %d packets forwarded (%.0f kbit/s), %d dropped (%d bytes); cap %d kbit/s",
		elapsed.Round(time.Millisecond), forwarded, passedBytes*8/elapsed.Seconds()/1000, dropped, droppedBytes, capBits/1000)
	if passedBytes > limit {
		t.Errorf("forwarded %.0f bytes of the heavy publisher, more than the bucket allows (%.0f)", passedBytes, limit)
	}
	if n, b := light.p.PublishDropped(); n != 0 || b != 0 {
		t.Errorf("the light publisher lost %d packets (%d bytes) to the cap", n, b)
	}
	lightBefore := viewer.track(lightProd.Info().ID).packets.Load()
	waitUntil(ctx, t, "the light publisher's media to keep flowing", func() bool {
		return viewer.track(lightProd.Info().ID).packets.Load() >= lightBefore+10
	})
	st := e.Stats()
	if st.PublishDropped < dropped || st.PublishDroppedBytes < droppedBytes {
		t.Errorf("engine stats count %d dropped packets (%d bytes), participant %d (%d)",
			st.PublishDropped, st.PublishDroppedBytes, dropped, droppedBytes)
	}
}

// TestPublishAnswerAnnouncesCap: the publisher answer carries the cap on
// its video m-line.
func TestPublishAnswerAnnouncesCap(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MaxPublishBitrate = 1_500_000 })
	c := joinClient(t, e, "announce", "pub")
	pc, err := clientAPI(t, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := c.p.Publish(offer)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	video := answer.SDP[strings.Index(answer.SDP, "m=video"):]
	audio := answer.SDP[:strings.Index(answer.SDP, "m=video")]
	if !strings.Contains(video, "b=AS:1500\r\n") || !strings.Contains(video, "b=TIAS:1500000\r\n") || strings.Contains(audio, "b=") {
		t.Errorf("answer does not announce the cap on video only:\n%s", answer.SDP)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(answer); err != nil {
		t.Errorf("the munged answer is not accepted: %v", err)
	}
}

// TestPublishTooManyMedia: an offer with more than MaxSources m-lines is
// refused with ErrInvalidSDP.
func TestPublishTooManyMedia(t *testing.T) {
	e := newTestEngine(t, nil)
	tests := []struct {
		name  string
		media int
		ok    bool
	}{
		{"at the limit", MaxSources, true},
		{"over the limit", MaxSources + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := joinClient(t, e, "media-"+strings.ReplaceAll(tt.name, " ", "-"), "pub")
			pc, err := clientAPI(t, nil).NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			for range tt.media {
				if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
					webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
					t.Fatal(err)
				}
			}
			offer, err := pc.CreateOffer(nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.p.Publish(offer)
			if tt.ok && err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidSDP) {
				t.Fatalf("Publish = %v, want ErrInvalidSDP", err)
			}
		})
	}
}

// TestUnhandledDatagrams sends datagrams that belong to no session to the
// engine's media port: every one is counted, and the log gets one line for
// the whole flood (rate-limited), with the count.
func TestUnhandledDatagrams(t *testing.T) {
	var logs buffer.Sync
	e := newTestEngine(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	stunReq, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("nobody:nothing"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := []struct {
		name string
		data []byte
	}{
		{"text", []byte("GET / HTTP/1.1\r\n\r\n")},
		{"zeros", make([]byte, 100)},
		{"rtp-looking", append([]byte{0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 42}, make([]byte, 200)...)},
		{"dtls-looking", append([]byte{0x16, 0xfe, 0xfd}, make([]byte, 60)...)},
		{"stun for an unknown session", stunReq.Raw},
	}
	const rounds = 40
	conn, err := net.DialUDP("udp", nil, e.UDPAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := testContext(t)
	sent := uint64(0)
	for range rounds {
		for _, k := range kinds {
			if _, err := conn.Write(k.data); err != nil {
				t.Fatalf("send %s: %v", k.name, err)
			}
			sent++
		}
		time.Sleep(time.Millisecond) // stay within the socket's receive buffer
	}
	waitUntil(ctx, t, "every datagram to be counted", func() bool { return e.Stats().UnhandledDatagrams == sent })
	out := logs.String()
	if n := strings.Count(out, "datagrams not belonging to any session"); n != 1 {
		t.Errorf("%d log lines about the flood of %d datagrams, want 1:\n%s", n, sent, out)
	}
	if !strings.Contains(out, "count=1 ") || !strings.Contains(out, "last_from=127.0.0.1:") {
		t.Errorf("log line lacks the count or the source:\n%s", out)
	}
}
