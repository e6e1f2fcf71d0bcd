package pipe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/confab/confab/internal/peer"
	"github.com/confab/confab/sfu"
)

// Test helpers of the pipes tests are prefixed "pt" so they never collide
// with the membership tests of the same package.

// ptTimeout bounds every wait; generous for a loaded 2-core box.
const ptTimeout = 60 * time.Second

// ptSecret is the cluster secret of test nodes.
var ptSecret = []byte("0123456789abcdef-test-secret")

// ptLeakCheck registers a goroutine leak check that runs after every other
// cleanup of the test (cleanups run last-in first-out).
func ptLeakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// ptContext returns a context bounded by ptTimeout.
func ptContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ptTimeout)
	t.Cleanup(cancel)
	return ctx
}

// ptWait polls cond until it holds, failing the test when ctx ends.
func ptWait(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// ptLogger returns a quiet logger, or a debug logger when CONFAB_TEST_LOG
// is set.
func ptLogger() *slog.Logger {
	if os.Getenv("CONFAB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// ptCluster is a set of in-process nodes, each with its own sfu.Engine,
// Pipes and httptest server, resolving each other through urls.
type ptCluster struct {
	t     *testing.T
	mu    sync.Mutex
	urls  map[string]string
	nodes map[string]*ptNode
}

// ptNode is one node of a ptCluster.
type ptNode struct {
	id     string
	engine *sfu.Engine
	pipes  *Pipes
	srv    *httptest.Server

	// misrouted counts engine (pion) log records of SRTP authentication
	// failures and STUN requests with a wrong username: what packets of
	// one PeerConnection delivered to another look like.
	misrouted atomic.Int64

	mu     sync.Mutex
	failed []string      // OnLinkFailed calls
	gate   chan struct{} // when set, negotiate and want requests wait for it to close
}

// holdNegotiations makes the node's control channel hold negotiate and
// want requests until the returned function is called.
func (n *ptNode) holdNegotiations() (release func()) {
	g := make(chan struct{})
	n.mu.Lock()
	n.gate = g
	n.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			n.mu.Lock()
			n.gate = nil
			n.mu.Unlock()
			close(g)
		})
	}
}

// gated wraps the control handler with the negotiate gate.
func (n *ptNode) gated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		g := n.gate
		n.mu.Unlock()
		if g != nil && (strings.HasSuffix(r.URL.Path, "/negotiate") || strings.HasSuffix(r.URL.Path, "/want")) {
			// Consume the body first: only then does the server notice a
			// client that gives up (and cancel r.Context()).
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			select {
			case <-g:
			case <-r.Context().Done():
			}
		}
		h.ServeHTTP(w, r)
	})
}

// failures returns the OnLinkFailed calls so far.
func (n *ptNode) failures() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.failed...)
}

// newPTCluster starts nodes with the given ids. mutate may adjust each
// node's PipesConfig.
func newPTCluster(t *testing.T, mutate func(*PipesConfig), ids ...string) *ptCluster {
	t.Helper()
	c := &ptCluster{t: t, urls: make(map[string]string), nodes: make(map[string]*ptNode)}
	for _, id := range ids {
		c.addNode(id, mutate)
	}
	return c
}

// resolve is the PipesConfig.Resolve of every test node.
func (c *ptCluster) resolve(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u, ok := c.urls[id]
	return u, ok
}

// setURL points node id at url (tests of unreachable peers).
func (c *ptCluster) setURL(id, url string) {
	c.mu.Lock()
	c.urls[id] = url
	c.mu.Unlock()
}

