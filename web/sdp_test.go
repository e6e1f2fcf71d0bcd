package web

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// chromeOffer is a publish offer as Chromium sends it (audio + video,
// candidates trickled later), trimmed of nothing that matters here.
const chromeOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"a=extmap-allow-mixed\r\n" +
	"a=msid-semantic: WMS 5b7bd1f8-5b33-4f3e-8f3c-2f6f8d7c1a11\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=candidate:1467250027 1 udp 2122260223 3c9b5b1e-4d2a-4c6e-9a51-0d5b0a3f2e11.local 54400 typ host generation 0 network-cost 999\r\n" +
	"a=ice-ufrag:Qk2w\r\n" +
	"a=ice-pwd:2Bw0q0UO4wLq2c0b3Ls6lY5r\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" +
	"a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n" +
	"a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=sendonly\r\n" +
	"a=msid:5b7bd1f8-5b33-4f3e-8f3c-2f6f8d7c1a11 0c2b8a0e-7c1f-4a8e-b0a2-6d1e4b5f9c33\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtcp-rsize\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=rtcp-fb:111 transport-cc\r\n" +
	"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
	"a=rtpmap:63 red/48000/2\r\n" +
	"a=fmtp:63 111/111\r\n" +
	"a=rtpmap:9 G722/8000\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:13 CN/8000\r\n" +
	"a=rtpmap:110 telephone-event/48000\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\n" +
	"a=ssrc:3026689552 cname:o1Rk0mWf8bYx2c3d\r\n" +
	"a=ssrc:3026689552 msid:5b7bd1f8-5b33-4f3e-8f3c-2f6f8d7c1a11 0c2b8a0e-7c1f-4a8e-b0a2-6d1e4b5f9c33\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 116 117 118\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=rtcp:9 IN IP4 0.0.0.0\r\n" +
	"a=ice-ufrag:Qk2w\r\n" +
	"a=ice-pwd:2Bw0q0UO4wLq2c0b3Ls6lY5r\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:1\r\n" +
	"a=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\n" +
	"a=extmap:13 urn:3gpp:video-orientation\r\n" +
	"a=sendonly\r\n" +
	"a=msid:5b7bd1f8-5b33-4f3e-8f3c-2f6f8d7c1a11 9d3e2c1b-0a4f-4b8c-9e7d-5f6a1b2c3d44\r\n" +
	"a=rtcp-mux\r\n" +
	"a=rtcp-rsize\r\n" +
	"a=rtpmap:96 VP8/90000\r\n" +
	"a=rtcp-fb:96 goog-remb\r\n" +
	"a=rtcp-fb:96 transport-cc\r\n" +
	"a=rtcp-fb:96 ccm fir\r\n" +
	"a=rtcp-fb:96 nack\r\n" +
	"a=rtcp-fb:96 nack pli\r\n" +
	"a=rtpmap:97 rtx/90000\r\n" +
	"a=fmtp:97 apt=96\r\n" +
	"a=rtpmap:102 H264/90000\r\n" +
	"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n" +
	"a=rtpmap:103 rtx/90000\r\n" +
	"a=fmtp:103 apt=102\r\n" +
	"a=rtpmap:104 H264/90000\r\n" +
	"a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n" +
	"a=rtpmap:105 rtx/90000\r\n" +
	"a=fmtp:105 apt=104\r\n" +
	"a=rtpmap:106 H264/90000\r\n" +
	"a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n" +
	"a=rtpmap:107 rtx/90000\r\n" +
	"a=fmtp:107 apt=106\r\n" +
	"a=rtpmap:108 H264/90000\r\n" +
	"a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n" +
	"a=rtpmap:109 rtx/90000\r\n" +
	"a=fmtp:109 apt=108\r\n" +
	"a=rtpmap:127 H264/90000\r\n" +
	"a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n" +
	"a=rtpmap:125 rtx/90000\r\n" +
	"a=fmtp:125 apt=127\r\n" +
	"a=rtpmap:39 H264/90000\r\n" +
	"a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f\r\n" +
	"a=rtpmap:40 rtx/90000\r\n" +
	"a=fmtp:40 apt=39\r\n" +
	"a=rtpmap:45 AV1/90000\r\n" +
	"a=fmtp:45 level-idx=5;profile=0;tier=0\r\n" +
	"a=rtpmap:46 rtx/90000\r\n" +
	"a=fmtp:46 apt=45\r\n" +
	"a=rtpmap:98 VP9/90000\r\n" +
	"a=fmtp:98 profile-id=0\r\n" +
	"a=rtpmap:99 rtx/90000\r\n" +
	"a=fmtp:99 apt=98\r\n" +
	"a=rtpmap:100 VP9/90000\r\n" +
	"a=fmtp:100 profile-id=2\r\n" +
	"a=rtpmap:101 rtx/90000\r\n" +
	"a=fmtp:101 apt=100\r\n" +
	"a=rtpmap:112 H264/90000\r\n" +
	"a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\n" +
	"a=rtpmap:113 rtx/90000\r\n" +
	"a=fmtp:113 apt=112\r\n" +
	"a=rtpmap:116 red/90000\r\n" +
	"a=rtpmap:117 ulpfec/90000\r\n" +
	"a=rtpmap:118 rtx/90000\r\n" +
	"a=fmtp:118 apt=116\r\n" +
	"a=ssrc-group:FID 3985928812 1216371349\r\n" +
	"a=ssrc:3985928812 cname:o1Rk0mWf8bYx2c3d\r\n" +
	"a=ssrc:1216371349 cname:o1Rk0mWf8bYx2c3d\r\n"

