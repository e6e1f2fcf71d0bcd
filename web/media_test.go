package web

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// rtcClient is a pion-based browser stand-in speaking the signaling
// protocol: it publishes a synthetic VP8 track on its publisher PC and
// answers subscriber offers on its subscriber PC, trickling candidates both
// ways. A reader goroutine handles negotiation messages and forwards the
// rest to msgs.
type rtcClient struct {
	t    *testing.T
	ws   *wsClient
	api  *webrtc.API
	msgs chan testMsg

	ctx    context.Context // ends when the client is closed
	cancel context.CancelFunc
	wg     sync.WaitGroup

	received atomic.Int64 // RTP packets received on the subscriber PC

	mu     sync.Mutex
	pub    *peer
	sub    *peer
	tracks []*webrtc.TrackRemote
}

// peer is one client PC plus its trickle bookkeeping.
type peer struct {
	target    sfu.Target
	pc        *webrtc.PeerConnection
	described bool                      // our offer/answer was sent
	held      []webrtc.ICECandidateInit // local candidates waiting for that
	remote    []webrtc.ICECandidateInit // remote candidates waiting for a remote description
}

func newRTCClient(t *testing.T, env *testEnv, room, name string) (*rtcClient, testMsg) {
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
	c := &rtcClient{t: t, ws: env.mustDial(room), api: api, msgs: make(chan testMsg, 256)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	t.Cleanup(c.close)
	c.ws.send(map[string]any{"v": 1, "type": "join", "name": name})
	joined := c.ws.expect(typeJoined)
	c.wg.Add(1)
	go c.readLoop()
	return c, joined
}

// close tears the client down and waits for its goroutines.
func (c *rtcClient) close() {
	c.cancel()
	_ = c.ws.conn.CloseNow()
	c.mu.Lock()
	peers := []*peer{c.pub, c.sub}
	c.mu.Unlock()
	for _, p := range peers {
		if p != nil {
			_ = p.pc.Close()
		}
	}
	c.wg.Wait()
}

// fail reports a client error, unless the client is already being torn
// down (then PC operations fail as a matter of course).
func (c *rtcClient) fail(format string, args ...any) {
	if c.ctx.Err() == nil {
		c.t.Errorf(format, args...)
	}
}

func (c *rtcClient) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.fail("marshal: %v", err)
		return
	}
	// Write errors only happen when the connection is going away.
	_ = c.ws.conn.Write(c.ctx, websocket.MessageText, b)
}

func (c *rtcClient) readLoop() {
	defer c.wg.Done()
	for {
		_, b, err := c.ws.conn.Read(c.ctx)
		if err != nil {
			return
		}
		var m testMsg
		if err := json.Unmarshal(b, &m); err != nil {
			c.fail("undecodable message %s", b)
			return
		}
		switch m.Type {
		case typePublishAnswer:
			c.onPublishAnswer(m)
		case typeSubscriberOffer:
			c.onSubscriberOffer(m)
		case typeCandidate:
			c.onCandidate(m)
		default:
			select {
			case c.msgs <- m:
			case <-c.ctx.Done():
				return
			}
		}
	}
}

// newPeer creates a PC whose local candidates are trickled once described.
func (c *rtcClient) newPeer(target sfu.Target) (*peer, error) {
	pc, err := c.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &peer{target: target, pc: pc}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		c.mu.Lock()
		if !p.described {
			p.held = append(p.held, init)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.send(map[string]any{"v": 1, "type": "candidate", "target": target, "candidate": init})
	})
	return p, nil
}

// described marks p's description as sent and trickles held candidates.
func (c *rtcClient) described(p *peer) {
	c.mu.Lock()
	p.described = true
	held := p.held
	p.held = nil
	c.mu.Unlock()
	for _, init := range held {
		c.send(map[string]any{"v": 1, "type": "candidate", "target": p.target, "candidate": init})
	}
}

// applyRemoteCandidates adds candidates queued before the remote description.
func (c *rtcClient) applyRemoteCandidates(p *peer) {
	c.mu.Lock()
	queued := p.remote
	p.remote = nil
	c.mu.Unlock()
	for _, init := range queued {
		if err := p.pc.AddICECandidate(init); err != nil {
			c.fail("%s: AddICECandidate: %v", p.target, err)
		}
	}
}

func (c *rtcClient) onCandidate(m testMsg) {
	if m.Candidate == nil {
		c.fail("candidate message without candidate: %+v", m)
		return
	}
	c.mu.Lock()
	p := c.pub
	if sfu.Target(m.Target) == sfu.TargetSubscriber {
		p = c.sub
	}
	if p == nil || p.pc.RemoteDescription() == nil {
		if p != nil {
			p.remote = append(p.remote, *m.Candidate)
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if err := p.pc.AddICECandidate(*m.Candidate); err != nil {
		c.fail("AddICECandidate: %v", err)
	}
}

func (c *rtcClient) onPublishAnswer(m testMsg) {
	c.mu.Lock()
	p := c.pub
	c.mu.Unlock()
	if p == nil || m.SDP == nil {
		c.fail("unexpected publish-answer %+v", m)
		return
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP.SDP}); err != nil {
		c.fail("publisher SetRemoteDescription: %v", err)
		return
	}
	c.applyRemoteCandidates(p)
}

func (c *rtcClient) onSubscriberOffer(m testMsg) {
	if m.SDP == nil || m.SDP.Type != "offer" {
		c.fail("bad subscriber-offer %+v", m)
		return
	}
	c.mu.Lock()
	p := c.sub
	c.mu.Unlock()
	if p == nil {
		var err error
		if p, err = c.newPeer(sfu.TargetSubscriber); err != nil {
			c.fail("subscriber pc: %v", err)
			return
		}
		p.pc.OnTrack(c.onTrack)
		c.mu.Lock()
		c.sub = p
		c.mu.Unlock()
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP.SDP}); err != nil {
		c.fail("subscriber SetRemoteDescription: %v", err)
		return
	}
	c.applyRemoteCandidates(p)
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		c.fail("CreateAnswer: %v", err)
		return
	}
	if err := p.pc.SetLocalDescription(answer); err != nil {
		c.fail("subscriber SetLocalDescription: %v", err)
		return
	}
	c.send(map[string]any{"v": 1, "type": "subscriber-answer", "sdp": wireSDP{Type: "answer", SDP: p.pc.LocalDescription().SDP}})
	c.described(p)
}

