package web

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	synth "github.com/confab/confab/internal/peer"
	"github.com/confab/confab/sfu"
)

// mediaPeer is a pion WHIP publisher (one VP8 track it keeps sending) or
// WHEP viewer (recvonly audio and video, counting the RTP it receives)
// over loopback.
type mediaPeer struct {
	t        *testing.T
	pc       *webrtc.PeerConnection
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	received atomic.Int64 // RTP packets received (viewer)
	// Viewer: the largest forward jump of the video sequence numbers
	// between two packets, and the number of tracks received.
	maxJump atomic.Int64
	tracks  atomic.Int64
	seq0    uint16 // publisher: the first sequence number sent
}

// newMediaPeer makes a publisher (publish) or a viewer; closed at cleanup.
func newMediaPeer(t *testing.T, publish bool) *mediaPeer {
	return newMediaPeerAt(t, publish, 0)
}

// newMediaPeerAt is newMediaPeer whose publisher numbers its packets from
// seq0.
func newMediaPeerAt(t *testing.T, publish bool, seq0 uint16) *mediaPeer {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api, err := sfu.NewAPI(se)
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("NewPeerConnection: %v", err)
	}
	m := &mediaPeer{t: t, pc: pc, seq0: seq0}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	t.Cleanup(m.close)
	if publish {
		m.publishVP8()
	} else {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				t.Fatalf("AddTransceiverFromKind: %v", err)
			}
		}
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			m.tracks.Add(1)
			video := tr.Kind() == webrtc.RTPCodecTypeVideo
			var last uint16
			for n := 0; ; n++ {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if video && n > 0 {
					if jump := int64(int16(pkt.SequenceNumber - last)); jump > m.maxJump.Load() {
						m.maxJump.Store(jump)
					}
				}
				last = pkt.SequenceNumber
				m.received.Add(1)
			}
		})
	}
	return m
}

// publishVP8 adds a VP8 track and sends a keyframe-looking packet every
// 20 ms until close.
func (m *mediaPeer) publishVP8() {
	track, err := webrtc.NewTrackLocalStaticRTP(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "whip")
	if err != nil {
		m.t.Fatalf("track: %v", err)
	}
	sender, err := m.pc.AddTrack(track)
	if err != nil {
		m.t.Fatalf("AddTrack: %v", err)
	}
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() {
		defer m.wg.Done()
		payload := []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 1, 2, 3, 4}
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 4343, Marker: true,
			SequenceNumber: m.seq0}, Payload: payload}
		synth.WriteEvery(m.ctx.Done(), 20*time.Millisecond, func() error {
			pkt.SequenceNumber++
			pkt.Timestamp += 1800
			return track.WriteRTP(pkt)
		})
	}()
}

