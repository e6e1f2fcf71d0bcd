package sfu

import (
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// viewerClient is a pion WHEP client: recvonly audio and video, counting
// the video packets and tracks it receives.
type viewerClient struct {
	pc      *webrtc.PeerConnection
	packets atomic.Int64
	tracks  atomic.Int64
}

// view makes a viewer of room with params for a new pion client.
func view(t *testing.T, e *Engine, room string, params ViewerParams) (*Viewer, *viewerClient) {
	t.Helper()
	return viewAPI(t, e, room, params, clientAPI(t, nil))
}

// viewAPI is view with a client made by api.
func viewAPI(t *testing.T, e *Engine, room string, params ViewerParams, api *webrtc.API) (*Viewer, *viewerClient) {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("NewPeerConnection: %v", err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	vc := &viewerClient{pc: pc}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatalf("AddTransceiverFromKind: %v", err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		vc.tracks.Add(1)
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			vc.packets.Add(1)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("CreateOffer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatalf("SetLocalDescription: %v", err)
	}
	<-gathered
	v, answer, err := e.View(room, *pc.LocalDescription(), params)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	t.Cleanup(v.Close)
	if err := pc.SetRemoteDescription(answer); err != nil {
		t.Fatalf("SetRemoteDescription: %v", err)
	}
	return v, vc
}

// TestViewerFollowsSpeaker: a default viewer shows the first publisher,
// moves to whoever speaks, and stays with them when they stop; its client
// keeps one video track throughout. A viewer of a named participant does
// not move.
func TestViewerFollowsSpeaker(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	alice := joinClient(t, e, "s", "alice")
	alice.publishVP8(ctx)
	waitProducers(ctx, t, alice.p.Room(), 1)
	bob := joinClient(t, e, "s", "bob")
	bob.publishVP8(ctx)
	waitProducers(ctx, t, alice.p.Room(), 2)

	v, vc := view(t, e, "s", ViewerParams{Name: "viewer"})
	named, _ := view(t, e, "s", ViewerParams{Name: "named", Follow: "alice"})
	waitUntil(ctx, t, "the viewer shows alice, the first publisher", func() bool { return v.Showing() == alice.p.ID() })
	waitUntil(ctx, t, "alice's video at the viewer", func() bool { return vc.packets.Load() > 20 })

	steps := []struct {
		who      *client
		speaking bool
		want     *client
	}{
		{bob, true, bob},     // bob speaks: the viewer moves to him
		{bob, false, bob},    // he stops: the viewer stays
		{alice, true, alice}, // alice speaks: back to her
	}
	for i, st := range steps {
		st.who.p.setSpeaking(st.speaking)
		waitUntil(ctx, t, "the viewer to show "+st.want.p.Info().Name, func() bool { return v.Showing() == st.want.p.ID() })
		base := vc.packets.Load()
		waitUntil(ctx, t, "video after the step", func() bool { return vc.packets.Load() > base+20 })
		if got := named.Showing(); got != alice.p.ID() {
			t.Errorf("step %d: the viewer of alice shows %q", i, got)
		}
	}
	if n := vc.tracks.Load(); n != 1 {
		t.Errorf("the viewer's client got %d tracks, want 1 (the video track moves between publishers)", n)
	}
}

// TestViewerRefusesBadOffer: an offer that is not one is ErrInvalidSDP
// and leaves nobody in the room.
func TestViewerRefusesBadOffer(t *testing.T) {
	e := newTestEngine(t, nil)
	tests := []struct {
		name string
		sd   webrtc.SessionDescription
	}{
		{"answer", webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: "v=0\r\n"}},
		{"garbage", webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: "garbage"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := e.View("b", tc.sd, ViewerParams{}); err == nil || !errors.Is(err, ErrInvalidSDP) {
				t.Errorf("View = %v, want ErrInvalidSDP", err)
			}
			if e.Room("b") != nil {
				t.Error("a refused viewer opened the room")
			}
		})
	}
}

// iceUfrag returns the first a=ice-ufrag of an SDP ("" none).
func iceUfrag(sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// TestViewerRenegotiate: a client's ICE-restart offer gets an answer with
// new ICE credentials; the client's ICE checks and connects again and the
// video goes on over the new ICE session. A non-offer is ErrInvalidSDP, and
// after Close ErrParticipantClosed.
func TestViewerRenegotiate(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	alice := joinClient(t, e, "r", "alice")
	alice.publishVP8(ctx)
	waitProducers(ctx, t, alice.p.Room(), 1)
	v, vc := view(t, e, "r", ViewerParams{Name: "viewer"})
	waitUntil(ctx, t, "video at the viewer", func() bool { return vc.packets.Load() > 20 })
	waitUntil(ctx, t, "the client's ICE to connect", func() bool {
		return vc.pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected
	})
	first := iceUfrag(vc.pc.RemoteDescription().SDP)
	var checking atomic.Int64
	vc.pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateChecking {
			checking.Add(1)
		}
	})

	offer, err := vc.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatalf("CreateOffer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(vc.pc)
	if err := vc.pc.SetLocalDescription(offer); err != nil {
		t.Fatalf("SetLocalDescription: %v", err)
	}
	<-gathered
	answer, err := v.Renegotiate(*vc.pc.LocalDescription())
	if err != nil {
		t.Fatalf("Renegotiate: %v", err)
	}
	if got := iceUfrag(answer.SDP); got == "" || got == first {
		t.Errorf("answer ice-ufrag %q, first %q: want new credentials", got, first)
	}
	if err := vc.pc.SetRemoteDescription(answer); err != nil {
		t.Fatalf("SetRemoteDescription: %v", err)
	}
	waitUntil(ctx, t, "the client's ICE to check and connect again", func() bool {
		return checking.Load() > 0 && vc.pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected
	})
	base := vc.packets.Load()
	waitUntil(ctx, t, "video after the restart", func() bool { return vc.packets.Load() > base+20 })
	if n := vc.tracks.Load(); n != 1 {
		t.Errorf("the client got %d tracks, want 1 (the restart adds none)", n)
	}

	if _, err := v.Renegotiate(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); !errors.Is(err, ErrInvalidSDP) {
		t.Errorf("Renegotiate(answer) = %v, want ErrInvalidSDP", err)
	}
	v.Close()
	if _, err := v.Renegotiate(*vc.pc.LocalDescription()); !errors.Is(err, ErrParticipantClosed) {
		t.Errorf("Renegotiate after Close = %v, want ErrParticipantClosed", err)
	}
}

// TestICERestartWindow: when the networks of an ordinary participant and
// of a viewer (whose client restarts ICE itself, over HTTP) vanish at the
// same moment, the participant is closed after the ICE disconnected and
// failed timeouts while the viewer is still there, waiting for a restart;
// the viewer ends (ErrConnectionFailed) once Config.ICERestartWindow
// passed without one. The times are printed, not asserted.
func TestICERestartWindow(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, func(c *Config) {
		c.ICEDisconnectedTimeout = 300 * time.Millisecond
		c.ICEFailedTimeout = 300 * time.Millisecond
		c.ICEKeepaliveInterval = 100 * time.Millisecond
		c.ICERestartWindow = 3 * time.Second
	})
	pub, pubConn := vanishingClient(t, e, "w", "alice")
	pub.publishVP8(ctx)
	waitProducers(ctx, t, pub.p.Room(), 1)

	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	viewConn := &vanishingConn{PacketConn: udp}
	mux := webrtc.NewICEUDPMux(nil, viewConn)
	t.Cleanup(func() { _ = mux.Close() })
	v, vc := viewAPI(t, e, "w", ViewerParams{Name: "viewer"}, clientAPI(t, func(se *webrtc.SettingEngine) { se.SetICEUDPMux(mux) }))
	waitUntil(ctx, t, "video at the viewer", func() bool { return vc.packets.Load() > 10 })

	cut := time.Now()
	pubConn.cut.Store(true)
	viewConn.cut.Store(true)
	select {
	case <-pub.p.Done():
	case <-ctx.Done():
		t.Fatal("the participant with a vanished network was not closed")
	}
	pubClosed := time.Since(cut)
	select {
	case <-v.Done():
		t.Fatalf("the viewer ended with the participant (%v after the cut), want it to wait for a restart", pubClosed)
	default:
	}
	select {
	case <-v.Done():
	case <-ctx.Done():
		t.Fatal("the viewer with a vanished network never ended")
	}
	if err := v.Err(); !errors.Is(err, ErrConnectionFailed) {
		t.Errorf("viewer Err = %v, want ErrConnectionFailed", err)
	}
	t.Logf("after the cut: participant closed after %v, viewer after %v (restart window %v)",
		pubClosed.Round(10*time.Millisecond), time.Since(cut).Round(10*time.Millisecond), 3*time.Second)
}
