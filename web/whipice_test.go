package web

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestParseSDPFrag: the credentials and candidates of trickle-ice-sdpfrag
// bodies, with their mid and m= section index.
func TestParseSDPFrag(t *testing.T) {
	tests := []struct {
		name, body       string
		ufrag, pwd       string
		cands            int
		firstMid         string
		firstIndex, cand int
	}{
		{"trickle", "a=ice-ufrag:u1\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", "u1", "", 1, "0", -1, 0},
		{"restart with m-line", "a=ice-ufrag:u2\r\na=ice-pwd:p2\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\n" +
			"a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\na=candidate:2 1 udp 1 127.0.0.1 10 typ host\r\na=end-of-candidates\r\n", "u2", "p2", 2, "a", 0, 1},
		{"restart without candidates", "a=ice-ufrag:u3\na=ice-pwd:p3\n", "u3", "p3", 0, "", -1, 0},
		{"media-level credentials", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:u4\r\na=ice-pwd:p4\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", "u4", "p4", 1, "", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseSDPFrag(tc.body)
			if err != nil {
				t.Fatalf("parseSDPFrag: %v", err)
			}
			if f.ufrag != tc.ufrag || f.pwd != tc.pwd || len(f.cands) != tc.cands {
				t.Fatalf("got ufrag %q pwd %q %d candidates, want %q %q %d", f.ufrag, f.pwd, len(f.cands), tc.ufrag, tc.pwd, tc.cands)
			}
			if tc.cands == 0 {
				return
			}
			c := f.cands[tc.cand]
			if mid := c.SDPMid; (mid == nil) != (tc.firstMid == "") || (mid != nil && *mid != tc.firstMid) {
				t.Errorf("mid = %v, want %q", mid, tc.firstMid)
			}
			if idx := c.SDPMLineIndex; (idx == nil) != (tc.firstIndex < 0) || (idx != nil && int(*idx) != tc.firstIndex) {
				t.Errorf("m-line index = %v, want %d", idx, tc.firstIndex)
			}
		})
	}
	many := strings.Repeat("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", maxFragCandidates+1)
	if _, err := parseSDPFrag(many); httpStatus(err) != http.StatusBadRequest {
		t.Errorf("%d candidates: err %v, want a 400", maxFragCandidates+1, err)
	}
}

// TestIfMatch: the If-Match values that allow a PATCH of a resource whose
// entity-tag is "e1".
func TestIfMatch(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"", true},
		{"*", true},
		{`"*"`, true},
		{`"e1"`, true},
		{`W/"e1"`, true},
		{`"e0", "e1"`, true},
		{`"e0"`, false},
		{"e1", false},
	}
	for _, tc := range tests {
		if got := ifMatch(tc.header, `"e1"`); got != tc.want {
			t.Errorf("ifMatch(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

// iceCounter counts a pion peer's ICE connection states.
type iceCounter struct{ checking, connected atomic.Int64 }

// watchICE counts m's ICE states from now on.
func watchICE(m *mediaPeer) *iceCounter {
	ic := &iceCounter{}
	m.pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		switch s {
		case webrtc.ICEConnectionStateChecking:
			ic.checking.Add(1)
		case webrtc.ICEConnectionStateConnected:
			ic.connected.Add(1)
		}
	})
	return ic
}

// clientFrag is the fragment a WHIP or WHEP client sends to restart ICE:
// the credentials of its new offer and the first m= section with its mid
// and candidates. Written out here, independently of the server's code.
func clientFrag(t *testing.T, offer string) string {
	t.Helper()
	var b strings.Builder
	section := 0
	for _, line := range strings.Split(offer, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "m="):
			section++
			if section == 1 {
				b.WriteString(line + "\r\n")
			}
		case section == 1 && (strings.HasPrefix(line, "a=ice-ufrag:") || strings.HasPrefix(line, "a=ice-pwd:") ||
			strings.HasPrefix(line, "a=mid:") || strings.HasPrefix(line, "a=candidate:")):
			b.WriteString(line + "\r\n")
		}
	}
	return b.String()
}

