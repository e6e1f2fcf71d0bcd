package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/internal/peer"
)

// testTimeout bounds every wait; generous for loaded CI boxes.
const testTimeout = 60 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitUntil polls cond until it holds, failing the test when ctx ends.
func waitUntil(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func newTestEngine(t testing.TB, mutate func(*Config)) *Engine {
	t.Helper()
	cfg := Config{
		NodeID:          "node-a",
		UDPAddr:         "127.0.0.1:0",
		IncludeLoopback: true,
		Logger:          slog.New(slog.DiscardHandler),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Engine.Close: %v", err)
		}
	})
	return e
}

// clientAPI builds a pion API for test clients: own ephemeral UDP sockets
// (not the engine's mux), loopback only; mutate (may be nil) adjusts the
// settings.
func clientAPI(t *testing.T, mutate func(*webrtc.SettingEngine)) *webrtc.API {
	t.Helper()
	api, err := NewAPI(clientSettings(mutate))
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	return api
}

// clientSettings are a test client's settings: loopback UDP4 only.
func clientSettings(mutate func(*webrtc.SettingEngine)) webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	if mutate != nil {
		mutate(&se)
	}
	return se
}

// recorder is an EventHandler that records events and hands subscriber
// offers to its client.
type recorder struct {
	mu     sync.Mutex
	events []Event
	// origins[i] is the goroutine that delivered events[i].
	origins []origin
	offers  chan webrtc.SessionDescription
}

// origin describes the goroutine that called HandleEvent.
type origin struct {
	id     string // goroutine id
	inLoop bool   // running Participant.run (a participant's own goroutine)
	onPub  bool   // running a publisher's track reader (Participant.onTrack)
}

// callerOrigin describes the calling goroutine from its stack.
func callerOrigin() origin {
	buf := make([]byte, 64<<10)
	st := string(buf[:runtime.Stack(buf, false)])
	id, _, _ := strings.Cut(strings.TrimPrefix(st, "goroutine "), " ")
	return origin{
		id:     id,
		inLoop: strings.Contains(st, "sfu.(*Participant).run("),
		onPub:  strings.Contains(st, "sfu.(*Participant).onTrack("),
	}
}

func newRecorder() *recorder {
	return &recorder{offers: make(chan webrtc.SessionDescription, 256)}
}

func (r *recorder) HandleEvent(ev Event) {
	o := callerOrigin()
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.origins = append(r.origins, o)
	r.mu.Unlock()
	if ev.Type == EventSubscriberOffer {
		r.offers <- *ev.SDP
	}
}

func (r *recorder) snapshot() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// count returns how many events match.
func (r *recorder) count(match func(Event) bool) int {
	n := 0
	for _, ev := range r.snapshot() {
		if match(ev) {
			n++
		}
	}
	return n
}

func isType(typ EventType) func(Event) bool {
	return func(ev Event) bool { return ev.Type == typ }
}

func isProducerEvent(typ EventType, id string) func(Event) bool {
	return func(ev Event) bool { return ev.Type == typ && ev.Producer != nil && ev.Producer.ID == id }
}

func isParticipantEvent(typ EventType, id string) func(Event) bool {
	return func(ev Event) bool { return ev.Type == typ && ev.Participant != nil && ev.Participant.ID == id }
}

// remoteTrack is a track received by a test client's subscriber PC.
type remoteTrack struct {
	id, streamID string
	ssrc         uint32
	mime         string                 // the negotiated codec's mime type
	last         atomic.Pointer[[]byte] // a copy of the last payload
	packets      atomic.Int64           // RTP packets with a payload
	ended        atomic.Bool

	mu   sync.Mutex
	seqs map[uint16]int // packets received per sequence number
}

// received returns how many packets with sequence number seq arrived.
func (rt *remoteTrack) received(seq uint16) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.seqs[seq]
}

// client is an in-process pion client: it answers subscriber offers,
// records received tracks and can publish a synthetic VP8 track.
type client struct {
	t   *testing.T
	api *webrtc.API
	rec *recorder
	p   *Participant

	stop     chan struct{}
	wg       sync.WaitGroup // media goroutines
	answerWG sync.WaitGroup // answerLoop

	answered atomic.Int64 // subscriber answers accepted by the engine

	sub *peer.Answerer // the subscriber PC

	mu     sync.Mutex
	closed bool
	pub    *webrtc.PeerConnection
	sender *webrtc.RTPSender // publisher's video sender
	tracks []*remoteTrack
	plis   int // PLIs received by the publisher's sender
}

func joinClient(t *testing.T, e *Engine, room, name string) *client {
	t.Helper()
	return joinClientWith(t, e, room, name, nil)
}