// node returns the node with that id.
func (c *ptCluster) node(id string) *ptNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// addNode starts one node; cleanups close Pipes, server and engine in
// that order.
func (c *ptCluster) addNode(id string, mutate func(*PipesConfig)) *ptNode {
	t := c.t
	t.Helper()
	n := &ptNode{id: id}
	engine, err := sfu.New(sfu.Config{
		NodeID:           id,
		UDPAddr:          "127.0.0.1:0",
		IncludeLoopback:  true,
		KeyframeInterval: 20 * time.Millisecond,
		Logger:           slog.New(ptMisrouteCounter{n: n, next: ptLogger().Handler()}),
	})
	if err != nil {
		t.Fatalf("sfu.New(%s): %v", id, err)
	}
	t.Cleanup(func() {
		if err := engine.Close(); err != nil {
			t.Errorf("engine %s Close: %v", id, err)
		}
	})
	n.engine = engine
	cfg := PipesConfig{
		NodeID:          id,
		Secret:          ptSecret,
		Resolve:         c.resolve,
		RequestTimeout:  10 * time.Second,
		LinkIdleTimeout: 200 * time.Millisecond,
		Logger:          ptLogger(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	pipes, err := NewPipes(cfg, engine)
	if err != nil {
		t.Fatalf("NewPipes(%s): %v", id, err)
	}
	pipes.SetOnLinkFailed(func(peer string) {
		n.mu.Lock()
		n.failed = append(n.failed, peer)
		n.mu.Unlock()
	})
	n.pipes = pipes
	mux := http.NewServeMux()
	mux.Handle("/cluster/", pipes.Handler())
	n.srv = httptest.NewServer(n.gated(mux))
	t.Cleanup(n.srv.Close)
	t.Cleanup(func() {
		if err := pipes.Close(); err != nil {
			t.Errorf("pipes %s Close: %v", id, err)
		}
	})
	c.mu.Lock()
	c.urls[id] = n.srv.URL
	c.nodes[id] = n
	c.mu.Unlock()
	return n
}

// ptEvents records sfu events of one test participant and hands subscriber
// offers to its answer loop.
type ptEvents struct {
	mu     sync.Mutex
	events []sfu.Event
	offers chan webrtc.SessionDescription
}

// HandleEvent implements sfu.EventHandler; never blocks for long.
func (r *ptEvents) HandleEvent(ev sfu.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	if ev.Type == sfu.EventSubscriberOffer {
		r.offers <- *ev.SDP
	}
}

// has reports whether an event of typ for producer id was received.
func (r *ptEvents) has(typ sfu.EventType, producerID string) *sfu.ProducerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Type == typ && ev.Producer != nil && ev.Producer.ID == producerID {
			return ev.Producer
		}
	}
	return nil
}

// ptTrack is a track received by a test client.
type ptTrack struct {
	id, streamID string
	ssrc         uint32
	packets      atomic.Int64
}

// ptClient is an in-process pion client joined to a room on one node: it
// answers subscriber offers, records received tracks and may publish
// synthetic VP8 tracks.
type ptClient struct {
	t    *testing.T
	api  *webrtc.API
	ev   *ptEvents
	p    *sfu.Participant
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	sub *peer.Answerer // the subscriber PC

	mu     sync.Mutex
	pubs   []*webrtc.PeerConnection
	tracks []*ptTrack
	plis   int
}

// ptJoin joins a client named name to room on node n.
func ptJoin(t *testing.T, n *ptNode, room, name string) *ptClient {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api, err := sfu.NewAPI(se)
	if err != nil {
		t.Fatalf("sfu.NewAPI: %v", err)
	}
	c := &ptClient{t: t, api: api, ev: &ptEvents{offers: make(chan webrtc.SessionDescription, 256)}, stop: make(chan struct{})}
	c.sub = peer.NewAnswerer(api, c.onTrack)
	p, err := n.engine.Join(room, sfu.JoinParams{Name: name, Events: c.ev})
	if err != nil {
		t.Fatalf("Join(%s, %s, %s): %v", n.id, room, name, err)
	}
	c.p = p
	c.wg.Add(1)
	go c.answerLoop()
	t.Cleanup(c.close)
	return c
}

// close leaves and releases the client; idempotent.
func (c *ptClient) close() {
	c.once.Do(func() {
		c.p.Close()
		close(c.stop)
		_ = c.sub.Close()
		c.mu.Lock()
		pubs := c.pubs
		c.mu.Unlock()
		for _, pc := range pubs {
			_ = pc.Close()
		}
		c.wg.Wait()
	})
}

// answerLoop answers subscriber offers until the client closes (no
// trickle).
func (c *ptClient) answerLoop() {
	defer c.wg.Done()
	c.sub.Serve(c.ev.offers, c.stop, c.p.SetSubscriberAnswer, func(err error) {
		if !errors.Is(err, sfu.ErrParticipantClosed) {
			c.t.Errorf("answering subscriber offer: %v", err)
		}
	})
}