// withICE returns the answer sdp with the credentials and candidates of a
// restart's reply fragment in place of its own (candidates go to the
// first m= section).
func withICE(sdp, reply string) string {
	var ufrag, pwd string
	var cands []string
	for _, line := range strings.Split(reply, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			ufrag = line
		case strings.HasPrefix(line, "a=ice-pwd:"):
			pwd = line
		case strings.HasPrefix(line, "a=candidate:"):
			cands = append(cands, line)
		}
	}
	var out []string
	section := 0
	for _, line := range strings.Split(strings.TrimRight(sdp, "\r\n"), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			section++
		case strings.HasPrefix(line, "a=candidate:"), line == "a=end-of-candidates":
			continue
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			line = ufrag
		case strings.HasPrefix(line, "a=ice-pwd:"):
			line = pwd
			if section == 1 {
				out = append(out, line)
				out = append(out, cands...)
				continue
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\r\n") + "\r\n"
}

// restartICE restarts m's ICE through a PATCH of its resource loc (RFC
// 9725): a new offer with new credentials, sent as a fragment; on 200
// the reply's credentials and candidates replace the server's in the
// remote answer. It returns the PATCH's status, headers and body.
func (m *mediaPeer) restartICE(env *testEnv, loc string, hdr http.Header) (int, http.Header, string) {
	m.t.Helper()
	offer, err := m.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		m.t.Fatalf("CreateOffer(ICERestart): %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(m.pc)
	if err := m.pc.SetLocalDescription(offer); err != nil {
		m.t.Fatalf("SetLocalDescription(restart): %v", err)
	}
	<-gathered
	status, h, body := env.do(http.MethodPatch, loc, mimeSDPFrag, clientFrag(m.t, m.pc.LocalDescription().SDP), hdr)
	if status != http.StatusOK {
		return status, h, body
	}
	answer := withICE(m.pc.RemoteDescription().SDP, body)
	if err := m.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		m.t.Fatalf("SetRemoteDescription(restart answer): %v", err)
	}
	return status, h, body
}

// TestWHIPWHEPICERestart: a pion WHIP publisher and a pion WHEP viewer
// restart ICE through PATCH: 200 with the node's new credentials and
// candidates and a new ETag, the client's ICE goes through checking to
// connected again, and media keeps flowing to the viewer afterwards
// (packets counted after the reconnection); a restart the connection
// refuses first is rolled back. Then the RFC 9725 rules for
// the next PATCHes: the old ETag is 412, the new one trickles (204), the
// old credentials are 409, a restart with a stale If-Match is 412.
func TestWHIPWHEPICERestart(t *testing.T) {
	for _, kind := range []string{kindWHIP, kindWHEP} {
		t.Run(kind, func(t *testing.T) {
			env := newEnv(t, envOptions{})
			pub, pubLoc, pubHdr := startWHIP(t, env, "ice", "Encoder", nil)
			viewer := newMediaPeer(t, false)
			status, viewHdr, body := env.do(http.MethodPost, "/rooms/ice/whep", mimeSDP, viewer.offer(), nil)
			if status != http.StatusCreated {
				t.Fatalf("POST whep: status %d (%s)", status, body)
			}
			viewer.answer(body)
			waitFor(t, "RTP at the viewer", func() bool { return viewer.received.Load() > 10 })

			peer, loc, etag := pub, pubLoc, pubHdr.Get("ETag")
			if kind == kindWHEP {
				peer, loc, etag = viewer, viewHdr.Get("Location"), viewHdr.Get("ETag")
			}
			waitFor(t, "the restarting peer to connect", func() bool {
				return peer.pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected
			})
			oldServerUfrag := offerUfragOf(t, peer.pc.RemoteDescription().SDP)
			oldClientUfrag := offerUfragOf(t, peer.pc.LocalDescription().SDP)
			ic := watchICE(peer)

			stale := "a=ice-ufrag:staleufrag\r\na=ice-pwd:stalepasswordstalepassword\r\n"
			if status, _, body := env.do(http.MethodPatch, loc, mimeSDPFrag, stale, http.Header{"If-Match": {`"stale"`}}); status != http.StatusPreconditionFailed {
				t.Fatalf("restart with a stale If-Match: status %d (%s), want 412", status, body)
			}
			// A restart the connection refuses (a malformed candidate) is
			// rolled back: 400, and media keeps flowing on the old ICE
			// session.
			bad := "a=ice-ufrag:badufrag\r\na=ice-pwd:badpasswordbadpasswordxx\r\na=mid:0\r\na=candidate:garbage\r\n"
			if status, _, body := env.do(http.MethodPatch, loc, mimeSDPFrag, bad, http.Header{"If-Match": {"*"}}); status != http.StatusBadRequest {
				t.Fatalf("restart with a malformed candidate: status %d (%s), want 400", status, body)
			}
			base := viewer.received.Load()
			waitFor(t, "RTP at the viewer after the refused restart", func() bool { return viewer.received.Load() > base+20 })

			status, h, reply := peer.restartICE(env, loc, http.Header{"If-Match": {"*"}})
			if status != http.StatusOK {
				t.Fatalf("restart: status %d (%s), want 200", status, reply)
			}
			if ct := h.Get("Content-Type"); ct != mimeSDPFrag {
				t.Errorf("restart reply Content-Type %q, want %s", ct, mimeSDPFrag)
			}
			newETag := h.Get("ETag")
			if newETag == "" || newETag == etag {
				t.Errorf("ETag after the restart %q, before %q: want a new one", newETag, etag)
			}
			newServerUfrag := offerUfragOf(t, reply)
			if newServerUfrag == oldServerUfrag || !strings.Contains(reply, "a=ice-pwd:") || !strings.Contains(reply, "a=candidate:") {
				t.Errorf("restart reply without new credentials or candidates:\n%s", reply)
			}
			waitFor(t, "ICE checking and connected again", func() bool {
				return ic.checking.Load() >= 1 && ic.connected.Load() >= 1 &&
					peer.pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected
			})
			base = viewer.received.Load()
			waitFor(t, "RTP at the viewer after the restart", func() bool { return viewer.received.Load() > base+50 })

			newClientUfrag := offerUfragOf(t, peer.pc.LocalDescription().SDP)
			trickle := func(ufrag string) string {
				return "a=ice-ufrag:" + ufrag + "\r\na=mid:0\r\na=candidate:9 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
			}
			tests := []struct {
				name, body string
				hdr        http.Header
				want       int
			}{
				{"trickle with the old ETag", trickle(newClientUfrag), http.Header{"If-Match": {etag}}, http.StatusPreconditionFailed},
				{"trickle with the new ETag", trickle(newClientUfrag), http.Header{"If-Match": {newETag}}, http.StatusNoContent},
				{"trickle of the old ICE session", trickle(oldClientUfrag), nil, http.StatusConflict},
				{"restart to old credentials", "a=ice-ufrag:" + oldClientUfrag + "\r\na=ice-pwd:oldpasswordoldpasswordxx\r\n", http.Header{"If-Match": {"*"}}, http.StatusConflict},
				{"new ufrag without a password", "a=ice-ufrag:brandnew\r\n", nil, http.StatusBadRequest},
			}
			for _, tc := range tests {
				if status, _, body := env.do(http.MethodPatch, loc, mimeSDPFrag, tc.body, tc.hdr); status != tc.want {
					t.Errorf("%s: status %d (%s), want %d", tc.name, status, body, tc.want)
				}
			}
			if n := env.srv.mediaSessions(); n != 2 {
				t.Errorf("whip/whep sessions = %d, want 2 (the refused PATCHes end nothing)", n)
			}
		})
	}
}

// TestRestartOffer: the offer the node builds for a restart has the new
// credentials wherever the old ones were, none of the old candidates, and
// each new candidate in the m= section of its mid (else index, else the
// first).
func TestRestartOffer(t *testing.T) {
	prev := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpasswordoldpasswordxx\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\na=rtpmap:111 opus/48000/2\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:old\r\na=ice-pwd:oldpasswordoldpasswordxx\r\na=rtpmap:96 VP8/90000\r\n"
	one, zero := uint16(1), "0"
	f := sdpFrag{ufrag: "new", pwd: "newpasswordnewpasswordxx", cands: []webrtc.ICECandidateInit{
		{Candidate: "candidate:2 1 udp 2130706431 127.0.0.1 6000 typ host", SDPMid: &zero},
		{Candidate: "candidate:3 1 udp 2130706431 127.0.0.1 6001 typ host", SDPMLineIndex: &one},
		{Candidate: "candidate:4 1 udp 2130706431 127.0.0.1 6002 typ host"},
	}}
	out, err := restartOffer(prev, f)
	if err != nil {
		t.Fatalf("restartOffer: %v", err)
	}
	sections := strings.Split(out, "m=")
	if len(sections) != 3 {
		t.Fatalf("restart offer has %d m= sections, want 2:\n%s", len(sections)-1, out)
	}
	tests := []struct {
		name, section, want string
		present             bool
	}{
		{"audio new ufrag", sections[1], "a=ice-ufrag:new", true},
		{"audio new pwd", sections[1], "a=ice-pwd:newpasswordnewpasswordxx", true},
		{"video new ufrag", sections[2], "a=ice-ufrag:new", true},
		{"old credentials", out, ":old", false},
		{"old candidate", out, " 5000 typ host", false},
		{"old end-of-candidates", out, "a=end-of-candidates", false},
		{"candidate by mid", sections[1], " 6000 typ host", true},
		{"candidate by index", sections[2], " 6001 typ host", true},
		{"candidate without either in the first", sections[1], " 6002 typ host", true},
		{"by-index candidate only there", sections[1], " 6001 typ host", false},
		{"codecs kept", sections[2], "a=rtpmap:96 VP8/90000", true},
	}
	for _, tc := range tests {
		if got := strings.Contains(tc.section, tc.want); got != tc.present {
			t.Errorf("%s: contains %q = %v, want %v\n%s", tc.name, tc.want, got, tc.present, out)
		}
	}
	if _, err := restartOffer("garbage", f); httpStatus(err) != http.StatusBadRequest {
		t.Errorf("restartOffer(garbage): err %v, want a 400", err)
	}
}