// offer returns the peer's offer with all its candidates.
func (m *mediaPeer) offer() string {
	m.t.Helper()
	offer, err := m.pc.CreateOffer(nil)
	if err != nil {
		m.t.Fatalf("CreateOffer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(m.pc)
	if err := m.pc.SetLocalDescription(offer); err != nil {
		m.t.Fatalf("SetLocalDescription: %v", err)
	}
	<-gathered
	return m.pc.LocalDescription().SDP
}

// answer applies the server's answer.
func (m *mediaPeer) answer(sdp string) {
	m.t.Helper()
	if err := m.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		m.t.Fatalf("SetRemoteDescription(answer): %v", err)
	}
}

func (m *mediaPeer) close() {
	m.cancel()
	_ = m.pc.Close()
	m.wg.Wait()
}

// do sends a request to the test server and returns status, headers and
// body.
func (env *testEnv) do(method, path, contentType, body string, hdr http.Header) (int, http.Header, string) {
	env.t.Helper()
	req, err := http.NewRequest(method, env.http.URL+path, strings.NewReader(body))
	if err != nil {
		env.t.Fatalf("request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := env.http.Client().Do(req)
	if err != nil {
		env.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		env.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// publishers returns the names of the publishers of room's producers.
func publishers(e *sfu.Engine, room string) []string {
	r := e.Room(room)
	if r == nil {
		return nil
	}
	var names []string
	for _, p := range r.Producers() {
		names = append(names, p.ParticipantName)
	}
	return names
}

// startWHIP publishes a pion VP8 track into room as name and returns the
// peer and the resource path, once the producer exists.
func startWHIP(t *testing.T, env *testEnv, room, name string, hdr http.Header) (*mediaPeer, string, http.Header) {
	t.Helper()
	return startWHIPAt(t, env, room, name, hdr, 0)
}

// startWHIPAt is startWHIP whose publisher numbers its packets from seq0.
func startWHIPAt(t *testing.T, env *testEnv, room, name string, hdr http.Header, seq0 uint16) (*mediaPeer, string, http.Header) {
	t.Helper()
	pub := newMediaPeerAt(t, true, seq0)
	status, h, body := env.do(http.MethodPost, "/rooms/"+room+"/whip?name="+name, mimeSDP, pub.offer(), hdr)
	if status != http.StatusCreated {
		t.Fatalf("POST whip: status %d (%s), want 201", status, body)
	}
	pub.answer(body)
	waitFor(t, "the whip producer", func() bool {
		for _, n := range publishers(env.engine, room) {
			if n == name {
				return true
			}
		}
		return false
	})
	return pub, h.Get("Location"), h
}

// TestWHIPPublish: a WHIP offer makes a participant whose track becomes a
// producer of the room; the answer has the resource headers and
// candidates; DELETE ends it, a second DELETE is 404.
func TestWHIPPublish(t *testing.T) {
	env := newEnv(t, envOptions{})
	_, loc, h := startWHIP(t, env, "w", "Encoder", nil)
	if !strings.HasPrefix(loc, "/rooms/w/whip/") || len(loc) <= len("/rooms/w/whip/") {
		t.Errorf("Location = %q, want /rooms/w/whip/{id}", loc)
	}
	if h.Get("ETag") == "" {
		t.Error("no ETag")
	}
	if ct := h.Get("Content-Type"); ct != mimeSDP {
		t.Errorf("Content-Type = %q, want %s", ct, mimeSDP)
	}
	if n := localParticipants(env.engine, "w"); n != 1 {
		t.Errorf("local participants = %d, want 1", n)
	}
	if status, _, _ := env.do(http.MethodDelete, loc, "", "", nil); status != http.StatusOK {
		t.Fatalf("DELETE: status %d, want 200", status)
	}
	waitFor(t, "the whip participant to leave", func() bool { return localParticipants(env.engine, "w") == 0 })
	if status, _, _ := env.do(http.MethodDelete, loc, "", "", nil); status != http.StatusNotFound {
		t.Errorf("second DELETE: status %d, want 404", status)
	}
}

// TestWHIPRefusals: the statuses of requests the endpoints refuse.
func TestWHIPRefusals(t *testing.T) {
	env := newEnv(t, envOptions{})
	valid := newMediaPeer(t, true).offer()
	tests := []struct {
		name, method, path, ctype, body string
		hdr                             http.Header
		want                            int
	}{
		{"wrong content type", http.MethodPost, "/rooms/r/whip", "text/plain", valid, nil, http.StatusUnsupportedMediaType},
		{"malformed sdp", http.MethodPost, "/rooms/r/whip", mimeSDP, "v=0\r\nthis is not sdp", nil, http.StatusBadRequest},
		{"answer-less garbage whep", http.MethodPost, "/rooms/r/whep", mimeSDP, "hello", nil, http.StatusBadRequest},
		{"invalid room", http.MethodPost, "/rooms/bad%20room/whip", mimeSDP, valid, nil, http.StatusBadRequest},
		{"invalid name", http.MethodPost, "/rooms/r/whip?name=%01", mimeSDP, valid, nil, http.StatusBadRequest},
		{"foreign origin", http.MethodPost, "/rooms/r/whip", mimeSDP, valid, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"unknown resource delete", http.MethodDelete, "/rooms/r/whip/nope", "", "", nil, http.StatusNotFound},
		{"unknown resource patch", http.MethodPatch, "/rooms/r/whep/nope", mimeSDPFrag, "a=ice-ufrag:x\r\n", nil, http.StatusNotFound},
		{"get on endpoint", http.MethodGet, "/rooms/r/whip", "", "", nil, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := env.do(tc.method, tc.path, tc.ctype, tc.body, tc.hdr)
			if status != tc.want {
				t.Errorf("status %d (%s), want %d", status, body, tc.want)
			}
		})
	}
	if n := localParticipants(env.engine, "r"); n != 0 {
		t.Errorf("refused requests left %d participants", n)
	}
}

// TestWHIPPatchAndOptions: trickled candidates are taken (204), new ICE
// credentials without a password are refused (400; ICE restarts:
// whipice_test.go), a stale If-Match is 412; OPTIONS answers the
// CORS preflight of this host's pages and lists PATCH.
func TestWHIPPatchAndOptions(t *testing.T) {
	env := newEnv(t, envOptions{})
	pub, loc, h := startWHIP(t, env, "p", "Patcher", nil)
	ufrag := offerUfragOf(t, pub.pc.LocalDescription().SDP)
	cand := "a=ice-ufrag:" + ufrag + "\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
	tests := []struct {
		name, ctype, body string
		hdr               http.Header
		want              int
	}{
		{"trickle", mimeSDPFrag, cand, http.Header{"If-Match": {h.Get("ETag")}}, http.StatusNoContent},
		{"new ufrag without password", mimeSDPFrag, "a=ice-ufrag:other\r\n", nil, http.StatusBadRequest},
		{"stale etag", mimeSDPFrag, cand, http.Header{"If-Match": {`"old"`}}, http.StatusPreconditionFailed},
		{"wrong content type", mimeSDP, cand, nil, http.StatusUnsupportedMediaType},
		{"bad candidate", mimeSDPFrag, "a=candidate:garbage\r\n", nil, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := env.do(http.MethodPatch, loc, tc.ctype, tc.body, tc.hdr)
			if status != tc.want {
				t.Errorf("status %d (%s), want %d", status, body, tc.want)
			}
		})
	}
	origin := env.http.URL
	status, oh, _ := env.do(http.MethodOptions, "/rooms/p/whip", "", "", http.Header{
		"Origin": {origin}, "Access-Control-Request-Method": {"POST"},
	})
	if status != http.StatusNoContent || oh.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(oh.Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(oh.Get("Access-Control-Expose-Headers"), "Location") {
		t.Errorf("OPTIONS: status %d, headers %v", status, oh)
	}
	if status, _, _ := env.do(http.MethodOptions, "/rooms/p/whip", "", "", http.Header{"Origin": {"https://evil.example"}}); status != http.StatusForbidden {
		t.Errorf("OPTIONS from a foreign origin: status %d, want 403", status)
	}
}

// offerUfragOf returns the ice-ufrag of an SDP.
func offerUfragOf(t *testing.T, sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	t.Fatal("offer without ice-ufrag")
	return ""
}

// TestWHIPTokenAuth: with token auth WHIP needs a bearer token of the room
// with the publish grant, WHEP one with subscribe; the token's name wins.
func TestWHIPTokenAuth(t *testing.T) {
	env, keys := tokenEnv(t)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	tests := []struct {
		name, path string
		publish    bool
		hdr        http.Header
		want       int
	}{
		{"whip without token", "/rooms/t/whip", true, nil, http.StatusUnauthorized},
		{"whip garbage token", "/rooms/t/whip", true, bearer("nope"), http.StatusUnauthorized},
		{"whip expired", "/rooms/t/whip", true, bearer(mint(t, keys, "t", "e", "E", -time.Minute, "publish")), http.StatusUnauthorized},
		{"whip other room", "/rooms/t/whip", true, bearer(mint(t, keys, "x", "o", "O", time.Hour, "publish")), http.StatusForbidden},
		{"whip subscribe only", "/rooms/t/whip", true, bearer(mint(t, keys, "t", "s", "S", time.Hour, "subscribe")), http.StatusForbidden},
		{"whip screen only", "/rooms/t/whip", true, bearer(mint(t, keys, "t", "s", "S", time.Hour, "publish:screen")), http.StatusForbidden},
		{"whep without token", "/rooms/t/whep", false, nil, http.StatusUnauthorized},
		{"whep publish only", "/rooms/t/whep", false, bearer(mint(t, keys, "t", "p", "P", time.Hour, "publish")), http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := env.do(http.MethodPost, tc.path, mimeSDP, newMediaPeer(t, tc.publish).offer(), tc.hdr)
			if status != tc.want {
				t.Errorf("status %d (%s), want %d", status, body, tc.want)
			}
			if status == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %v", h)
			}
		})
	}
	tok := mint(t, keys, "t", "enc", "Studio", time.Hour, "publish")
	_, loc, _ := startWHIP(t, env, "t", "Studio", bearer(tok))
	if status, _, _ := env.do(http.MethodDelete, loc, "", "", nil); status != http.StatusUnauthorized {
		t.Errorf("DELETE without token: status %d, want 401", status)
	}
	if status, _, _ := env.do(http.MethodDelete, loc, "", "", bearer(tok)); status != http.StatusOK {
		t.Errorf("DELETE with token: status %d, want 200", status)
	}
}

// TestWHEPReceivesPublisher: a WHEP viewer gets the RTP of a WHIP
// publisher (the room's only publisher), named or by default; DELETE ends
// the viewer.
func TestWHEPReceivesPublisher(t *testing.T) {
	tests := []struct{ name, query string }{
		{"default (first publisher)", ""},
		{"named participant", "?participant=Cam"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, envOptions{})
			startWHIP(t, env, "v", "Cam", nil)
			viewer := newMediaPeer(t, false)
			status, h, body := env.do(http.MethodPost, "/rooms/v/whep"+tc.query, mimeSDP, viewer.offer(), nil)
			if status != http.StatusCreated {
				t.Fatalf("POST whep: status %d (%s), want 201", status, body)
			}
			viewer.answer(body)
			waitFor(t, "RTP at the viewer", func() bool { return viewer.received.Load() > 10 })
			if n := env.srv.mediaSessions(); n != 2 {
				t.Errorf("whip/whep sessions = %d, want 2", n)
			}
			if got := env.engine.Room("v").Participants(); len(got) != 1 {
				t.Errorf("listed participants = %v, want only the publisher (the viewer is hidden)", got)
			}
			if status, _, _ := env.do(http.MethodDelete, h.Get("Location"), "", "", nil); status != http.StatusOK {
				t.Fatalf("DELETE whep: status %d", status)
			}
			waitFor(t, "the viewer to end", func() bool { return env.srv.mediaSessions() == 1 })
			if n := localParticipants(env.engine, "v"); n != 1 {
				t.Errorf("local participants = %d, want the publisher only", n)
			}
		})
	}
}