// onTrack counts the packets of a received track (pion goroutine; ends
// when the track or PC closes).
func (c *ptClient) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	rt := &ptTrack{id: tr.ID(), streamID: tr.StreamID(), ssrc: uint32(tr.SSRC())}
	c.mu.Lock()
	c.tracks = append(c.tracks, rt)
	c.mu.Unlock()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(pkt.Payload) > 0 {
			rt.packets.Add(1)
		}
	}
}

// track returns the latest received track with that id, or nil.
func (c *ptClient) track(id string) *ptTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.tracks) - 1; i >= 0; i-- {
		if c.tracks[i].id == id {
			return c.tracks[i]
		}
	}
	return nil
}

// pliCount returns the PLIs received by the client's published tracks.
func (c *ptClient) pliCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.plis
}

// sendPLI has the subscriber PC send a PLI for rt.
func (c *ptClient) sendPLI(rt *ptTrack) error {
	return c.sub.PC().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: rt.ssrc}})
}

// publishVP8 publishes one synthetic VP8 track on a new publisher PC and
// writes a packet every 10ms until the client closes.
// publishOffer publishes pc's offer through p (peer.Publish); the test
// fails on any error. t is any test handle.
func publishOffer(ctx context.Context, t interface {
	Helper()
	Fatalf(format string, args ...any)
}, p *sfu.Participant, pc *webrtc.PeerConnection) {
	t.Helper()
	if err := peer.Publish(ctx, pc, p.Publish); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func (c *ptClient) publishVP8(ctx context.Context) {
	t := c.t
	t.Helper()
	pc, err := c.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("client pc: %v", err)
	}
	c.mu.Lock()
	c.pubs = append(c.pubs, pc)
	c.mu.Unlock()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "cam")
	if err != nil {
		t.Fatalf("track: %v", err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatalf("AddTrack: %v", err)
	}
	publishOffer(ctx, t, c.p, pc)
	c.wg.Add(2)
	go func() {
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
	go func() {
		defer c.wg.Done()
		pkt := &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 96, SSRC: 4321, Marker: true},
			Payload: []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3, 4, 5, 6, 7, 8},
		}
		peer.WriteEvery(c.stop, 10*time.Millisecond, func() error {
			pkt.SequenceNumber++
			pkt.Timestamp += 900
			return track.WriteRTP(pkt)
		})
	}()
}

// ptPublish has a new client on n publish a VP8 track in room and returns
// the client and the producer (as the registry would describe it).
func ptPublish(ctx context.Context, t *testing.T, n *ptNode, room, name string) (*ptClient, sfu.ProducerInfo) {
	t.Helper()
	c := ptJoin(t, n, room, name)
	c.publishVP8(ctx)
	var info sfu.ProducerInfo
	ptWait(ctx, t, "local producer of "+name, func() bool {
		r := n.engine.Room(room)
		if r == nil {
			return false
		}
		for _, p := range r.Producers() {
			if p.ParticipantID == c.p.ID() {
				info = p
				return true
			}
		}
		return false
	})
	return c, info
}

// ptWaitMedia waits until c received packets of producer prod.
func ptWaitMedia(ctx context.Context, t *testing.T, c *ptClient, prod sfu.ProducerInfo) *ptTrack {
	t.Helper()
	var rt *ptTrack
	ptWait(ctx, t, "media of "+prod.ID, func() bool {
		rt = c.track(prod.ID)
		return rt != nil && rt.packets.Load() >= 5
	})
	if rt.streamID != prod.ParticipantID {
		t.Errorf("stream id = %q, want participant id %q", rt.streamID, prod.ParticipantID)
	}
	return rt
}

// ptLink returns n's link with peer listing only its producers in
// direction dir (all for ""), or nil when n has no link with peer.
func ptLink(n *ptNode, peer, dir string) *LinkStatus {
	for _, ls := range n.pipes.Status() {
		if ls.PeerNode == peer {
			ls.Producers = slices.DeleteFunc(ls.Producers, func(p PipedProducer) bool { return dir != "" && p.Direction != dir })
			return &ls
		}
	}
	return nil
}

// ptHasProducer reports whether n's room lists producer id.
func ptHasProducer(n *ptNode, room, id string) bool {
	r := n.engine.Room(room)
	return r != nil && r.Producer(id) != nil
}