// pionOffer returns a publish offer (VP8 + Opus, no candidates) made by
// a pion peer connection, as the engine's own clients would send it.
func pionOffer(t testing.TB) string {
	t.Helper()
	api, err := sfu.NewAPI(webrtc.SettingEngine{})
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("NewPeerConnection: %v", err)
	}
	defer pc.Close()
	for _, c := range []webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
	} {
		tr, err := webrtc.NewTrackLocalStaticRTP(c, strings.TrimPrefix(c.MimeType, "video/"), "cam")
		if err != nil {
			t.Fatalf("track: %v", err)
		}
		if _, err := pc.AddTrack(tr); err != nil {
			t.Fatalf("AddTrack: %v", err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("CreateOffer: %v", err)
	}
	return offer.SDP
}

// hostileSDPs returns offers that must be refused with invalid-sdp, each
// small enough to fit a signaling message (64 KiB once JSON-encoded).
func hostileSDPs(t testing.TB) map[string]string {
	t.Helper()
	valid := pionOffer(t)
	head, _, _ := strings.Cut(valid, "m=")
	firstMedia := strings.Index(valid, "a=mid:")
	encLen := func(s string) int { // length of s inside a JSON string
		b, _ := json.Marshal(s)
		return len(b) - 2
	}
	grow := func(prefix, suffix string, line func(i int) string) string {
		const envelope = len(`{"v":1,"type":"subscriber-answer","sdp":{"type":"answer","sdp":""}}`)
		size := envelope + encLen(prefix) + encLen(suffix)
		var b strings.Builder
		b.WriteString(prefix)
		for i := 0; ; i++ {
			l := line(i)
			if size += encLen(l); size > DefaultMaxMessageBytes {
				break
			}
			b.WriteString(l)
		}
		b.WriteString(suffix)
		return b.String()
	}
	return map[string]string{
		"thousands of m-lines": grow(strings.Replace(head, "a=group:BUNDLE 0 1", "a=group:BUNDLE 0", 1), "", func(i int) string {
			return fmt.Sprintf("m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:%d\r\na=rtpmap:96 VP8/90000\r\n", i)
		}),
		"thousands of candidates": grow(valid[:firstMedia], valid[firstMedia:], func(i int) string {
			return fmt.Sprintf("a=candidate:%d 1 udp 2130706431 198.51.100.%d %d typ host\r\n", i, i%250+1, 1024+i)
		}),
		"garbage candidate":          strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\na=candidate:garbage\r\n", 1),
		"garbage in fmtp":            strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\na=fmtp:96 \x01\x02;;;===;;\x1b[31m\r\n", 1),
		"fmtp with non-ASCII":        strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\na=fmtp:96 x=\u202e\u00e9\r\n", 1),
		"fmtp for payload type abc":  strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\na=fmtp:abc x=1\r\n", 1),
		"fmtp for payload type 4096": strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\na=fmtp:4096 x=1\r\n", 1),
		"huge fmtp":                  strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\na=fmtp:96 x="+strings.Repeat("9", 4000)+"\r\n", 1),
		"rtpmap with a huge number":  strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\na=rtpmap:99999999999999999999 VP8/90000\r\n", 1),
		"format that is no number":   strings.Replace(valid, "UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 96 x", 1),
		"no m-lines":                 head,
		"data channel":               head + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sctp-port:5000\r\n",
		"NUL byte":                   strings.Replace(valid, "s=-", "s=\x00", 1),
		"not UTF-8":                  strings.Replace(valid, "s=-", "s=\xff\xfe", 1),
		"huge session version":       strings.Replace(valid, "o=- ", "o=- 99999999999999999999999999 ", 1),
		"no version line":            strings.TrimPrefix(valid, "v=0\r\n"),
		"text":                       "hello, I am an offer",
	}
}

func TestCheckSDP(t *testing.T) {
	t.Run("accepted", func(t *testing.T) {
		valid := pionOffer(t)
		for name, sdp := range map[string]string{
			"chrome offer": chromeOffer,
			"pion offer":   valid,
			"with candidates": strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\n"+
				"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"+
				"a=candidate:2 1 udp 1694498815 198.51.100.7 6000 typ srflx raddr 10.0.0.1 rport 5000\r\n"+
				"a=candidate:3 1 tcp 1518280447 10.0.0.1 9 typ host tcptype active\r\n", 1),
			"fmtp with unknown parameters": strings.Replace(valid, "a=mid:0\r\n", "a=mid:0\r\na=fmtp:96 x-google-start-bitrate=800;foo=bar baz\r\n", 1),
		} {
			if err := checkSDP(typePublish, webrtc.SDPTypeOffer, sdp); err != nil {
				t.Errorf("%s refused: %v", name, err)
			}
		}
	})
	t.Run("refused", func(t *testing.T) {
		for name, sdp := range hostileSDPs(t) {
			err := checkSDP(typePublish, webrtc.SDPTypeOffer, sdp)
			if err == nil {
				t.Errorf("%s accepted", name)
				continue
			}
			if code := wireCode(err); code != codeInvalidSDP {
				t.Errorf("%s: code %s (%v), want %s", name, code, err, codeInvalidSDP)
			}
			if msg := err.Error(); len(msg) > 300 {
				t.Errorf("%s: error message of %d bytes echoes too much input", name, len(msg))
			}
		}
	})
	t.Run("answers", func(t *testing.T) {
		// An answer may reject a section (port 0) and has no media limit,
		// but the candidate limit applies.
		answer := strings.Replace(chromeOffer, "a=sendonly", "a=recvonly", -1)
		if err := checkSDP(typeSubscriberAnswer, webrtc.SDPTypeAnswer, answer); err != nil {
			t.Errorf("answer refused: %v", err)
		}
		many := strings.Replace(answer, "a=mid:0\r\n", "a=mid:0\r\n"+strings.Repeat("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", maxSDPCandidates+1), 1)
		if err := checkSDP(typeSubscriberAnswer, webrtc.SDPTypeAnswer, many); wireCode(err) != codeInvalidSDP {
			t.Errorf("answer with %d candidates: %v, want invalid-sdp", maxSDPCandidates+1, err)
		}
	})
}

// TestSignalingHostileSDP sends every hostile offer (and the same as a
// subscriber answer) from one client of a room in which another client
// publishes to a third: each is refused with invalid-sdp, the sender stays
// connected, and media keeps flowing in the room, also to a newcomer.
func TestSignalingHostileSDP(t *testing.T) {
	env := newEnv(t, envOptions{})
	alice, _ := newRTCClient(t, env, "hostile", "Alice")
	bob, _ := newRTCClient(t, env, "hostile", "Bob")
	alice.publishVP8()
	waitFor(t, "Bob to receive Alice's RTP", func() bool { return bob.received.Load() >= 10 })

	mallory, _ := env.join("hostile", "Mallory")
	for name, sdp := range hostileSDPs(t) {
		if name == "not UTF-8" {
			continue // cannot be sent: JSON decoding replaces invalid UTF-8
		}
		for _, typ := range []string{typePublish, typeSubscriberAnswer} {
			sdpType := "offer"
			if typ == typeSubscriberAnswer {
				sdpType = "answer"
			}
			msg, err := json.Marshal(map[string]any{"v": 1, "type": typ, "sdp": map[string]string{"type": sdpType, "sdp": sdp}})
			if err != nil || len(msg) > DefaultMaxMessageBytes {
				t.Fatalf("%s: message of %d bytes (%v) does not fit the limit", name, len(msg), err)
			}
			mallory.sendRaw(msg)
			m, err := mallory.read()
			for err == nil && (m.Type == typeSubscriberOffer || m.Type == typeProducerAdded || m.Type == typeParticipantJoined) {
				m, err = mallory.read() // room events
			}
			if err != nil || m.Type != typeError {
				t.Fatalf("%s as %s: got %+v (%v), want an error", name, typ, m, err)
			}
			// An answer without an outstanding offer may be refused for
			// that reason instead; never as an internal error.
			if m.Code != codeInvalidSDP && (typ == typePublish || m.Code != codeBadMessage) {
				t.Errorf("%s as %s: error %s (%s), want %s", name, typ, m.Code, m.Message, codeInvalidSDP)
			}
		}
	}
	mallory.ping()

	// The room still works: Bob keeps receiving, a newcomer gets media.
	before := bob.received.Load()
	waitFor(t, "Bob to keep receiving", func() bool { return bob.received.Load() >= before+10 })
	carol, _ := newRTCClient(t, env, "hostile", "Carol")
	waitFor(t, "Carol to receive Alice's RTP", func() bool { return carol.received.Load() >= 10 })
	if n := localParticipants(env.engine, "hostile"); n != 4 {
		t.Errorf("%d participants, want 4", n)
	}
}

// TestSignalingTrickleLimit: a client may trickle at most
// maxTrickleCandidates candidates per peer connection.
func TestSignalingTrickleLimit(t *testing.T) {
	env := newEnv(t, envOptions{cfg: Config{RateLimit: -1}})
	c, _ := env.join("trickle", "Al")
	c.send(map[string]any{"v": 1, "type": "publish", "sdp": map[string]string{"type": "offer", "sdp": pionOffer(t)}})
	c.expect(typePublishAnswer)
	for i := range maxTrickleCandidates {
		c.send(map[string]any{"v": 1, "type": "candidate", "target": "publisher", "candidate": map[string]any{
			"candidate": fmt.Sprintf("candidate:%d 1 udp 2130706431 127.0.0.1 %d typ host", i, 1024+i), "sdpMid": "0",
		}})
	}
	c.ping() // all accepted silently
	c.send(map[string]any{"v": 1, "type": "candidate", "target": "publisher", "candidate": map[string]any{
		"candidate": "candidate:x 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0",
	}})
	m := c.expectError(codeBadMessage)
	if !strings.Contains(m.Message, "more than") {
		t.Errorf("message %q does not explain the limit", m.Message)
	}
	// End-of-candidates does not count.
	c.send(map[string]any{"v": 1, "type": "candidate", "target": "publisher", "candidate": map[string]any{"candidate": ""}})
	c.ping()
}

func TestMatchOffer(t *testing.T) {
	offer := []string{"0", "1"}
	answer := strings.Replace(chromeOffer, "a=sendonly", "a=recvonly", -1) // mids 0 and 1
	tests := []struct {
		name   string
		answer string
		ok     bool
	}{
		{"same sections", answer, true},
		{"section missing", answer[:strings.Index(answer, "m=video")], false},
		{"no sections", answer[:strings.Index(answer, "m=audio")], false},
		{"mids swapped", strings.NewReplacer("a=mid:0", "a=mid:1", "a=mid:1", "a=mid:0").Replace(answer), false},
		{"extra section", answer + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n", false},
		{"unparsable", "nope", false},
	}
	for _, tt := range tests {
		err := matchOffer(typeSubscriberAnswer, tt.answer, offer)
		if (err == nil) != tt.ok || (err != nil && wireCode(err) != codeInvalidSDP) {
			t.Errorf("%s: matchOffer = %v, want ok=%v (else invalid-sdp)", tt.name, err, tt.ok)
		}
	}
}