// TestWHEPFollowsNamedAbsent: a viewer of a participant who is not there
// gets nothing while another publishes.
func TestWHEPFollowsNamedAbsent(t *testing.T) {
	env := newEnv(t, envOptions{})
	startWHIP(t, env, "n", "Other", nil)
	viewer := newMediaPeer(t, false)
	status, _, body := env.do(http.MethodPost, "/rooms/n/whep?participant=Nobody", mimeSDP, viewer.offer(), nil)
	if status != http.StatusCreated {
		t.Fatalf("POST whep: status %d (%s)", status, body)
	}
	viewer.answer(body)
	waitFor(t, "the viewer to connect", func() bool { return viewer.pc.ConnectionState() == webrtc.PeerConnectionStateConnected })
	// Then the publisher it follows arrives: its media flows.
	startWHIP(t, env, "n", "Nobody", nil)
	waitFor(t, "RTP of the followed publisher", func() bool { return viewer.received.Load() > 10 })
}

// TestWHEPMovesToNextPublisher: when the publisher a default viewer shows
// leaves, the viewer moves its senders to the next publisher: the same
// track goes on, its sequence numbers continue (the second publisher
// numbers its packets 30000 apart from the first).
func TestWHEPMovesToNextPublisher(t *testing.T) {
	env := newEnv(t, envOptions{})
	_, first, _ := startWHIPAt(t, env, "m", "First", nil, 0)
	startWHIPAt(t, env, "m", "Second", nil, 30000)
	viewer := newMediaPeer(t, false)
	status, _, body := env.do(http.MethodPost, "/rooms/m/whep", mimeSDP, viewer.offer(), nil)
	if status != http.StatusCreated {
		t.Fatalf("POST whep: status %d (%s)", status, body)
	}
	viewer.answer(body)
	waitFor(t, "RTP of the first publisher", func() bool { return viewer.received.Load() > 10 })
	if status, _, _ := env.do(http.MethodDelete, first, "", "", nil); status != http.StatusOK {
		t.Fatalf("DELETE first: status %d", status)
	}
	waitFor(t, "the first publisher to leave", func() bool { return len(publishers(env.engine, "m")) == 1 })
	base := viewer.received.Load()
	waitFor(t, "RTP of the second publisher", func() bool { return viewer.received.Load() > base+50 })
	if n := viewer.tracks.Load(); n != 1 {
		t.Errorf("viewer got %d tracks, want 1 (the same track continues)", n)
	}
	if j := viewer.maxJump.Load(); j > 100 {
		t.Errorf("largest sequence number jump %d, want the numbering to continue across the move", j)
	}
}

// TestWHIPDrain: draining ends the WHIP and WHEP sessions and refuses new
// offers with 503.
func TestWHIPDrain(t *testing.T) {
	env := newEnv(t, envOptions{})
	startWHIP(t, env, "d", "Encoder", nil)
	viewer := newMediaPeer(t, false)
	if status, _, body := env.do(http.MethodPost, "/rooms/d/whep", mimeSDP, viewer.offer(), nil); status != http.StatusCreated {
		t.Fatalf("POST whep: status %d (%s)", status, body)
	}
	env.srv.Drain("test")
	waitFor(t, "the sessions to end", func() bool { return env.srv.mediaSessions() == 0 && localParticipants(env.engine, "d") == 0 })
	status, _, body := env.do(http.MethodPost, "/rooms/d/whip", mimeSDP, newMediaPeer(t, true).offer(), nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"draining"`) {
		t.Errorf("POST while draining: status %d (%s), want 503 draining", status, body)
	}
}