func TestPipeMediaReachesOtherNodes(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "b", "c")
	a, b, cc := c.node("a"), c.node("b"), c.node("c")

	_, prod := ptPublish(ctx, t, a, "room", "alice")
	subB := ptJoin(t, b, "room", "bob")
	subC := ptJoin(t, cc, "room", "carol")

	for _, n := range []*ptNode{b, cc} {
		if err := n.pipes.PipeIn(ctx, "room", prod); err != nil {
			t.Fatalf("%s PipeIn: %v", n.id, err)
		}
	}
	ptWaitMedia(ctx, t, subB, prod)
	ptWaitMedia(ctx, t, subC, prod)

	added := subB.ev.has(sfu.EventProducerAdded, prod.ID)
	if added == nil {
		t.Fatal("subscriber on b got no producer-added")
	}
	if !added.Remote || added.Origin != "a" || added.ParticipantID != prod.ParticipantID {
		t.Errorf("producer-added on b = %+v, want remote from a by %s", *added, prod.ParticipantID)
	}

	// Idempotent: a second PipeIn changes nothing.
	if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
		t.Fatalf("second PipeIn: %v", err)
	}
	got := b.pipes.Piped("room")
	if len(got) != 1 || got[0].ID != prod.ID || !got[0].Remote {
		t.Errorf("Piped(room) on b = %+v, want just %s (remote)", got, prod.ID)
	}

	for _, peer := range []string{"b", "c"} {
		ls := ptLink(a, peer, DirectionOut)
		if ls == nil || len(ls.Producers) != 1 || ls.Producers[0].ID != prod.ID {
			t.Errorf("a's out link to %s = %+v, want one carrying %s", peer, ls, prod.ID)
		}
	}
	ptWait(ctx, t, "b's link connected and active", func() bool {
		ls := ptLink(b, "a", DirectionIn)
		return ls != nil && ls.State == "connected" && len(ls.Producers) == 1 && ls.Producers[0].State == "active"
	})
	if n := len(b.pipes.Status()); n != 1 {
		t.Errorf("b has %d links, want 1", n)
	}
}