func (c *rtcClient) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	c.mu.Lock()
	c.tracks = append(c.tracks, tr)
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return // the PC was closed
			}
			c.received.Add(1)
		}
	}()
}

// publishVP8 sends a publish offer with one VP8 track and keeps writing
// keyframe-looking RTP packets every 20ms until the client closes.
func (c *rtcClient) publishVP8() {
	c.t.Helper()
	p, err := c.newPeer(sfu.TargetPublisher)
	if err != nil {
		c.t.Fatalf("publisher pc: %v", err)
	}
	c.mu.Lock()
	c.pub = p
	c.mu.Unlock()
	track, err := webrtc.NewTrackLocalStaticRTP(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "cam")
	if err != nil {
		c.t.Fatalf("track: %v", err)
	}
	sender, err := p.pc.AddTrack(track)
	if err != nil {
		c.t.Fatalf("AddTrack: %v", err)
	}
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		c.t.Fatalf("CreateOffer: %v", err)
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		c.t.Fatalf("SetLocalDescription: %v", err)
	}
	c.send(map[string]any{"v": 1, "type": "publish", "sdp": wireSDP{Type: "offer", SDP: p.pc.LocalDescription().SDP}})
	c.described(p)

	c.wg.Add(2)
	go func() { // drain RTCP so the interceptors keep working
		defer c.wg.Done()
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		// VP8 payload descriptor (S=1) + keyframe header with start code.
		payload := []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 1, 2, 3, 4}
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 4242, Marker: true}, Payload: payload}
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-tick.C:
			}
			pkt.SequenceNumber++
			pkt.Timestamp += 1800
			if err := track.WriteRTP(pkt); err != nil && errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
}

// next returns the next forwarded (non-negotiation) message.
func (c *rtcClient) next() testMsg {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitTimeout):
		c.t.Fatal("timed out waiting for a signaling message")
		return testMsg{}
	}
}

// expect skips forwarded messages until one of type typ.
func (c *rtcClient) expect(typ string) testMsg {
	c.t.Helper()
	for {
		m := c.next()
		if m.Type == typeError {
			c.t.Fatalf("error while waiting for %s: %s %s", typ, m.Code, m.Message)
		}
		if m.Type == typ {
			return m
		}
	}
}

func (c *rtcClient) track() *webrtc.TrackRemote {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tracks) == 0 {
		return nil
	}
	return c.tracks[0]
}

// TestMediaHappyPath: two pion clients join over the WebSocket, Alice
// publishes VP8, Bob is offered her track (stream id = her participant id,
// track id = producer id) and receives RTP through the real engine.
func TestMediaHappyPath(t *testing.T) {
	env := newEnv(t, envOptions{})
	alice, aj := newRTCClient(t, env, "media", "Alice")
	bob, bj := newRTCClient(t, env, "media", "Bob")
	if pj := alice.expect(typeParticipantJoined); pj.Participant.ID != bj.ParticipantID {
		t.Fatalf("Alice saw %+v join, want Bob", pj.Participant)
	}

	alice.publishVP8()

	added := bob.expect(typeProducerAdded)
	prod := added.Producer
	if prod.ParticipantID != aj.ParticipantID || prod.ParticipantName != "Alice" || prod.Kind != string(sfu.KindVideo) ||
		prod.Codec.MimeType != webrtc.MimeTypeVP8 || prod.Origin != "test-node" || prod.Remote {
		t.Fatalf("producer-added = %+v", prod)
	}

	waitFor(t, "Bob to receive Alice's RTP", func() bool { return bob.received.Load() >= 10 })
	tr := bob.track()
	if tr.StreamID() != aj.ParticipantID || tr.ID() != prod.ID || tr.Kind() != webrtc.RTPCodecTypeVideo {
		t.Errorf("track stream=%q id=%q kind=%v, want stream=%q id=%q video", tr.StreamID(), tr.ID(), tr.Kind(), aj.ParticipantID, prod.ID)
	}

	// A late joiner learns about the producer from "joined" and gets media too.
	carol, cj := newRTCClient(t, env, "media", "Carol")
	if len(cj.Producers) != 1 || cj.Producers[0].ID != prod.ID {
		t.Fatalf("Carol's joined lists producers %+v, want Alice's", cj.Producers)
	}
	waitFor(t, "Carol to receive Alice's RTP", func() bool { return carol.received.Load() >= 10 })

	// Alice leaves: the others see her producer and herself go away.
	alice.send(map[string]any{"v": 1, "type": "leave"})
	if removed := bob.expect(typeProducerRemoved); removed.Producer.ID != prod.ID {
		t.Errorf("producer-removed = %+v", removed.Producer)
	}
	if left := bob.expect(typeParticipantLeft); left.Participant.ID != aj.ParticipantID {
		t.Errorf("participant-left = %+v", left.Participant)
	}
	waitFor(t, "the room to lose Alice", func() bool { return localParticipants(env.engine, "media") == 2 })
}