// joinClientWith is joinClient with adjusted client settings.
func joinClientWith(t *testing.T, e *Engine, room, name string, mutate func(*webrtc.SettingEngine)) *client {
	t.Helper()
	return joinClientAPI(t, e, room, name, clientAPI(t, mutate))
}

// joinClientAPI joins a client whose peer connections api creates.
func joinClientAPI(t *testing.T, e *Engine, room, name string, api *webrtc.API) *client {
	t.Helper()
	c := &client{t: t, api: api, rec: newRecorder(), stop: make(chan struct{})}
	c.sub = peer.NewAnswerer(api, c.onTrack)
	p, err := e.Join(room, JoinParams{Name: name, Events: c.rec})
	if err != nil {
		t.Fatalf("Join(%q, %q): %v", room, name, err)
	}
	c.p = p
	c.answerWG.Add(1)
	go c.answerLoop()
	t.Cleanup(c.close)
	return c
}

// close leaves (idempotent) and releases client resources.
func (c *client) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.stop)
	}
	c.mu.Unlock()
	c.p.Close()
	c.answerWG.Wait() // no client PC operation in flight while closing
	_ = c.sub.Close()
	c.mu.Lock()
	pub := c.pub
	c.mu.Unlock()
	if pub != nil {
		_ = pub.Close()
	}
	c.wg.Wait()
}

// answerLoop answers subscriber offers until the client closes. Errors are
// expected once the server closed the participant (pion closes the client
// PC on the peer's DTLS close_notify).
func (c *client) answerLoop() {
	defer c.answerWG.Done()
	c.sub.Serve(c.rec.offers, c.stop, func(answer webrtc.SessionDescription) error {
		if err := c.p.SetSubscriberAnswer(answer); err != nil {
			return err
		}
		c.answered.Add(1)
		return nil
	}, func(err error) {
		if !errors.Is(err, ErrParticipantClosed) && !errors.Is(err, webrtc.ErrConnectionClosed) {
			c.t.Errorf("answer subscriber offer: %v", err)
		}
	})
}

// onTrack runs on pion's goroutine and reads until the PC closes.
func (c *client) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	rt := &remoteTrack{id: tr.ID(), streamID: tr.StreamID(), ssrc: uint32(tr.SSRC()), mime: tr.Codec().MimeType, seqs: make(map[uint16]int)}
	c.mu.Lock()
	c.tracks = append(c.tracks, rt)
	c.mu.Unlock()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			rt.ended.Store(true)
			return
		}
		if len(pkt.Payload) > 0 {
			last := append([]byte(nil), pkt.Payload...)
			rt.last.Store(&last)
			rt.packets.Add(1)
			rt.mu.Lock()
			rt.seqs[pkt.SequenceNumber]++
			rt.mu.Unlock()
		}
	}
}

// track returns the received track with that id (nil if none yet).
func (c *client) track(id string) *remoteTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.tracks) - 1; i >= 0; i-- {
		if c.tracks[i].id == id {
			return c.tracks[i]
		}
	}
	return nil
}

func (c *client) pliCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.plis
}

// publishVP8 publishes one synthetic VP8 track, writing a packet every
// 10ms until the client closes, and counting PLIs it receives.
func (c *client) publishVP8(ctx context.Context) {
	payload := []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3, 4, 5, 6, 7, 8}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1234, Marker: true}, Payload: payload}
	sender := c.publishTrack(ctx, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
		"video", "cam", 10*time.Millisecond, pkt, 3000)
	c.mu.Lock()
	c.sender = sender
	c.mu.Unlock()
	c.wg.Add(1)
	go func() { // RTCP reader: counts PLIs
		defer c.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				if _, ok := pkt.(*rtcp.PictureLossIndication); ok {
					c.mu.Lock()
					c.plis++
					c.mu.Unlock()
				}
			}
		}
	}()
}

// publishTrack opens the client's publisher PC with one track of codec
// (track id, stream id), negotiates it, and writes pkt every interval
// until the client closes, advancing its sequence number by one and its
// timestamp by tsStep each time. It returns the track's sender.
func (c *client) publishTrack(ctx context.Context, codec webrtc.RTPCodecCapability, id, stream string,
	interval time.Duration, pkt *rtp.Packet, tsStep uint32,
) *webrtc.RTPSender {
	t := c.t
	t.Helper()
	pc, err := c.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("client pc: %v", err)
	}
	c.mu.Lock()
	c.pub = pc
	c.mu.Unlock()
	track, err := webrtc.NewTrackLocalStaticRTP(codec, id, stream)
	if err != nil {
		t.Fatalf("track: %v", err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatalf("AddTrack: %v", err)
	}
	c.renegotiatePublisher(ctx)
	c.wg.Add(1)
	go func() { // RTP writer
		defer c.wg.Done()
		peer.WriteEvery(c.stop, interval, func() error {
			pkt.SequenceNumber++
			pkt.Timestamp += tsStep
			return track.WriteRTP(pkt)
		})
	}()
	return sender
}