func TestPipePLIReachesPublisher(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "c")
	a, cc := c.node("a"), c.node("c")

	pub, prod := ptPublish(ctx, t, a, "room", "alice")
	subC := ptJoin(t, cc, "room", "carol")
	if err := cc.pipes.PipeIn(ctx, "room", prod); err != nil {
		t.Fatalf("PipeIn: %v", err)
	}
	rt := ptWaitMedia(ctx, t, subC, prod)

	// Consumers request keyframes when they are created; wait until those
	// settled so that a later increase is caused by the PLIs sent below.
	base := pub.pliCount()
	for stable := 0; stable < 10; {
		select {
		case <-ctx.Done():
			t.Fatal("publisher PLI count never settled")
		case <-time.After(100 * time.Millisecond):
		}
		if n := pub.pliCount(); n != base {
			base, stable = n, 0
		} else {
			stable++
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for pub.pliCount() <= base {
		if err := subC.sendPLI(rt); err != nil {
			t.Fatalf("sending PLI: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("PLI from c's subscriber never reached a's publisher")
		case <-tick.C:
		}
	}
}

func TestPipeReusesLink(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "b")
	a, b := c.node("a"), c.node("b")

	_, prod1 := ptPublish(ctx, t, a, "room", "alice")
	_, prod2 := ptPublish(ctx, t, a, "room", "dave")
	sub := ptJoin(t, b, "room", "bob")

	// Concurrent PipeIn calls share the link (and batch negotiations).
	errs := make(chan error, 2)
	for _, p := range []sfu.ProducerInfo{prod1, prod2} {
		go func() { errs <- b.pipes.PipeIn(ctx, "room", p) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("PipeIn: %v", err)
		}
	}
	ptWaitMedia(ctx, t, sub, prod1)
	ptWaitMedia(ctx, t, sub, prod2)

	// A third producer after the link is up reuses it too.
	_, prod3 := ptPublish(ctx, t, a, "room", "erin")
	if err := b.pipes.PipeIn(ctx, "room", prod3); err != nil {
		t.Fatalf("PipeIn 3: %v", err)
	}
	ptWaitMedia(ctx, t, sub, prod3)

	for _, tc := range []struct {
		node *ptNode
		dir  string
		peer string
	}{{b, DirectionIn, "a"}, {a, DirectionOut, "b"}} {
		st := tc.node.pipes.Status()
		if len(st) != 1 || st[0].PeerNode != tc.peer || len(st[0].Producers) != 3 {
			t.Errorf("%s Status = %+v, want one link with %s carrying 3 producers", tc.node.id, st, tc.peer)
			continue
		}
		for _, p := range st[0].Producers {
			if p.Direction != tc.dir {
				t.Errorf("%s: producer %+v, want direction %s", tc.node.id, p, tc.dir)
			}
		}
	}
}

func TestPipeUnpipe(t *testing.T) {
	tests := []struct {
		name string
		// closeOrigin closes the producer on a before anything else.
		closeOrigin bool
		// unpipe calls Unpipe on b (what the registry watch does).
		unpipe bool
	}{
		{name: "unpipe live producer", unpipe: true},
		{name: "origin producer closed then unpipe", closeOrigin: true, unpipe: true},
		{name: "origin producer closed, no unpipe (RTCP BYE)", closeOrigin: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ptLeakCheck(t)
			ctx := ptContext(t)
			c := newPTCluster(t, nil, "a", "b")
			a, b := c.node("a"), c.node("b")
			// keep the origin room open when the publisher leaves
			ptJoin(t, a, "room", "watcher")
			pub, prod := ptPublish(ctx, t, a, "room", "alice")
			sub := ptJoin(t, b, "room", "bob")
			if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
				t.Fatalf("PipeIn: %v", err)
			}
			ptWaitMedia(ctx, t, sub, prod)

			if tc.closeOrigin {
				pub.close()
			}
			if tc.unpipe {
				b.pipes.Unpipe("room", prod.ID)
			}
			ptWait(ctx, t, "producer-removed on b", func() bool {
				return sub.ev.has(sfu.EventProducerRemoved, prod.ID) != nil
			})
			if ptHasProducer(b, "room", prod.ID) {
				t.Error("b's room still lists the piped producer")
			}
			if got := b.pipes.Piped("room"); len(got) != 0 {
				t.Errorf("Piped after removal = %+v, want none", got)
			}
			// The link carries nothing: closed on both sides after the
			// idle grace period.
			ptWait(ctx, t, "links closed", func() bool {
				return len(a.pipes.Status()) == 0 && len(b.pipes.Status()) == 0
			})
			if f := b.failures(); len(f) != 0 {
				t.Errorf("OnLinkFailed calls = %v, want none", f)
			}
		})
	}
}

func TestPipeInInvalid(t *testing.T) {
	ptLeakCheck(t)
	c := newPTCluster(t, nil, "a")
	a := c.node("a")
	ptJoin(t, a, "room", "alice")
	good := sfu.ProducerInfo{ID: "p1", Kind: sfu.KindVideo, ParticipantID: "x", Origin: "z"}
	tests := []struct {
		name string
		room string
		info func(sfu.ProducerInfo) sfu.ProducerInfo
		want error
	}{
		{"empty room", "", func(p sfu.ProducerInfo) sfu.ProducerInfo { return p }, ErrPipeInvalid},
		{"empty id", "room", func(p sfu.ProducerInfo) sfu.ProducerInfo { p.ID = ""; return p }, ErrPipeInvalid},
		{"no origin", "room", func(p sfu.ProducerInfo) sfu.ProducerInfo { p.Origin = ""; return p }, ErrPipeInvalid},
		{"local origin", "room", func(p sfu.ProducerInfo) sfu.ProducerInfo { p.Origin = "a"; return p }, ErrPipeInvalid},
		{"bad kind", "room", func(p sfu.ProducerInfo) sfu.ProducerInfo { p.Kind = "smell"; return p }, ErrPipeInvalid},
		{"no local room", "nowhere", func(p sfu.ProducerInfo) sfu.ProducerInfo { return p }, ErrPipeRoomNotFound},
		{"unresolvable origin", "room", func(p sfu.ProducerInfo) sfu.ProducerInfo { return p }, ErrNodeUnresolved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := a.pipes.PipeIn(context.Background(), tc.room, tc.info(good))
			if !errors.Is(err, tc.want) {
				t.Errorf("PipeIn error = %v, want %v", err, tc.want)
			}
		})
	}
	if st := a.pipes.Status(); len(st) != 0 {
		t.Errorf("Status = %+v, want no links", st)
	}
}