// renegotiatePublisher runs one publisher offer/answer exchange.
func (c *client) renegotiatePublisher(ctx context.Context) {
	t := c.t
	t.Helper()
	c.mu.Lock()
	pc := c.pub
	c.mu.Unlock()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("CreateOffer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatalf("SetLocalDescription: %v", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		t.Fatal("client gathering timed out")
	}
	answer, err := c.p.Publish(*pc.LocalDescription())
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := pc.SetRemoteDescription(answer); err != nil {
		t.Fatalf("client SetRemoteDescription: %v", err)
	}
}

// waitProducers waits until the room lists n producers and returns them.
func waitProducers(ctx context.Context, t *testing.T, r *Room, n int) []ProducerInfo {
	t.Helper()
	var ps []ProducerInfo
	waitUntil(ctx, t, "producers", func() bool {
		ps = r.Producers()
		return len(ps) == n
	})
	return ps
}

// waitMedia waits until c received packets of producer id (stream id = its
// participant).
func waitMedia(ctx context.Context, t *testing.T, c *client, prod ProducerInfo) *remoteTrack {
	t.Helper()
	var rt *remoteTrack
	waitUntil(ctx, t, "media of "+prod.ID, func() bool {
		rt = c.track(prod.ID)
		return rt != nil && rt.packets.Load() >= 5
	})
	if rt.streamID != prod.ParticipantID {
		t.Errorf("stream id = %q, want participant id %q", rt.streamID, prod.ParticipantID)
	}
	return rt
}

// sendPLI makes the client's subscriber PC send a PLI for the track.
func (c *client) sendPLI(rt *remoteTrack) error {
	return c.sub.PC().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: rt.ssrc}})
}

// fakeObserver records Observer calls as strings: rooms and producers in
// calls, participants and chat in people.
type fakeObserver struct {
	mu     sync.Mutex
	calls  []string
	people []string
}

func (o *fakeObserver) ParticipantChanged(r *Room, p ParticipantInfo, present bool) {
	o.mu.Lock()
	o.people = append(o.people, fmt.Sprintf("%s %s present=%v audioMuted=%v videoMuted=%v speaking=%v",
		r.Name(), p.Name, present, p.AudioMuted, p.VideoMuted, p.Speaking))
	o.mu.Unlock()
}

func (o *fakeObserver) ChatSent(r *Room, m ChatMessage) {
	o.mu.Lock()
	o.people = append(o.people, fmt.Sprintf("%s chat %s: %s", r.Name(), m.Name, m.Text))
	o.mu.Unlock()
}

func (o *fakeObserver) Moderated(r *Room, m Moderation) {
	o.mu.Lock()
	o.people = append(o.people, fmt.Sprintf("%s moderation %s %s %s by %s", r.Name(), m.Action, m.Target, m.Kind, m.By))
	o.mu.Unlock()
}

func (o *fakeObserver) peopleSnapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.people...)
}

func (o *fakeObserver) add(s string) {
	o.mu.Lock()
	o.calls = append(o.calls, s)
	o.mu.Unlock()
}

func (o *fakeObserver) RoomOpened(r *Room)     { o.add("opened " + r.Name()) }
func (o *fakeObserver) RoomClosed(name string) { o.add("closed " + name) }
func (o *fakeObserver) ProducerAdded(r *Room, p ProducerInfo) {
	o.add("added " + r.Name() + " " + p.ParticipantName)
}
func (o *fakeObserver) ProducerRemoved(room string, p ProducerInfo) {
	o.add("removed " + room + " " + p.ParticipantName)
}

func (o *fakeObserver) snapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.calls...)
}

// countingRequester is a KeyframeRequester counting calls.
type countingRequester struct{ n atomic.Int64 }

func (c *countingRequester) RequestKeyframe() { c.n.Add(1) }

// testLayers returns n layers for a hand-built Producer of kind.
func testLayers(kind Kind, n int) []*layer {
	ls := make([]*layer, n)
	for i := range ls {
		ls[i] = &layer{index: i}
		if kind == KindVideo {
			ls[i].cache = &packetCache{}
		}
	}
	return ls
}
